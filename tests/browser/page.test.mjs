// The page in a real browser (Debian's Chromium, driven by playwright-core): load the demo model
// as a user does, score fixture images and compare with what Hugging Face transformers computes
// (tests/fixtures/goldens/tiny224.json), on the CPU (wasm) and on WebGPU (SwiftShader).
// Run by scripts/test after cargo test: node --test tests/browser/

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CPU_SCORE_TOL, DEMO_FILES, FIXTURES, GOLDEN, GPU_PROB_TOL, GPU_SCORE_TOL, PROB_TOL, ROOT, cacheName, goldenScores, openPage, results,
  serveAndLaunch, softmax, waitReady,
} from './harness.mjs';

/** Fixture images whose decoding is bit-exact with PIL (JPEG may differ by one level). */
const IMAGES = ['rgb_gradient.png', 'rgba_alpha.png', 'palette_p.png', 'lossless.webp', 'frame.gif', 'gray_l.png'];
const img = (n) => join(FIXTURES, 'images', n);

const env = serveAndLaunch();

function checkScores(got, prompt, names, { scoreTol, probTol }) {
  const want = goldenScores(prompt, names);
  const wantP = softmax(want);
  assert.deepEqual(got.map((r) => r.name), names, 'results in input order');
  got.forEach((r, i) => {
    assert.equal(r.error, null, `${r.name}: ${r.error}`);
    assert.ok(Math.abs(r.score - want[i]) <= scoreTol, `${r.name}: score ${r.score}, transformers ${want[i]}, diff ${Math.abs(r.score - want[i])} > ${scoreTol}`);
    assert.ok(Math.abs(r.prob - wantP[i]) <= probTol, `${r.name}: prob ${r.prob}, transformers ${wantP[i]}`);
  });
  return Math.max(...got.map((r, i) => Math.abs(r.score - want[i])));
}

/** Types a new prompt and waits until the results change by themselves (no click). */
async function rescore(page, prompt) {
  const before = await page.getAttribute('[data-testid="result"]', 'data-score');
  await page.fill('#prompt', prompt);
  await page.waitForFunction((b) => document.querySelector('[data-testid="result"]')?.dataset.score !== b
    && !document.querySelector('#status').classList.contains('busy'), before, { timeout: 60_000 });
}

async function loadDemoFiles(page, backend) {
  await page.goto(backend ? `${env.server.url}?backend=${backend}` : env.server.url);
  await page.setInputFiles('#model-files', DEMO_FILES);
  const t0 = Date.now();
  const status = await waitReady(page);
  return { status, ms: Date.now() - t0 };
}

async function scoreImages(page, prompt, names) {
  await page.fill('#prompt', GOLDEN.prompts[prompt]);
  await page.setInputFiles('#images', names.map(img));
  const t0 = Date.now();
  await page.click('#score');
  const r = await results(page, names.length);
  return { r, ms: Date.now() - t0 };
}

test('cpu: the demo model from #model-files scores like transformers; a new prompt re-scores; pairwise', async (t) => {
  const { page, requests, outside, logs, context } = await openPage(env.browser, env.server.url);
  try {
    const load = await loadDemoFiles(page, 'cpu');
    assert.equal(await page.textContent('#backend'), 'cpu');
    assert.ok(await page.isVisible('#model-note'), 'the demo model is labelled as meaningless');

    const names = IMAGES;
    const first = await scoreImages(page, 0, names);
    const engineMs = await page.getAttribute('#status', 'data-score-ms');
    const maxDiff = checkScores(first.r, 0, names, { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });
    const ranks = await page.$$eval('[data-testid="result"]', (els) => els.map((e) => Number(e.dataset.rank)));
    assert.deepEqual([...ranks].sort(), names.map((_, i) => i + 1), 'ranks 1..n');

    // A new prompt re-scores by itself (image embeddings are cached).
    const t0 = Date.now();
    await rescore(page, GOLDEN.prompts[1]);
    const rescoreMs = Date.now() - t0;
    checkScores(await results(page, names.length), 1, names, { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });

    // Pairwise: probabilities within (1, 2), (3, 4), (5, 6).
    await page.check('#pairwise');
    await page.waitForFunction(() => document.querySelector('#results').classList.contains('pairwise')
      && !document.querySelector('#status').classList.contains('busy'), null, { timeout: 60_000 });
    const pairs = await results(page, names.length);
    for (let i = 0; i < names.length; i += 2) {
      const p = softmax(goldenScores(1, names.slice(i, i + 2)));
      assert.ok(Math.abs(pairs[i].prob - p[0]) <= PROB_TOL && Math.abs(pairs[i + 1].prob - p[1]) <= PROB_TOL, `pair ${i / 2 + 1}: ${pairs[i].prob}, ${pairs[i + 1].prob} vs ${p}`);
    }
    await page.uncheck('#pairwise');
    await results(page, names.length);

    // Exports: the scores shown, in input order.
    const [json] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
    const exported = JSON.parse(readFileSync(await json.path(), 'utf8'));
    assert.equal(exported.prompt, GOLDEN.prompts[1]);
    assert.deepEqual(exported.results.map((x) => x.image), names);
    checkScores(exported.results.map((x) => ({ name: x.image, score: x.score, prob: x.prob, error: x.error })), 1, names, { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });
    const [csv] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
    const lines = readFileSync(await csv.path(), 'utf8').trim().split(/\r\n/);
    assert.equal(lines[0], 'prompt,image,group,score,prob,rank,error');
    assert.equal(lines.length, names.length + 1);

    mkdirSync(join(ROOT, 'target/browser'), { recursive: true });
    await rescore(page, GOLDEN.prompts[0]);
    checkScores(await results(page, names.length), 0, names, { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });
    await page.screenshot({ path: join(ROOT, 'target/browser/page-cpu.png'), fullPage: true });
    // docs/screenshot.png (README) is this file, scaled to 900 px and reduced to 128 colours.

    const loadMs = Number(await page.getAttribute('#status', 'data-load-ms'));
    t.diagnostic(`cpu: load ${load.ms} ms (engine ${loadMs} ms, incl. wasm start), score ${names.length} images ${first.ms} ms (engine ${engineMs} ms), re-score for a new prompt ${rescoreMs} ms; max |score - transformers| ${maxDiff.toExponential(1)}`);
    // Chromium has relaxed SIMD and sciscore serve isolates the page (COOP/COEP): the worker runs
    // the FMA build on every core (the worker's requests are recorded too). The demo's vision
    // products are big enough to be split over the threads, so the scores above checked that.
    const cores = await page.evaluate(() => Math.min(navigator.hardwareConcurrency, 8));
    const note = await page.textContent('#backend-note');
    assert.match(note, /relaxed-SIMD FMA/);
    if (cores >= 2) {
      assert.ok(requests.some((u) => u.endsWith('/pkg-threads/sciscore_bg.wasm')), `threads build loaded: ${requests}`);
      assert.match(note, new RegExp(`CPU on ${cores} threads \\(wasm threads, relaxed SIMD\\)`));
    }
    assert.deepEqual(outside, [], 'no request leaves the local server');
  } catch (e) {
    console.error(logs.join('\n'));
    throw e;
  } finally {
    if (process.env.SCISCORE_BROWSER_LOGS) console.log(logs.join('\n'));
    await context.close();
  }
});

test('cpu, ?wasm=simd128: the plain SIMD128 build (browsers without relaxed SIMD) scores like transformers', async (t) => {
  const { page, requests, outside, logs, context } = await openPage(env.browser, env.server.url);
  try {
    await page.goto(`${env.server.url}?backend=cpu&wasm=simd128`);
    await page.setInputFiles('#model-files', DEMO_FILES);
    await waitReady(page);
    assert.match(await page.textContent('#backend-note'), /cpu \(wasm SIMD128\)/);
    const names = IMAGES.slice(0, 4);
    const { r } = await scoreImages(page, 0, names);
    const maxDiff = checkScores(r, 0, names, { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });
    assert.ok(requests.some((u) => u.endsWith('/pkg/sciscore_bg.wasm')), 'plain build loaded');
    assert.ok(!requests.some((u) => u.includes('/pkg-relaxed/') || u.includes('/pkg-threads/')), 'relaxed builds not fetched');
    assert.match(await page.textContent('#backend-note'), /CPU on one thread \(SIMD128; SIMD128 forced with \?wasm=simd128\)/);
    assert.deepEqual(outside, []);
    t.diagnostic(`cpu (SIMD128 build): max |score - transformers| ${maxDiff.toExponential(1)}`);
  } catch (e) {
    console.error(logs.join('\n'));
    throw e;
  } finally {
    await context.close();
  }
});

test('cpu, ?threads=1: the relaxed build on one thread (a page without cross-origin isolation) scores like transformers', async (t) => {
  const { page, requests, outside, logs, context } = await openPage(env.browser, env.server.url);
  try {
    await page.goto(`${env.server.url}?backend=cpu&threads=1`);
    await page.setInputFiles('#model-files', DEMO_FILES);
    await waitReady(page);
    assert.match(await page.textContent('#backend-note'), /CPU on one thread \(relaxed SIMD; one thread forced with \?threads=1\)/);
    const names = IMAGES.slice(0, 4);
    const { r } = await scoreImages(page, 0, names);
    const maxDiff = checkScores(r, 0, names, { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });
    assert.ok(requests.some((u) => u.endsWith('/pkg-relaxed/sciscore_bg.wasm')), 'relaxed build loaded');
    assert.ok(!requests.some((u) => u.includes('/pkg-threads/')), 'threads build not fetched');
    assert.deepEqual(outside, []);
    t.diagnostic(`cpu (relaxed, one thread): max |score - transformers| ${maxDiff.toExponential(1)}`);
  } catch (e) {
    console.error(logs.join('\n'));
    throw e;
  } finally {
    await context.close();
  }
});

test('automatic backend; a file that is not an image shows an error, the others score, and the next scoring works', async () => {
  const { page, outside, logs, context } = await openPage(env.browser, env.server.url);
  try {
    await loadDemoFiles(page, null);
    // Without ?backend=, a software-only WebGPU adapter (SwiftShader here) means the CPU path.
    const software = await page.evaluate(async () => (await navigator.gpu?.requestAdapter())?.info?.isFallbackAdapter ?? true);
    if (software) {
      assert.equal(await page.textContent('#backend'), 'cpu');
      assert.match(await page.textContent('#backend-note'), /software|no WebGPU/);
    }
    await page.fill('#prompt', GOLDEN.prompts[0]);
    await page.setInputFiles('#images', [
      { name: 'rgb_gradient.png', mimeType: 'image/png', buffer: readFileSync(img('rgb_gradient.png')) },
      { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('this is not an image') },
      { name: 'lossless.webp', mimeType: 'image/webp', buffer: readFileSync(img('lossless.webp')) },
    ]);
    await page.click('#score');
    const r = await results(page, 3);
    assert.equal(r[1].name, 'notes.txt');
    assert.ok(r[1].error, 'notes.txt has an error');
    assert.match(r[1].visibleError ?? '', /error/, 'the error is visible');
    assert.match(await page.textContent('#status'), /ready.*could not be read/);
    checkScores([r[0], r[2]], 0, ['rgb_gradient.png', 'lossless.webp'], { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });

    await page.screenshot({ path: join(ROOT, 'target/browser/page-bad-image.png'), fullPage: true });
    await page.click('#clear-images');
    const next = await scoreImages(page, 2, ['palette_p.png', 'frame.gif']);
    checkScores(next.r, 2, ['palette_p.png', 'frame.gif'], { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });
    assert.deepEqual(outside, []);
  } catch (e) {
    console.error(logs.join('\n'));
    throw e;
  } finally {
    if (process.env.SCISCORE_BROWSER_LOGS) console.log(logs.join('\n'));
    await context.close();
  }
});

test('?model=<base URL> loads the demo model over HTTP Range requests; Cache Storage keeps it', async () => {
  const { page, requests, outside, logs, context } = await openPage(env.browser, env.server.url);
  try {
    await page.goto(`${env.server.url}?backend=cpu&model=models/demo/`);
    await waitReady(page);
    assert.ok(requests.some((u) => u.endsWith('/models/demo/model.safetensors')), 'weights fetched from the server');
    const names = ['rgb_gradient.png', 'palette_p.png'];
    const { r } = await scoreImages(page, 3, names);
    checkScores(r, 3, names, { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });

    // Downloads by URL go to Cache Storage (the page caches only other hosts' files; here a
    // worker of our own asks for it): a second load reads no weights from the network, and
    // "Clear downloaded models" empties the cache.
    const weights = () => requests.filter((u) => u.includes('/models/demo/model.safetensors')).length;
    const loadCached = (url) => page.evaluate(async (url) => {
      const w = new Worker('worker.js', { type: 'module' });
      const call = (msg) => new Promise((res, rej) => {
        w.onmessage = (e) => { if (e.data.type === 'done') res(e.data.value); else if (e.data.type !== 'progress') rej(new Error(e.data.message)); };
        w.postMessage({ id: 1, ...msg });
      });
      try {
        await call({ type: 'load', backend: 'cpu', source: { kind: 'url', url, cache: true } });
        return await call({ type: 'probe', url, cache: true });
      } finally {
        w.terminate();
      }
    }, url);
    const url = `${env.server.url}models/demo/`;
    const n0 = weights();
    const first = await loadCached(url);
    const n1 = weights();
    assert.ok(n1 > n0, 'the first load downloads');
    assert.equal(first.cached, true, 'probe reports the model as cached');
    assert.ok(first.total_bytes > 6e6 && first.files.some((f) => f.name === 'model.safetensors'), JSON.stringify(first));
    await loadCached(url);
    assert.equal(weights(), n1, 'the second load reads the weights from Cache Storage');
    const bucket = await cacheName(page);
    assert.ok(await page.evaluate(async (name) => (await (await caches.open(name)).keys()).length > 0, bucket));
    await page.click('#clear-cache');
    await page.waitForFunction(async (name) => !(await caches.has(name)), bucket);
    assert.deepEqual(outside, []);
  } catch (e) {
    console.error(logs.join('\n'));
    throw e;
  } finally {
    if (process.env.SCISCORE_BROWSER_LOGS) console.log(logs.join('\n'));
    await context.close();
  }
});

/** Drops (or pastes) fixture files on `selector` as the browser would hand them to the page. */
async function dropFiles(page, selector, paths, kind = 'drop') {
  const payload = paths.map((p) => ({ name: p.split('/').pop(), data: readFileSync(p).toString('base64') }));
  await page.evaluate(({ selector, payload, kind }) => {
    const dt = new DataTransfer();
    for (const f of payload) {
      const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
      dt.items.add(new File([bytes], f.name));
    }
    const target = document.querySelector(selector);
    const ev = kind === 'paste'
      ? new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true })
      : new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true });
    target.dispatchEvent(ev);
  }, { selector, payload, kind });
}

test('a broken model folder is an error; dropping a model folder and images, and pasting an image, work', async () => {
  const { page, outside, logs, context } = await openPage(env.browser, env.server.url);
  try {
    await page.goto(`${env.server.url}?backend=cpu`);
    await page.setInputFiles('#model-files', DEMO_FILES.filter((f) => !f.endsWith('model.safetensors')));
    assert.match(await waitReady(page, { allowError: true }), /error.*model\.safetensors/);
    await page.setInputFiles('#model-files', [join(FIXTURES, 'images/tiny.png')]);
    assert.match(await waitReady(page, { allowError: true }), /error.*config\.json/);

    const since = await page.textContent('#status');
    await dropFiles(page, '#model-drop', DEMO_FILES);
    await waitReady(page, { since });
    await page.fill('#prompt', GOLDEN.prompts[4]);
    await dropFiles(page, '#image-drop', [img('lossless.webp'), img('frame.gif')]);
    await page.waitForFunction(() => document.querySelectorAll('#thumbs li').length === 2);
    await dropFiles(page, 'body', [img('palette_p.png')], 'paste');
    await page.waitForFunction(() => document.querySelectorAll('#thumbs li').length === 3);
    await page.click('#score');
    checkScores(await results(page, 3), 4, ['lossless.webp', 'frame.gif', 'palette_p.png'], { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });
    assert.deepEqual(outside, []);
  } catch (e) {
    console.error(logs.join('\n'));
    throw e;
  } finally {
    if (process.env.SCISCORE_BROWSER_LOGS) console.log(logs.join('\n'));
    await context.close();
  }
});

test('a multi-GB preset asks before downloading (Hugging Face answered by a local mock)', async () => {
  const { page, context, outside, logs } = await openPage(env.browser, env.server.url);
  try {
    // Sizes as HEAD answers them (no download happens: the test cancels). Registered last, this
    // route answers before the catch-all one; nothing reaches the network.
    const sizes = { 'model.safetensors': 3_944_000_000, 'config.json': 4_500, 'tokenizer.json': 3_600_000, 'preprocessor_config.json': 300 };
    const asked = [];
    await context.route('https://huggingface.co/**', (route) => {
      const url = route.request().url();
      asked.push(`${route.request().method()} ${url} ${route.request().headers().range ?? ''}`.trim());
      const size = sizes[url.split('/').pop()];
      const cors = { 'access-control-allow-origin': '*', 'access-control-expose-headers': 'content-length, content-range' };
      if (size === undefined) return route.fulfill({ status: 404, headers: cors, body: '' });
      return route.fulfill({ status: 200, headers: { ...cors, 'content-length': String(size) }, body: '' });
    });
    await page.goto(`${env.server.url}?backend=cpu`);
    assert.equal(await page.inputValue('#preset'), 'sciscore', 'SciScore is the default preset');
    await page.click('#load-preset');
    await page.waitForSelector('#confirm:not([hidden])');
    const text = await page.textContent('#confirm-text');
    assert.match(text, /3\.9\d GB/, text);
    assert.match(text, /huggingface\.co/);
    await page.click('#cancel-download');
    assert.match(await page.textContent('#status'), /cancelled/);
    // HEADs for the sizes; GETs only for config.json and the safetensors header (the size the
    // cache will hold), never the weights.
    const base = 'https://huggingface.co/Jialuo21/SciScore/resolve/main/';
    const small = (a) => a.startsWith(`GET ${base}config.json`)
      || (a.startsWith(`GET ${base}model.safetensors bytes=`) && Number(a.split('-').pop()) < 1e6);
    assert.ok(asked.length > 0 && asked.every((a) => a.startsWith(`HEAD ${base}`) || small(a)), asked.join('\n'));
    assert.deepEqual(outside.filter((u) => !u.startsWith('https://huggingface.co/')), []);
  } catch (e) {
    console.error(logs.join('\n'));
    throw e;
  } finally {
    if (process.env.SCISCORE_BROWSER_LOGS) console.log(logs.join('\n'));
    await context.close();
  }
});

test('webgpu (SwiftShader): ?backend=webgpu scores like transformers, or says it fell back to the CPU', async (t) => {
  const { page, outside, logs, context } = await openPage(env.browser, env.server.url);
  try {
    // Every text the progress line shows while loading (the shader phase is brief).
    await page.addInitScript(() => {
      window.progressTexts = [];
      new MutationObserver(() => {
        const t = document.querySelector('#progress-text')?.textContent;
        if (t && window.progressTexts.at(-1) !== t) window.progressTexts.push(t);
      }).observe(document, { subtree: true, childList: true, characterData: true });
    });
    const load = await loadDemoFiles(page, 'webgpu');
    const backend = await page.textContent('#backend');
    // scripts/test sets SCISCORE_REQUIRE_GPU=1: there, SwiftShader is known to be present.
    if (process.env.SCISCORE_REQUIRE_GPU === '1') assert.equal(backend, 'webgpu', await page.textContent('#backend-note'));
    const names = IMAGES.slice(0, 4);
    const s = await scoreImages(page, 0, names);
    if (backend === 'webgpu') {
      const texts = await page.evaluate(() => window.progressTexts);
      const shaders = texts.filter((t) => t.startsWith('compiling GPU kernels'));
      assert.ok(shaders.length >= 2, `shader compilation progress shown: ${JSON.stringify(texts)}`);
      assert.match(shaders.at(-1), /^compiling GPU kernels: (\d+)\/\1 pipelines$/);
      const maxDiff = checkScores(s.r, 0, names, { scoreTol: GPU_SCORE_TOL, probTol: GPU_PROB_TOL });
      t.diagnostic(`webgpu (SwiftShader): load ${load.ms} ms, score ${names.length} images ${s.ms} ms; max |score - transformers| ${maxDiff.toExponential(1)}`);
    } else {
      // The GPU backend could not run here (not built yet, or no adapter): the page must have
      // fallen back to the CPU, said why, and still be right.
      assert.equal(backend, 'cpu');
      const note = await page.textContent('#backend-note');
      assert.match(note, /WebGPU|GPU/, 'the page says why it uses the CPU');
      checkScores(s.r, 0, names, { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });
      t.diagnostic(`webgpu: NOT TESTED ON THE GPU; the page fell back to the cpu backend: ${note}`);
      console.log(`# webgpu: fell back to cpu: ${note}`);
    }
    await page.screenshot({ path: join(ROOT, 'target/browser/page-webgpu.png'), fullPage: true });
    assert.deepEqual(outside, []);
  } catch (e) {
    console.error(logs.join('\n'));
    throw e;
  } finally {
    if (process.env.SCISCORE_BROWSER_LOGS) console.log(logs.join('\n'));
    await context.close();
  }
});

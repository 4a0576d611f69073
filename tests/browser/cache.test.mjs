// The page's model cache (Cache Storage): an f32 model downloaded by URL is kept with its matrices
// in f16 (about half the disk), the load that fills the cache already scores with those values, so
// a second visit, read from the cache, scores exactly as the first; both stay within the f16
// tolerances of the goldens (src/testing/end_to_end.rs: scores within 0.1) on the CPU and on WebGPU
// (SwiftShader). A damaged cache entry is deleted, downloaded again and noted, never loaded; a full
// quota is said before the download, with the offer to load without keeping; an f16 folder made by
// `sciscore convert --dtype f16` loads by URL.
//
// The model "host" is https://huggingface.co/sciscore-test/ (the page's CSP lets it connect to
// Hugging Face only), answered by a route of the test from the fixture folders (Range, HEAD and
// CORS as the CDN answers them): the page caches only other hosts' files.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEMO, FIXTURES, GOLDEN, ROOT, cacheName, goldenScores, results, serveAndLaunch, softmax, waitReady, withPage,
} from './harness.mjs';

/** The f16 tolerance of the GPU path (src/testing/end_to_end.rs SCORE_ABS_F16). */
const SCORE_ABS_F16 = 0.1;
/** Probabilities over 3 images follow from scores within 0.1 (softmax is 1/4-Lipschitz per score). */
const PROB_F16 = 0.05;
const HOST = 'https://huggingface.co/sciscore-test/';
const PROMPT = 3;
const NAMES = ['rgb_gradient.png', 'palette_p.png', 'lossless.webp'];

const env = serveAndLaunch();

// An f16 copy of the fixture model, as `sciscore convert` writes it.
const F16_DIR = mkdtempSync(join(tmpdir(), 'sciscore-f16-'));
process.on('exit', () => rmSync(F16_DIR, { recursive: true, force: true }));
const BIN = process.env.SCISCORE_BIN || join(ROOT, 'target/debug/sciscore');
execFileSync(BIN, ['convert', '--model', DEMO, '--dtype', 'f16', '--out', join(F16_DIR, 'm')], { stdio: 'ignore' });
const FOLDERS = { 'tiny224/': DEMO, 'tiny224-f16/': join(F16_DIR, 'm') };

/** Serves FOLDERS under HOST; counts the weight GETs per folder in `gets`. */
async function host(context) {
  const gets = { 'tiny224/': 0, 'tiny224-f16/': 0 };
  await context.route(`${HOST}**`, (route) => {
    const req = route.request();
    const cors = {
      'access-control-allow-origin': '*',
      'access-control-allow-headers': 'range',
      'access-control-expose-headers': 'content-length, content-range',
    };
    if (req.method() === 'OPTIONS') return route.fulfill({ status: 204, headers: cors, body: '' });
    const rest = req.url().slice(HOST.length);
    const folder = Object.keys(FOLDERS).find((f) => rest.startsWith(f));
    const file = folder && join(FOLDERS[folder], rest.slice(folder.length));
    let size;
    try {
      size = statSync(file).size;
    } catch {
      return route.fulfill({ status: 404, headers: cors, body: '' });
    }
    if (req.method() === 'HEAD') return route.fulfill({ status: 200, headers: { ...cors, 'content-length': String(size) }, body: '' });
    const m = /bytes=(\d+)-(\d+)/.exec(req.headers().range ?? '');
    const body = readFileSync(file);
    if (!m) return route.fulfill({ status: 200, headers: { ...cors, 'content-length': String(size) }, body });
    const [a, b] = [Number(m[1]), Math.min(Number(m[2]), size - 1)];
    if (file.endsWith('.safetensors') && a >= 8 + 8) gets[folder] += 1;
    return route.fulfill({
      status: 206,
      headers: { ...cors, 'content-range': `bytes ${a}-${b}/${size}`, 'content-length': String(b - a + 1) },
      body: body.subarray(a, b + 1),
    });
  });
  return gets;
}

async function scoreOn(page) {
  await page.fill('#prompt', GOLDEN.prompts[PROMPT]);
  await page.setInputFiles('#images', NAMES.map((n) => join(FIXTURES, 'images', n)));
  await page.click('#score');
  return results(page, NAMES.length);
}

/** The largest |score - golden|. */
function offGolden(got) {
  const want = goldenScores(PROMPT, NAMES);
  return Math.max(...got.map((r, i) => Math.abs(r.score - want[i])));
}

function withinF16(got, what) {
  const want = goldenScores(PROMPT, NAMES);
  const wantP = softmax(want);
  got.forEach((r, i) => {
    assert.equal(r.error, null, `${what} ${r.name}: ${r.error}`);
    assert.ok(Math.abs(r.score - want[i]) <= SCORE_ABS_F16, `${what} ${r.name}: score ${r.score}, transformers ${want[i]}`);
    assert.ok(Math.abs(r.prob - wantP[i]) <= PROB_F16, `${what} ${r.name}: prob ${r.prob}, transformers ${wantP[i]}`);
  });
}

/** Cache Storage, in the page: bytes of the model's entries, f16 ones (`sciscore=h…`) apart. */
async function cached(page) {
  return page.evaluate(async (name) => {
    const c = await caches.open(name);
    const out = { entries: 0, weights: 0, f16: 0, f16Entries: 0 };
    for (const req of await c.keys()) {
      const n = (await (await c.match(req)).arrayBuffer()).byteLength;
      out.entries += 1;
      if (req.url.includes('model.safetensors?')) out.weights += n;
      if (/sciscore=h\d/.test(req.url)) { out.f16 += n; out.f16Entries += 1; }
    }
    return out;
  }, await cacheName(page));
}

/** Loads `folder` from HOST on `backend` (a new navigation), scores, and says what it got. */
async function visit(page, folder, backend) {
  await page.goto(`${env.server.url}?backend=${backend}&model=${encodeURIComponent(HOST + folder)}`);
  await waitReady(page);
  const note = await page.textContent('#backend-note');
  return { backend: await page.textContent('#backend'), note, r: await scoreOn(page) };
}

for (const backend of ['cpu', 'webgpu']) {
  test(`${backend}: an f32 model by URL is cached with f16 matrices; the second visit scores as the first${backend === 'cpu' ? ', and so does a repaired cache' : ''}`, async (t) => {
    await withPage(env.browser, env.server.url, async ({ page, context }) => {
      const gets = await host(context);
      const first = await visit(page, 'tiny224/', backend);
      if (first.backend !== backend) {
        t.skip(`no ${backend} here: ${first.note}`);
        return;
      }
      withinF16(first.r, 'first visit');
      t.diagnostic(`${backend}: f16-cached scores within ${offGolden(first.r).toExponential(2)} of the goldens`);
      const fetched = gets['tiny224/'];
      assert.ok(fetched > 0, 'the first visit downloads the weights');
      const c = await cached(page);
      const f32 = statSync(join(DEMO, 'model.safetensors')).size;
      t.diagnostic(`${backend}: model.safetensors ${f32} bytes; cached ${c.weights} bytes (${(c.weights / f32).toFixed(3)}), ${c.f16} of them in ${c.f16Entries} f16 entries`);
      assert.ok(c.f16Entries > 0, 'matrices cached as f16');
      assert.ok(c.weights < 0.56 * f32, `cached ${c.weights} of ${f32} bytes`);

      // Second visit: nothing downloaded, the same scores to the last digit.
      const second = await visit(page, 'tiny224/', backend);
      assert.equal(gets['tiny224/'], fetched, 'the second visit reads the weights from the cache');
      assert.deepEqual(second.r, first.r);
      // The repair is the source's, the same for both backends: checked on the CPU only (each
      // WebGPU load on SwiftShader takes half a minute).
      if (backend !== 'cpu') return;

      // Damage two f16 entries (one byte altered, one truncated): the load notices, says so,
      // downloads those two again, and scores as before.
      await page.evaluate(async (name) => {
        const c = await caches.open(name);
        const keys = (await c.keys()).filter((k) => /sciscore=h\d/.test(k.url));
        const [a, b] = keys;
        const bytes = new Uint8Array(await (await c.match(a)).arrayBuffer());
        bytes[5] ^= 0x40;
        await c.put(a, new Response(bytes));
        const cut = new Uint8Array(await (await c.match(b)).arrayBuffer()).slice(0, 10);
        await c.put(b, new Response(cut));
      }, await cacheName(page));
      const third = await visit(page, 'tiny224/', backend);
      assert.match(third.note, /2 damaged piece\(s\) .* downloaded again/, third.note);
      assert.equal(gets['tiny224/'], fetched + 2, 'only the damaged pieces downloaded again');
      assert.deepEqual(third.r, first.r);
      const fourth = await visit(page, 'tiny224/', backend);
      assert.doesNotMatch(fourth.note, /damaged/, 'the repaired entries are whole again');
    });
  });
}

test('a full quota is said before the download, and the model loads without being kept', async (t) => {
  await withPage(env.browser, env.server.url, async ({ page, context }) => {
    const gets = await host(context);
    await page.addInitScript(() => {
      navigator.storage.estimate = async () => ({ quota: 5_000_000, usage: 4_000_000 });
    });
    await page.goto(`${env.server.url}?backend=cpu&model=${encodeURIComponent(`${HOST}tiny224/`)}`);
    await page.waitForSelector('#confirm:not([hidden])');
    const text = await page.textContent('#confirm-text');
    assert.match(text, /needs \d+\.\d MB of browser storage, but only 1\.0 MB is free/, text);
    assert.equal(await page.textContent('#confirm-download'), 'Load without keeping');
    assert.equal(gets['tiny224/'], 0, 'nothing downloaded before the answer');
    await page.click('#confirm-download');
    await waitReady(page);
    const uncached = await scoreOn(page);
    withinF16(uncached, 'uncached');
    t.diagnostic(`cpu, uncached (f32): scores within ${offGolden(uncached).toExponential(2)} of the goldens`);
    const c = await cached(page);
    assert.equal(c.f16Entries, 0, 'no weights kept');
    assert.ok(c.weights < 10_000, `only the header probed: ${c.weights} bytes`);
  });
});

test('an f16 folder made by `sciscore convert --dtype f16` loads by URL (as a preset may name one)', async (t) => {
  await withPage(env.browser, env.server.url, async ({ page, context }) => {
    const gets = await host(context);
    const v = await visit(page, 'tiny224-f16/', 'cpu');
    withinF16(v.r, 'f16 folder');
    const c = await cached(page);
    const f16 = statSync(join(F16_DIR, 'm', 'model.safetensors')).size;
    t.diagnostic(`f16 folder: model.safetensors ${f16} bytes; cached ${c.weights}`);
    assert.ok(gets['tiny224-f16/'] > 0);
    assert.equal(c.f16Entries, 0, 'f16 tensors are kept as stored');
    assert.ok(Math.abs(c.weights - f16) < 0.01 * f16, `cached ${c.weights} of ${f16} bytes`);
  });
});

// Several prompts in the page: the prompts x images matrix ([data-testid=cell]) against what
// Hugging Face transformers computes (tests/fixtures/goldens/tiny224.json) and against
// `sciscore score --json` with the same prompts, on the CPU (wasm) and on WebGPU (SwiftShader);
// a new or edited prompt over scored images runs the text tower only (the engine's own counts);
// the Science-T2I row helper, hostile pastes included; an unreadable image among the others; the
// table at a phone's width.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CPU_SCORE_TOL, DEMO, DEMO_FILES, FIXTURES, GOLDEN, GPU_PROB_TOL, GPU_SCORE_TOL, PROB_TOL, ROOT, goldenScores, results, serveAndLaunch,
  softmax, waitReady, withPage,
} from './harness.mjs';

/** The page (wasm) and the CLI (native) run the same f32 CPU code: only summation order differs. */
const CLI_TOL = 1e-3;

const img = (n) => join(FIXTURES, 'images', n);
const env = serveAndLaunch();

/** The cells matching `sel`, their attributes read as numbers and flags. */
function readCells(page, sel = '[data-testid="cell"]') {
  return page.$$eval(sel, (els) => els.map((e) => ({
    prompt: Number(e.dataset.prompt),
    image: Number(e.dataset.image),
    score: Number(e.dataset.score),
    probImages: Number(e.dataset.probImages),
    probPrompts: Number(e.dataset.probPrompts),
    bestImage: e.hasAttribute('data-best-image'),
    bestPrompt: e.hasAttribute('data-best-prompt'),
    error: e.dataset.error ?? null,
    text: e.textContent,
  })));
}

/** Every cell once `rows` x `cols` of them are there and the page is idle. */
async function cells(page, rows, cols) {
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="cell"]').length === n
    && !document.querySelector('#status').classList.contains('busy'), rows * cols, { timeout: 60_000 });
  return readCells(page);
}

/** `{texts, images}` the engine's towers have encoded since the load, as the page shows them. */
async function encoded(page) {
  const d = await page.$eval('#status', (s) => ({ texts: s.dataset.textsEncoded, images: s.dataset.imagesEncoded }));
  return { texts: Number(d.texts), images: Number(d.images) };
}

/** Fills prompt field `field` (0: #prompt) and waits for the re-scored matrix. */
async function setPrompt(page, field, text, rows, cols) {
  const before = await page.$$eval('[data-testid="cell"]', (els) => els.map((e) => e.dataset.score).join());
  await page.fill(field === 0 ? '#prompt' : `#prompt-${field + 1}`, text);
  await page.waitForFunction((b) => [...document.querySelectorAll('[data-testid="cell"]')].map((e) => e.dataset.score).join() !== b
    && !document.querySelector('#status').classList.contains('busy'), before, { timeout: 60_000 });
  return cells(page, rows, cols);
}

/**
 * The cells are the goldens of `prompts` (golden indices, one per row) x `names`: scores, the
 * softmax of each row and of each column, and the best markers on the row and column maxima.
 */
function checkCells(got, prompts, names, { scoreTol, probTol }) {
  const want = prompts.map((p) => goldenScores(p, names));
  const rows = want.map((r) => softmax(r));
  const cols = names.map((_, i) => softmax(want.map((r) => r[i])));
  assert.equal(got.length, prompts.length * names.length);
  let maxDiff = 0;
  for (const c of got) {
    const w = want[c.prompt][c.image];
    const at = `cell (${c.prompt}, ${c.image})`;
    assert.ok(Math.abs(c.score - w) <= scoreTol, `${at}: score ${c.score}, transformers ${w}`);
    assert.ok(Math.abs(c.probImages - rows[c.prompt][c.image]) <= probTol, `${at}: prob over images ${c.probImages} vs ${rows[c.prompt][c.image]}`);
    assert.ok(Math.abs(c.probPrompts - cols[c.image][c.prompt]) <= probTol, `${at}: prob over prompts ${c.probPrompts} vs ${cols[c.image][c.prompt]}`);
    maxDiff = Math.max(maxDiff, Math.abs(c.score - w));
  }
  const at = (p, i) => got.find((c) => c.prompt === p && c.image === i);
  prompts.forEach((_, p) => {
    const row = got.filter((c) => c.prompt === p);
    const best = row.reduce((a, b) => (b.score > a.score ? b : a));
    assert.deepEqual(row.filter((c) => c.bestImage), [best], `prompt ${p}: one best image, the highest score`);
    assert.match(best.text, /best image/, 'marked in words, not only by colour');
  });
  names.forEach((_, i) => {
    const col = prompts.map((_, p) => at(p, i));
    const best = col.reduce((a, b) => (b.score > a.score ? b : a));
    assert.deepEqual(col.filter((c) => c.bestPrompt), [best], `image ${i}: one best prompt, the highest score`);
    assert.match(best.text, /best prompt/);
  });
  return maxDiff;
}

async function loadAndScore(page, backend, names) {
  await page.goto(`${env.server.url}?backend=${backend}`);
  await page.setInputFiles('#model-files', DEMO_FILES);
  await waitReady(page);
  await page.fill('#prompt', GOLDEN.prompts[0]);
  await page.setInputFiles('#images', names.map(img));
  await page.click('#score');
  return results(page, names.length);
}

test('cpu: several prompts give the matrix of transformers and of the CLI; a new prompt is one text pass', async (t) => {
  await withPage(env.browser, env.server.url, async ({ page, outside }) => {
    const names = ['rgb_gradient.png', 'lossless.webp', 'frame.gif'];
    await loadAndScore(page, 'cpu', names);
    assert.deepEqual(await encoded(page), { texts: 1, images: names.length });
    assert.equal(await page.isHidden('#matrix-panel'), true, 'one prompt: no matrix');
    assert.equal(await page.locator('[data-testid="cell"]').count(), 0);
    const firstMs = Number(await page.getAttribute('#status', 'data-score-ms'));

    // Adding a prompt re-scores by itself: one text pass, no image encoded again.
    await page.click('#add-prompt');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'prompt-2', 'the new field has the focus');
    let got = await setPrompt(page, 1, GOLDEN.prompts[1], 2, names.length);
    assert.deepEqual(await encoded(page), { texts: 2, images: names.length });
    const addMs = Number(await page.getAttribute('#status', 'data-score-ms'));
    checkCells(got, [0, 1], names, { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });

    await page.focus('#add-prompt');
    await page.keyboard.press('Enter'); // keyboard-operable
    got = await setPrompt(page, 2, GOLDEN.prompts[2], 3, names.length);
    assert.deepEqual(await encoded(page), { texts: 3, images: names.length });
    // Editing a prompt: one text pass for the new text.
    got = await setPrompt(page, 1, GOLDEN.prompts[3], 3, names.length);
    assert.deepEqual(await encoded(page), { texts: 4, images: names.length });
    const maxDiff = checkCells(got, [0, 3, 2], names, { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });

    // The result elements keep describing the first prompt.
    const r = await results(page, names.length);
    const cell = (p, i) => got.find((c) => c.prompt === p && c.image === i);
    r.forEach((x, i) => {
      assert.equal(x.score, cell(0, i).score, `result ${i} is prompt 0's`);
      assert.equal(x.prob, cell(0, i).probImages);
    });

    // The CLI with the same prompts: the same matrix.
    const out = execFileSync(process.env.SCISCORE_BIN || join(ROOT, 'target/debug/sciscore'), ['score', '--backend', 'cpu', '--json', '--model', DEMO,
      ...[0, 3, 2].flatMap((p) => ['--prompt', GOLDEN.prompts[p]]), ...names.map(img)], { encoding: 'utf8' });
    const cli = JSON.parse(out).matrix;
    for (const c of got) {
      for (const [k, v] of [['scores', c.score], ['probs_over_images', c.probImages], ['probs_over_prompts', c.probPrompts]]) {
        assert.ok(Math.abs(cli[k][c.prompt][c.image] - v) <= CLI_TOL, `(${c.prompt}, ${c.image}) ${k}: page ${v}, CLI ${cli[k][c.prompt][c.image]}`);
      }
    }

    // Pairwise: probabilities over the images within each pair (1, 2), (3); over the prompts
    // as before. Nothing is encoded again.
    await page.check('#pairwise');
    await page.waitForFunction(() => document.querySelector('#results').classList.contains('pairwise'));
    const pairs = await cells(page, 3, names.length);
    for (const c of pairs) {
      const before = cell(c.prompt, c.image);
      const pair = c.image < 2 ? softmax([cell(c.prompt, 0).score, cell(c.prompt, 1).score])[c.image] : 1;
      assert.ok(Math.abs(c.probImages - pair) <= PROB_TOL, `pairwise (${c.prompt}, ${c.image}): ${c.probImages} vs ${pair}`);
      assert.equal(c.score, before.score);
      assert.equal(c.probPrompts, before.probPrompts);
    }
    assert.deepEqual(await encoded(page), { texts: 4, images: names.length });
    await page.uncheck('#pairwise');
    await page.waitForFunction(() => !document.querySelector('#results').classList.contains('pairwise'));
    await cells(page, 3, names.length);

    // Export JSON: the first prompt's results, and the prompts and the matrix as the CLI has them.
    assert.match(await page.textContent('#status'), /against 3 prompts/);
    const [json] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
    const exported = JSON.parse(readFileSync(await json.path(), 'utf8'));
    assert.deepEqual(exported.prompts, [0, 3, 2].map((p) => GOLDEN.prompts[p]));
    for (const c of got) assert.equal(exported.matrix.probs_over_prompts[c.prompt][c.image], c.probPrompts);
    assert.deepEqual(exported.results.map((x) => x.score), r.map((x) => x.score));

    // A real table: column headers for the images, row headers for the prompts.
    assert.equal(await page.locator('#matrix thead th[scope="col"]').count(), names.length + 1);
    assert.equal(await page.locator('#matrix tbody th[scope="row"]').count(), 3);

    // At a phone's width the table scrolls inside its box and the page does not.
    await page.setViewportSize({ width: 390, height: 800 });
    const fit = await page.evaluate(() => {
      const box = document.querySelector('.matrix-scroll');
      return { page: document.documentElement.scrollWidth, box: box.clientWidth, table: box.scrollWidth };
    });
    assert.ok(fit.page <= 390, `the page is ${fit.page} px wide at 390 px`);
    assert.ok(fit.table > fit.box, `the table scrolls in its box: ${JSON.stringify(fit)}`);
    mkdirSync(join(ROOT, 'target/browser'), { recursive: true });
    await page.screenshot({ path: join(ROOT, 'target/browser/matrix-390.png'), fullPage: true });
    await page.setViewportSize({ width: 1200, height: 1000 });
    await page.screenshot({ path: join(ROOT, 'target/browser/matrix-cpu.png'), fullPage: true });

    t.diagnostic(`cpu: ${names.length} images x 1 prompt ${firstMs} ms in the engine; adding a prompt over them ${addMs} ms; max |score - transformers| ${maxDiff.toExponential(1)}`);
    assert.deepEqual(outside, []);
  });
});

test('cpu: the Science-T2I row helper fills three prompts; hostile pastes only say why not; an unreadable image gets its own column of errors', async () => {
  await withPage(env.browser, env.server.url, async ({ page, outside }) => {
    const names = ['palette_p.png', 'gray_l.png'];
    await loadAndScore(page, 'cpu', names);
    await page.click('#t2i-helper summary');
    const fill = async (text) => {
      await page.fill('#t2i-row', text);
      await page.click('#t2i-fill');
      return page.textContent('#t2i-message');
    };
    const prompts = () => page.$$eval('#prompt, #more-prompts textarea', (els) => els.map((e) => e.value));
    for (const [paste, why] of [
      ['not json at all', /not filled: not JSON/],
      ['[1, 2, 3]', /not filled: not a JSON object/],
      ['{"implicit_prompt": "a", "explicit_prompt": 7}', /not filled: .*explicit_prompt, superficial_prompt/],
      ['x'.repeat(2 << 20), /not filled: .*more than a dataset row/],
    ]) {
      assert.match(await fill(paste), why);
      assert.deepEqual(await prompts(), [GOLDEN.prompts[0]], 'the prompts are untouched');
    }
    assert.match(await page.textContent('#status'), /ready/);

    // A row as the dataset has it (extra columns too): implicit, explicit, superficial.
    const row = { implicit_prompt: GOLDEN.prompts[2], explicit_prompt: GOLDEN.prompts[0], superficial_prompt: GOLDEN.prompts[1], category: 'physics', law: 'x', explicit_image: [] };
    assert.match(await fill(JSON.stringify(row)), /filled/);
    assert.deepEqual(await prompts(), [GOLDEN.prompts[2], GOLDEN.prompts[0], GOLDEN.prompts[1]]);
    checkCells(await cells(page, 3, names.length), [2, 0, 1], names, { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });
    assert.deepEqual(await encoded(page), { texts: 3, images: names.length }, 'each prompt encoded once, each image once');

    // A second row replaces the three; removing a prompt re-scores from the cache.
    assert.match(await fill(JSON.stringify({ ...row, implicit_prompt: GOLDEN.prompts[1], superficial_prompt: GOLDEN.prompts[2] })), /filled/);
    await cells(page, 3, names.length);
    await page.waitForFunction((p) => document.querySelector('#matrix tbody th').textContent.endsWith(p), GOLDEN.prompts[1]);
    await page.click('#more-prompts li:last-child .remove-prompt');
    checkCells(await cells(page, 2, names.length), [1, 0], names, { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });
    assert.deepEqual(await encoded(page), { texts: 3, images: names.length }, 'nothing encoded again');

    // A file that is not an image: its column says so, the others still score, from the cache.
    await page.setInputFiles('#images', [{ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image') }]);
    await page.click('#score');
    const all = await cells(page, 2, 3);
    const bad = all.filter((c) => c.image === 2);
    assert.equal(bad.length, 2);
    for (const c of bad) {
      assert.ok(c.error && Number.isNaN(c.score), `the unreadable image's cells carry its error: ${c.error}`);
      assert.match(c.text, /could not be read/);
    }
    checkCells(all.filter((c) => c.image < 2), [1, 0], names, { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL });
    assert.deepEqual(await encoded(page), { texts: 3, images: names.length }, 'the readable images come from the cache');
    assert.deepEqual(outside, []);
  });
});

test('webgpu (SwiftShader): the matrix like transformers; a new prompt runs no vision pass', async (t) => {
  await withPage(env.browser, env.server.url, async ({ page, outside }) => {
    const names = ['rgb_gradient.png', 'frame.gif'];
    await loadAndScore(page, 'webgpu', names);
    const backend = await page.textContent('#backend');
    if (process.env.SCISCORE_REQUIRE_GPU === '1') assert.equal(backend, 'webgpu', await page.textContent('#backend-note'));
    const tol = backend === 'webgpu' ? { scoreTol: GPU_SCORE_TOL, probTol: GPU_PROB_TOL } : { scoreTol: CPU_SCORE_TOL, probTol: PROB_TOL };
    await page.click('#add-prompt');
    const got = await setPrompt(page, 1, GOLDEN.prompts[1], 2, names.length);
    assert.deepEqual(await encoded(page), { texts: 2, images: names.length });
    const maxDiff = checkCells(got, [0, 1], names, tol);
    if (backend !== 'webgpu') console.log(`# webgpu: fell back to cpu: ${await page.textContent('#backend-note')}`);
    t.diagnostic(`${backend}: matrix max |score - transformers| ${maxDiff.toExponential(1)}`);
    assert.deepEqual(outside, []);
  });
});

// Region maps on the page (*Show regions*, `#explain`), on the CPU (wasm) and on WebGPU
// (SwiftShader): each result's patch map (`[data-testid=heatmap]`: data-grid, data-map) and the
// occlusion map run on request, compared with what transformers computes
// (tests/fixtures/goldens/regions_tiny224.json, from scripts/make_fixtures.py); opacity, cancel
// and PNG export.
// SCISCORE_BIN=target/debug/sciscore node --test --test-concurrency=1 tests/browser/explain.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_FILES, FIXTURES, GOLDEN, LOAD_TIMEOUT_MS, ROOT, openPage, results, serveAndLaunch, waitReady } from './harness.mjs';

const REGIONS = JSON.parse(readFileSync(join(FIXTURES, 'goldens/regions_tiny224.json'), 'utf8'));
/** The scores' tolerances of page.test.mjs: the wasm CPU path is the native f32 reference... */
const CPU_TOL = 0.01;
/** ...and WebGPU keeps the weights in f16 (patch maps are scores of single patches). */
const GPU_TOL = 0.05;
/** Fixtures whose decoding is bit-exact with PIL, with golden region maps. */
const NAMES = ['rgb_gradient.png', 'tiny.png'];

const env = serveAndLaunch();

function golden(prompt, image) {
  const e = REGIONS.entries.find((x) => x.prompt === prompt && x.image === image);
  if (!e) throw new Error(`no golden region map for prompt ${prompt}, ${image}`);
  return e;
}

function maxDiff(got, want) {
  assert.equal(got.length, want.length, 'map length');
  return Math.max(...got.map((v, i) => Math.abs(v - want[i])));
}

/** Waits for `n` canvases of `testid` after the explain controls settle, and reads them. */
async function maps(page, testid, n) {
  await page.waitForFunction(({ testid, n }) => {
    const st = document.querySelector('#explain-controls').dataset.state;
    return document.querySelectorAll(`[data-testid="${testid}"]`).length === n && !['computing', 'occlusion'].includes(st);
  }, { testid, n }, { timeout: LOAD_TIMEOUT_MS });
  return page.$$eval(`[data-testid="${testid}"]`, (els) => els.map((e) => ({
    name: e.closest('[data-testid="result"]').dataset.name,
    grid: JSON.parse(e.dataset.grid),
    map: JSON.parse(e.dataset.map),
  })));
}

function checkPatchMaps(got, prompt, tol) {
  assert.deepEqual(got.map((m) => m.name), NAMES, 'one heat map per result, in input order');
  let worst = 0;
  for (const m of got) {
    const g = golden(prompt, m.name);
    assert.deepEqual(m.grid, g.patch_grid);
    const d = maxDiff(m.map, g.patch_map);
    assert.ok(d <= tol, `${m.name}: patch map max |diff| ${d} > ${tol}`);
    worst = Math.max(worst, d);
  }
  return worst;
}

for (const backend of ['cpu', 'webgpu']) {
  test(`${backend}: patch maps and the occlusion map match transformers; opacity, cancel, PNG export`, async (t) => {
    const tol = backend === 'cpu' ? CPU_TOL : GPU_TOL;
    const { page, outside, logs, context } = await openPage(env.browser, env.server.url);
    try {
      await page.goto(`${env.server.url}?backend=${backend}`);
      await page.setInputFiles('#model-files', DEMO_FILES);
      await waitReady(page);
      assert.equal(await page.textContent('#backend'), backend);
      await page.fill('#prompt', GOLDEN.prompts[0]);
      await page.setInputFiles('#images', NAMES.map((n) => join(FIXTURES, 'images', n)));
      await page.click('#score');
      await results(page, NAMES.length);
      assert.equal(await page.$$eval('[data-testid="heatmap"]', (e) => e.length), 0, 'no maps until asked');

      await page.check('#explain');
      const patch0 = checkPatchMaps(await maps(page, 'heatmap', NAMES.length), 0, tol);

      // Opacity redraws the overlay.
      const pixels = () => page.$eval('[data-testid="heatmap"]', (c) => {
        const d = c.getContext('2d').getImageData(0, 0, 224, 224).data;
        let s = 0;
        for (let i = 0; i < d.length; i += 97) s += d[i];
        return s;
      });
      const before = await pixels();
      await page.fill('#explain-opacity', '0.1');
      await page.waitForFunction((b) => {
        const d = document.querySelector('[data-testid="heatmap"]').getContext('2d').getImageData(0, 0, 224, 224).data;
        let s = 0;
        for (let i = 0; i < d.length; i += 97) s += d[i];
        return s !== b;
      }, before, { timeout: 10_000 });
      assert.equal(await page.textContent('#explain-opacity-value'), '10%');

      // Occlusion 3 x 3 on request, with progress; golden for rgb_gradient.png and prompt 0.
      await page.fill('#occlusion-grid', '3');
      const t0 = Date.now();
      await page.click('#explain-occlusion');
      const occ = await maps(page, 'occlusion', NAMES.length);
      const occMs = Date.now() - t0;
      assert.equal(await page.getAttribute('#explain-controls', 'data-state'), 'ready');
      assert.match(await page.textContent('#explain-progress-text'), /18 images/);
      const o = occ.find((m) => m.name === 'rgb_gradient.png');
      const want = golden(0, 'rgb_gradient.png').occlusion.find((x) => x.grid === 3);
      assert.deepEqual(o.grid, [3, 3]);
      const occDiff = maxDiff(o.map, want.drop);
      assert.ok(occDiff <= tol, `occlusion max |diff| ${occDiff} > ${tol}`);

      // PNG export of a map.
      const [dl] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid="result"] .region .png')]);
      assert.equal(dl.suggestedFilename(), 'rgb_gradient-patch.png');
      assert.deepEqual([...readFileSync(await dl.path()).subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      mkdirSync(join(ROOT, 'target/browser'), { recursive: true });
      await page.screenshot({ path: join(ROOT, `target/browser/explain-${backend}.png`), fullPage: true });

      // A new prompt re-scores and the maps follow it.
      await page.fill('#prompt', GOLDEN.prompts[2]);
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="occlusion"]').length === 0, null, { timeout: LOAD_TIMEOUT_MS });
      const patch2 = checkPatchMaps(await maps(page, 'heatmap', NAMES.length), 2, tol);

      // Cancel: a 32 x 32 occlusion (2048 images) stopped right away; the next run works.
      await page.fill('#occlusion-grid', '32');
      await page.click('#explain-occlusion');
      await page.waitForFunction(() => !document.querySelector('#explain-cancel').hidden, null, { timeout: 30_000 });
      await page.click('#explain-cancel');
      await page.waitForFunction(() => document.querySelector('#explain-controls').dataset.state === 'cancelled', null, { timeout: 60_000 });
      assert.equal(await page.$$eval('[data-testid="occlusion"]', (e) => e.length), 0);
      await page.fill('#occlusion-grid', '1');
      await page.click('#explain-occlusion');
      const one = await maps(page, 'occlusion', NAMES.length);
      assert.deepEqual(one[0].grid, [1, 1]);

      // Hostile grid values are refused with a message.
      await page.fill('#occlusion-grid', '33');
      await page.click('#explain-occlusion');
      await page.waitForFunction(() => document.querySelector('#explain-controls').dataset.state === 'error', null, { timeout: 10_000 });
      assert.match(await page.textContent('#explain-progress-text'), /1 to 32/);

      assert.deepEqual(outside, [], 'no request leaves the local server');
      t.diagnostic(`${backend}: max |patch map - transformers| ${Math.max(patch0, patch2).toExponential(1)}, occlusion 3x3 max |diff| ${occDiff.toExponential(1)}, occlusion of 2 images x 9 cells ${occMs} ms`);
    } catch (e) {
      console.error(logs.join('\n'));
      throw e;
    } finally {
      await context.close();
    }
  });
}

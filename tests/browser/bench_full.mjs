// The page with a full-size model folder from disk (SciScore's geometry: 3.9 GB of f32), as a
// user loads it with #model-files: load time, wasm memory, seconds per prompt and per image, for
// each backend and CPU mode. Not part of the tests (minutes per mode, and a 3.9 GB folder):
//   node tests/browser/bench_full.mjs MODEL_DIR [threads|relaxed|simd128|webgpu ...]
// (default: threads relaxed). A random folder of SciScore's geometry: see docs/performance.md.
// Needs the wasm build (scripts/serve --build-only) and a sciscore binary.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES, launch, openPage, startServer, waitReady, results } from './harness.mjs';

const [dir, ...asked] = process.argv.slice(2);
if (!dir) throw new Error('usage: node tests/browser/bench_full.mjs MODEL_DIR [threads|relaxed|simd128|webgpu ...]');
const QUERY = { threads: 'backend=cpu', relaxed: 'backend=cpu&threads=1', simd128: 'backend=cpu&wasm=simd128', webgpu: 'backend=webgpu' };
const modes = asked.length ? asked : ['threads', 'relaxed'];
const files = readdirSync(dir).filter((f) => !f.startsWith('.')).map((f) => join(dir, f));
const images = ['rgb_gradient.png', 'palette_p.png', 'lossless.webp'].map((n) => join(FIXTURES, 'images', n));
const HOUR = 3600_000;

const server = await startServer();
const browser = await launch();
try {
  for (const mode of modes) {
    if (!QUERY[mode]) throw new Error(`unknown mode ${mode}`);
    const { page, context } = await openPage(browser, server.url);
    try {
      await page.goto(`${server.url}?${QUERY[mode]}`);
      const t0 = Date.now();
      await page.setInputFiles('#model-files', files);
      await waitReady(page, { timeout: HOUR });
      const loadS = (Date.now() - t0) / 1e3;
      const note = await page.textContent('#backend-note');
      const backend = await page.textContent('#backend');
      // One prompt and three images: the text tower once, the vision tower three times.
      await page.fill('#prompt', 'a diagram of the water cycle with evaporation and condensation');
      await page.setInputFiles('#images', images);
      await page.click('#score');
      await results(page, images.length, HOUR);
      const firstMs = Number(await page.getAttribute('#status', 'data-score-ms'));
      // A second prompt: image embeddings are kept, so this is the text tower alone.
      const before = await page.getAttribute('[data-testid="result"]', 'data-score');
      await page.fill('#prompt', 'ice melting into water in a glass on a sunny table');
      await page.waitForFunction((b) => document.querySelector('[data-testid="result"]')?.dataset.score !== b
        && !document.querySelector('#status').classList.contains('busy'), before, { timeout: HOUR });
      const promptMs = Number(await page.getAttribute('#status', 'data-score-ms'));
      const imageMs = (firstMs - promptMs) / images.length;
      const memory = /wasm memory ([\d.]+ [MG]B)/.exec(note)?.[1] ?? '?';
      console.log(`${mode} (${backend}): load ${loadS.toFixed(1)} s, wasm memory ${memory}, `
        + `${(imageMs / 1e3).toFixed(2)} s per image, ${(promptMs / 1e3).toFixed(2)} s per prompt`);
      console.log(`  ${note}`);
    } finally {
      await context.close();
    }
  }
} finally {
  await browser.close();
  server.stop();
}

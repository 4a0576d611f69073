// Writes the README's pictures of the page: docs/matrix.png (three prompts against four images,
// the prompts x images table) and docs/regions.png (the patch maps over the images), both with
// the demo model in Chromium on the CPU path. Run after `scripts/serve --build-only` and
// `cargo build --bin sciscore`:  node scripts/screenshots.mjs
// (The demo model's weights are random: the pictures show the page, not meaningful scores.)

import { join } from 'node:path';
import { DEMO_FILES, FIXTURES, ROOT, launch, results, startServer, waitReady } from '../tests/browser/harness.mjs';

const img = (n) => join(FIXTURES, 'images', n);
const server = await startServer();
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${server.url}?backend=cpu`);
  await page.setInputFiles('#model-files', DEMO_FILES);
  await waitReady(page);
  await page.fill('#prompt', 'an ice cube floating in a glass of water');
  const names = ['rgb_gradient.png', 'photo_rgb.jpg', 'lossless.webp', 'frame.gif'];
  await page.setInputFiles('#images', names.map(img));
  await page.click('#score');
  await results(page, names.length);
  for (const [i, text] of ['an ice cube sinking to the bottom of a glass of water', 'a glass of water'].entries()) {
    await page.click('#add-prompt');
    await page.fill(`#prompt-${i + 2}`, text);
  }
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="cell"]').length === 12
    && !document.querySelector('#status').classList.contains('busy'), null, { timeout: 60_000 });
  await page.locator('#matrix-panel').screenshot({ path: join(ROOT, 'docs/matrix.png') });
  await page.check('#explain');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="heatmap"]').length === 4, null, { timeout: 60_000 });
  await page.locator('#results').screenshot({ path: join(ROOT, 'docs/regions.png') });
  console.log('wrote docs/matrix.png and docs/regions.png');
} finally {
  await browser.close();
  server.stop();
}

// The page for every visitor: an automated accessibility audit (axe-core, WCAG 2.x A and AA
// rules) of the page in each state a visitor meets (empty, model loaded, scored with several
// prompts, region maps shown), with no serious or critical violation allowed; the whole flow
// done with the keyboard alone; and the page at a phone's width (390 px), where nothing may make
// the page scroll sideways. Screenshots go to target/browser/.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_FILES, FIXTURES, GOLDEN, ROOT, results, serveAndLaunch, waitReady, withPage } from './harness.mjs';

const AXE = join(ROOT, 'node_modules/axe-core/axe.min.js');
const SHOTS = join(ROOT, 'target/browser');
const img = (n) => join(FIXTURES, 'images', n);
const env = serveAndLaunch();

/** Serious and critical axe violations on the page as it is now, one line each. */
async function audit(page) {
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.addScriptTag({ path: AXE });
  const r = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    resultTypes: ['violations'],
  }));
  return r.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
}

/** Loads the demo model and scores three images against two prompts, then shows the regions. */
async function scoreWithTwoPrompts(page, names) {
  await page.setInputFiles('#model-files', DEMO_FILES);
  await waitReady(page);
  await page.fill('#prompt', GOLDEN.prompts[0]);
  await page.setInputFiles('#images', names.map(img));
  await page.click('#score');
  await results(page, names.length);
  await page.click('#add-prompt');
  await page.fill('#prompt-2', GOLDEN.prompts[1]);
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="cell"]').length === n
    && !document.querySelector('#status').classList.contains('busy'), 2 * names.length, { timeout: 60_000 });
}

test('axe finds no serious or critical violation: empty, loaded, scored with a matrix, regions shown', async () => {
  await withPage(env.browser, env.server.url, async ({ page }) => {
    await page.goto(`${env.server.url}?backend=cpu`);
    await page.waitForFunction(() => document.querySelector('#status').textContent !== 'starting…', null, { timeout: 30_000 });
    const found = { empty: await audit(page) };
    await scoreWithTwoPrompts(page, ['rgb_gradient.png', 'lossless.webp', 'frame.gif']);
    found.scored = await audit(page);
    await page.check('#explain');
    await page.waitForSelector('[data-testid="heatmap"]', { timeout: 60_000 });
    found.regions = await audit(page);
    const all = Object.entries(found).flatMap(([state, v]) => v.map((line) => `${state}: ${line}`));
    assert.deepEqual(all, [], `accessibility violations:\n${all.join('\n')}`);
    // The audit itself sees a violation: a button with no name (critical in axe).
    await page.evaluate(() => document.querySelector('#score-panel').append(document.createElement('button')));
    assert.match((await audit(page)).join('\n'), /critical button-name/, 'axe reports an unnamed button');
  }, { bypassCSP: true }); // the page's CSP refuses injected scripts, axe among them
});

test('with the keyboard alone: score, add a prompt, show regions; the focus is visible', async () => {
  await withPage(env.browser, env.server.url, async ({ page }) => {
    await page.goto(`${env.server.url}?backend=cpu`);
    // Files come from the file chooser (a test cannot type a path); everything else by keys.
    await page.setInputFiles('#model-files', DEMO_FILES);
    await waitReady(page);
    await page.setInputFiles('#images', ['rgb_gradient.png', 'frame.gif'].map(img));
    await page.focus('#prompt');
    await page.keyboard.type(GOLDEN.prompts[0]);
    // Tab from the prompt reaches Score; Enter presses it.
    let steps = 0;
    while ((await page.evaluate(() => document.activeElement.id)) !== 'score' && steps++ < 40) await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'score', 'Tab reaches #score');
    const outline = await page.evaluate(() => {
      const s = getComputedStyle(document.activeElement);
      return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0 || s.boxShadow !== 'none';
    });
    assert.ok(outline, 'the focused button shows a focus ring');
    await page.keyboard.press('Enter');
    await results(page, 2);
    await page.focus('#add-prompt');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'prompt-2', 'the new prompt field takes the focus');
    await page.keyboard.type(GOLDEN.prompts[1]);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="cell"]').length === 4
      && !document.querySelector('#status').classList.contains('busy'), null, { timeout: 60_000 });
    await page.focus('#explain');
    await page.keyboard.press('Space');
    await page.waitForSelector('[data-testid="heatmap"]', { timeout: 60_000 });
    assert.equal(await page.getAttribute('#status', 'role'), 'status', '#status is a live region');
  });
});

test('at 390 px wide (a phone) the page does not scroll sideways; screenshot', async () => {
  await withPage(env.browser, env.server.url, async ({ page }) => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${env.server.url}?backend=cpu`);
    await scoreWithTwoPrompts(page, ['rgb_gradient.png', 'lossless.webp', 'frame.gif']);
    await page.check('#explain');
    await page.waitForSelector('[data-testid="heatmap"]', { timeout: 60_000 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than a 390 px screen`);
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, 'phone-390.png'), fullPage: true });
  });
});

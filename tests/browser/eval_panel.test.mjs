// The page's Science-T2I eval panel (its ids are `#bench-*`): the demo model on the Science-T2I
// fixture shards, evaluated in the browser (wasm CPU path), must give exactly the accuracies of
// transformers (tests/fixtures/goldens/eval_tiny224.json), as `sciscore eval` does.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_FILES, FIXTURES, openPage, serveAndLaunch, waitReady } from './harness.mjs';

const EVAL_GOLDEN = JSON.parse(readFileSync(join(FIXTURES, 'goldens/eval_tiny224.json'), 'utf8'));
const SHARDS = ['test-00000-of-00002.parquet', 'test-00001-of-00002.parquet'].map((n) => join(FIXTURES, 'science_t2i', n));

const env = serveAndLaunch();

test('cpu: the Science-T2I eval panel evaluates both fixture shards with the accuracies of transformers', async () => {
  const { page, outside, logs, context } = await openPage(env.browser, env.server.url);
  try {
    await page.goto(`${env.server.url}?backend=cpu`);
    await page.setInputFiles('#model-files', DEMO_FILES);
    const loaded = await waitReady(page);
    assert.equal(await page.textContent('#backend'), 'cpu');

    await page.setInputFiles('#bench-file', SHARDS);
    const t0 = Date.now();
    await page.click('#bench-run');
    await page.waitForFunction(() => document.querySelector('#bench-result').dataset.report
      || /\berror\b/.test(document.querySelector('#status').textContent), null, { timeout: 300_000 });
    await waitReady(page, { since: loaded });
    const got = JSON.parse(await page.getAttribute('#bench-result', 'data-report'));
    assert.equal(got.rows, EVAL_GOLDEN.rows);
    assert.deepEqual(got.errors, []);
    assert.equal(got.overall_accuracy, EVAL_GOLDEN.overall_accuracy);
    assert.deepEqual(got.category_accuracy, EVAL_GOLDEN.category_accuracy);
    assert.deepEqual(got.law_accuracy, EVAL_GOLDEN.law_accuracy);
    const progress = await page.textContent('#bench-progress-text');
    console.log(`Science-T2I eval panel: ${got.rows} rows in ${Date.now() - t0} ms (${progress})`);

    // Per-row CSV export: a header and one line per row.
    const [csv] = await Promise.all([page.waitForEvent('download'), page.click('#bench-csv')]);
    const lines = readFileSync(await csv.path(), 'utf8').trim().split(/\r\n/);
    assert.equal(lines[0], 'row,category,law,prob_explicit,prob_superficial,correct');
    assert.equal(lines.length, EVAL_GOLDEN.rows + 1);
    const correct = lines.slice(1).filter((l) => l.endsWith(',true')).length;
    assert.equal(correct / EVAL_GOLDEN.rows, EVAL_GOLDEN.overall_accuracy);
    assert.deepEqual(outside, [], 'nothing leaves the local server');
  } catch (e) {
    console.log(logs.join('\n'));
    throw e;
  } finally {
    await context.close();
  }
});

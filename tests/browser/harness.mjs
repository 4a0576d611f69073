// Shared set-up of the browser tests: a `sciscore serve` on a free port, Debian's Chromium driven
// by playwright-core (no browser download), and a record of every request the page makes.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const FIXTURES = join(ROOT, 'tests/fixtures');
export const DEMO = join(FIXTURES, 'models/tiny224');
export const GOLDEN = JSON.parse(readFileSync(join(FIXTURES, 'goldens/tiny224.json'), 'utf8'));
/** The demo model's files, as a user picks them in #model-files. */
export const DEMO_FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'preprocessor_config.json',
  'vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json'].map((f) => join(DEMO, f));

/** WebGPU on SwiftShader (no GPU here), and nothing in the background that phones home. */
export const CHROMIUM_ARGS = ['--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--use-webgpu-adapter=swiftshader',
  '--enable-features=Vulkan', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-default-apps', '--disable-domain-reliability'];

/** The wasm CPU path is the same f32 code as the native reference (which matches to ~1e-5). */
export const CPU_SCORE_TOL = 0.01;
/** Probabilities follow from the scores; softmax over 2..6 images keeps the error this small. */
export const PROB_TOL = 1e-3;
/** WebGPU keeps weights in f16 (activations f32): scores ~20 moved by 7.6e-3 on SwiftShader;
 * the margin covers other adapters' reduction orders. */
export const GPU_SCORE_TOL = 0.05;
export const GPU_PROB_TOL = 5e-3;

/** Model load and first scoring: wasm compile + a 12 MB model, on a slow shared CPU. */
export const LOAD_TIMEOUT_MS = 180_000;

function binary() {
  if (process.env.SCISCORE_BIN) return process.env.SCISCORE_BIN;
  for (const p of ['target/debug/sciscore', 'target/release/sciscore']) if (existsSync(join(ROOT, p))) return join(ROOT, p);
  throw new Error('no sciscore binary: run cargo build (scripts/test does)');
}

/** Starts `sciscore serve --port 0` and resolves to {url, stop}. */
export function startServer() {
  const child = spawn(binary(), ['serve', '--port', '0', '--root', 'www', '--demo', DEMO], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  return new Promise((res, rej) => {
    let out = '';
    const timer = setTimeout(() => rej(new Error(`sciscore serve did not start: ${out}${err}`)), 20_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /on (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) {
        clearTimeout(timer);
        res({ url: m[1], stop: () => child.kill() });
      }
    });
    child.on('exit', (code) => { clearTimeout(timer); rej(new Error(`sciscore serve exited (${code}): ${err}`)); });
  });
}

export function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS, headless: true });
}

/**
 * A fresh page on `base`. Every request is recorded; any that would leave the local server is
 * blocked and listed in `outside` (the page must never send anything elsewhere).
 */
export async function openPage(browser, base, contextOptions = {}) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 1000 }, ...contextOptions });
  const origin = new URL(base).origin;
  const requests = [];
  const outside = [];
  const local = (u) => u.startsWith(`${origin}/`) || u.startsWith('blob:') || u.startsWith('data:');
  await context.route('**/*', (route) => {
    const u = route.request().url();
    if (local(u)) return route.continue();
    outside.push(u);
    return route.abort();
  });
  context.on('request', (r) => {
    requests.push(r.url());
    if (!local(r.url())) outside.push(r.url());
  });
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  page.on('worker', (w) => w.on('console', (m) => logs.push(`worker ${m.type()}: ${m.text()}`)));
  return { context, page, requests, outside, logs };
}

/** Waits until #status says `ready` (after `since`, a status text to move away from); fails on `error`. */
export async function waitReady(page, { timeout = LOAD_TIMEOUT_MS, allowError = false, since = null } = {}) {
  await page.waitForFunction((since) => {
    const s = document.querySelector('#status');
    return /\bready\b|\berror\b/.test(s.textContent) && !s.classList.contains('busy') && s.textContent !== since;
  }, since, { timeout });
  const status = await page.textContent('#status');
  if (!allowError && /\berror\b/.test(status)) throw new Error(`page reports: ${status}`);
  return status;
}

/** The Cache Storage bucket the page keeps downloaded models in, as its own module names it (www/storage.js). */
export function cacheName(page) {
  return page.evaluate(async () => (await import(new URL('storage.js', location.href).href)).CACHE_NAME);
}

/** Waits for `n` results that are all scored or failed, and returns their attributes. */
export async function results(page, n, timeout = LOAD_TIMEOUT_MS) {
  await page.waitForFunction((n) => {
    const r = document.querySelectorAll('[data-testid="result"]');
    return r.length === n && [...r].every((e) => e.hasAttribute('data-score') || e.hasAttribute('data-error'))
      && !document.querySelector('#status').classList.contains('busy');
  }, n, { timeout });
  return page.$$eval('[data-testid="result"]', (els) => els.map((e) => ({
    name: e.dataset.name,
    score: e.hasAttribute('data-score') ? Number(e.dataset.score) : null,
    prob: e.hasAttribute('data-prob') ? Number(e.dataset.prob) : null,
    error: e.dataset.error ?? null,
    visibleError: e.querySelector('.error')?.offsetParent ? e.querySelector('.error').textContent : null,
  })));
}

/** Softmax of `xs` (the golden probs are over all 13 images; the tests score subsets). */
export function softmax(xs) {
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/** The golden scores of `prompt` (an index) for image files `names`. */
export function goldenScores(prompt, names) {
  return names.map((n) => {
    const i = GOLDEN.images.indexOf(n);
    if (i < 0) throw new Error(`no golden for ${n}`);
    return GOLDEN.scores[prompt][i];
  });
}

/**
 * Starts a `sciscore serve` and a browser before the file's tests and stops them after; the
 * returned object holds them as `server` and `browser` once started.
 */
export function serveAndLaunch() {
  const env = {};
  before(async () => {
    env.server = await startServer();
    env.browser = await launch();
  });
  after(async () => {
    await env.browser?.close();
    env.server?.stop();
  });
  return env;
}

/**
 * Runs `body` on a fresh page (openPage's object, its browser context made with
 * `contextOptions`); prints the page's console on failure (always
 * with SCISCORE_BROWSER_LOGS) and closes the page's context either way.
 */
export async function withPage(browser, base, body, contextOptions = {}) {
  const p = await openPage(browser, base, contextOptions);
  try {
    return await body(p);
  } catch (e) {
    console.error(p.logs.join('\n'));
    throw e;
  } finally {
    if (process.env.SCISCORE_BROWSER_LOGS) console.log(p.logs.join('\n'));
    await p.context.close();
  }
}

// Side by side in one Chromium session: a CLIP ViT-H/14 vision layer on ONNX Runtime Web's wasm
// backend (SIMD, on 1 thread and on every core: what transformers.js runs without WebGPU) and on
// sciscore's CPU path (threads, relaxed SIMD on one thread, SIMD128) through the page's worker; with a third argument `webgpu`, ONNX
// Runtime Web's WebGPU backend against sciscore's WebGPU path on the same adapter (SwiftShader
// here). ONNX Runtime is timed before and after sciscore, so a slow spell of the machine shows. Not part of the tests; needs the wasm build (scripts/serve
// --build-only), a sciscore binary, and, outside the repo:
//   npm install --no-save --prefix /tmp/ortb onnxruntime-web@1.30.0
//   pip install onnx numpy && python3 scripts/make_ort_layer.py /tmp/ortb/layer1.onnx 1
//   node tests/browser/bench_ort.mjs /tmp/ortb/node_modules/onnxruntime-web/dist /tmp/ortb/layer1.onnx [webgpu]

import { readFileSync } from 'node:fs';
import os from 'node:os';
import { createServer } from 'node:http';
import { basename, join } from 'node:path';
import { DEMO, FIXTURES, launch, startServer } from './harness.mjs';

const [dist, modelPath, mode = 'wasm'] = process.argv.slice(2);
if (!dist || !modelPath) throw new Error('usage: node tests/browser/bench_ort.mjs ORT_DIST_DIR LAYER.onnx [webgpu]');
const gpu = mode === 'webgpu';
// A layer takes about 0.5 s on the CPU, but tens of seconds on WebGPU over SwiftShader.
const RUNS = gpu ? 2 : 5;
// One ViT-H/14 layer at 257 tokens: 2*T*D*(4D + 2F) + 4*T*T*D FLOPs (matrix products only).
const FLOP = 2 * 257 * 1280 * (4 * 1280 + 2 * 5120) + 4 * 257 * 257 * 1280;

const server = await startServer();
const browser = await launch();
try {
  const context = await browser.newContext();
  const origin = new URL(server.url).origin;
  // ONNX Runtime and the model from a second local server (a 79 MB route.fulfill body breaks
  // playwright's connection); nothing leaves 127.0.0.1.
  const ortServer = createServer((req, res) => {
    const name = new URL(req.url, 'http://x').pathname.slice(1);
    const type = name.endsWith('.wasm') ? 'application/wasm' : name.endsWith('.mjs') ? 'text/javascript' : name.endsWith('.html') ? 'text/html' : 'application/octet-stream';
    try {
      const body = name === 'bench.html' ? '<!doctype html><title>ort</title>' : readFileSync(name === 'layer.onnx' ? modelPath : join(dist, basename(name)));
      // Cross-origin isolated, as sciscore serve's page is: SharedArrayBuffer, hence ORT's threads.
      res.writeHead(200, { 'content-type': type, 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((res) => ortServer.listen(0, '127.0.0.1', res));
  const ortOrigin = `http://127.0.0.1:${ortServer.address().port}`;
  await context.route('**/*', (route) => {
    const u = route.request().url();
    return u.startsWith(`${origin}/`) || u.startsWith(`${ortOrigin}/`) || u.startsWith('blob:') ? route.continue() : route.abort();
  });
  const page = await context.newPage();
  page.on('console', (m) => process.env.ORT_DEBUG && console.log('console:', m.text()));
  page.on('crash', () => console.log('page crashed'));

  const ort = async (threads) => {
    await page.goto(`${ortOrigin}/bench.html`);
    return page.evaluate(async ({ runs, gpu, threads }) => {
      const ort = await import(gpu ? '/ort.webgpu.min.mjs' : '/ort.wasm.min.mjs');
      ort.env.wasm.numThreads = threads;
      ort.env.wasm.wasmPaths = '/';
      const session = await ort.InferenceSession.create('/layer.onnx', { executionProviders: [gpu ? 'webgpu' : 'wasm'], graphOptimizationLevel: 'all' });
      const x = new Float32Array(257 * 1280).map((_, i) => Math.sin(i) * 0.5);
      const feeds = { x: new ort.Tensor('float32', x, [257, 1280]) };
      const times = [];
      for (let r = 0; r <= runs; r++) {
        const t0 = performance.now();
        await session.run(feeds);
        if (r > 0) times.push(performance.now() - t0);
      }
      await session.release();
      return { version: ort.env.versions?.web || '', times };
    }, { runs: RUNS, gpu, threads });
  };

  const ours = async (workerUrl) => {
    await page.goto(server.url);
    const file = (p) => [...readFileSync(p)];
    // The first image warms up (text tower, tier-up); the median of the other three counts.
    const images = ['rgb_gradient.png', 'palette_p.png', 'lossless.webp', 'frame.gif'].map((n) => ({ name: n, bytes: file(join(FIXTURES, 'images', n)) }));
    const rows = await page.evaluate(async ({ workerUrl, backend, images, tokenizer }) => {
      const w = new Worker(workerUrl, { type: 'module' });
      const r = await new Promise((res) => {
        w.onmessage = (e) => { if (e.data.type !== 'progress') res(e.data); };
        w.postMessage({ id: 1, type: 'bench', geometry: 'clip-h', layers: [1, 5], backend, tokenizer: new Uint8Array(tokenizer),
          images: images.map((im) => ({ name: im.name, bytes: new Uint8Array(im.bytes).buffer })) });
      });
      w.terminate();
      if (r.type !== 'done') throw new Error(r.message);
      return r.value;
    }, { workerUrl, backend: gpu ? 'webgpu' : 'cpu', images, tokenizer: file(join(DEMO, 'tokenizer.json')) });
    return { device: rows[0].device, mode: rows[0].cpu_mode, ms: (rows[1].image_ms - rows[0].image_ms) / 4 };
  };

  const report = (what, ms) => console.log(`${what}: ${ms.toFixed(0)} ms per vision layer, ${(FLOP / ms / 1e6).toFixed(1)} GFLOP/s`);
  const cores = Math.min(os.availableParallelism(), 8);
  // ONNX Runtime Web on 1 thread and on every core (up to 8), sciscore's three CPU builds.
  const ortRun = async (when) => {
    for (const threads of gpu ? [1] : [...new Set([1, 2, cores])]) {
      const r = await ort(threads);
      const sorted = [...r.times].sort((a, b) => a - b);
      const how = gpu ? 'webgpu' : `wasm, ${threads} thread${threads > 1 ? 's' : ''}`;
      report(`onnxruntime-web ${r.version} ${how}, f32 weights (${when}; best of ${RUNS}, median ${sorted[RUNS >> 1].toFixed(0)} ms)`, sorted[0]);
    }
  };
  await ortRun('before');
  // The wasm builds: threads (what the worker picks on this isolated page), relaxed SIMD on one
  // thread, plain SIMD128 on one thread.
  for (const workerUrl of gpu ? ['worker.js'] : ['worker.js', 'worker.js?threads=1', 'worker.js?wasm=simd128']) {
    const o = await ours(workerUrl);
    report(`sciscore ${o.device}, ${o.mode || ''}, f16 weights (layers 5 - 1, median of 3 images)`, o.ms);
  }
  await ortRun('after');
} finally {
  await browser.close();
  server.stop();
  process.exit(0); // the ONNX server's keep-alive sockets
}

// Times the page's engine in Chromium on random models of CLIP ViT-H/14 geometry (SciScore's),
// nothing downloaded: ms per image at two depths, hence ms per vision layer. On the CPU, the
// wasm builds side by side: threads (what the worker picks on this cross-origin isolated page),
// relaxed SIMD on one thread (?threads=1), and SIMD128 on one thread (?wasm=simd128).
//   node tests/browser/bench.mjs [cpu|webgpu] [layers-a layers-b] [threads|relaxed|simd128]
// (default: cpu 1 3, every CPU build; naming one times only that build).
// Needs the wasm build (scripts/serve --build-only) and a sciscore binary.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO, FIXTURES, launch, openPage, startServer } from './harness.mjs';

const backend = process.argv[2] || 'cpu';
const [la, lb] = [Number(process.argv[3] || 1), Number(process.argv[4] || 3)];
const file = (p) => [...readFileSync(p)];
const images = ['rgb_gradient.png', 'palette_p.png', 'lossless.webp', 'frame.gif'].map((n) => ({ name: n, bytes: file(join(FIXTURES, 'images', n)) }));
const tokenizer = file(join(DEMO, 'tokenizer.json'));

const server = await startServer();
const browser = await launch();
try {
  const { page, outside } = await openPage(browser, server.url);
  await page.goto(server.url);
  const modes = { threads: 'worker.js', relaxed: 'worker.js?threads=1', simd128: 'worker.js?wasm=simd128' };
  const only = modes[process.argv[5]];
  const builds = backend === 'cpu' ? (only ? [only] : Object.values(modes)) : ['worker.js'];
  for (const workerUrl of builds) {
    const rows = await page.evaluate(async ({ workerUrl, backend, layers, images, tokenizer }) => {
      const w = new Worker(workerUrl, { type: 'module' });
      const r = await new Promise((res) => {
        w.onmessage = (e) => { if (e.data.type !== 'progress') res(e.data); };
        w.postMessage({ id: 1, type: 'bench', geometry: 'clip-h', layers, backend, tokenizer: new Uint8Array(tokenizer),
          images: images.map((im) => ({ name: im.name, bytes: new Uint8Array(im.bytes).buffer })) });
      });
      w.terminate();
      if (r.type !== 'done') throw new Error(r.message);
      return r.value;
    }, { workerUrl, backend, layers: [la, lb], images, tokenizer });
    for (const r of rows) {
      console.log(`clip-h, ${r.layers} layers/tower on ${r.device}: load ${r.load_ms.toFixed(0)} ms, one image ${r.image_ms.toFixed(0)} ms, wasm memory ${(r.wasm_memory_bytes / 1e6).toFixed(0)} MB`);
      console.log(`  region maps: patch map ${r.patch_map_ms.toFixed(0)} ms (the image pass + the head over every patch), occlusion ${r.occlusion_images_per_s.toFixed(2)} images/s`);
    }
    if (backend === 'cpu') console.log(`CPU mode: ${rows[0].cpu_mode}`);
    const perLayer = (rows[1].image_ms - rows[0].image_ms) / (lb - la);
    // One ViT-H/14 layer at 257 tokens: 2*T*D*(4D + 2F) + 4*T*T*D FLOPs (matrix products only).
    const flop = 2 * 257 * 1280 * (4 * 1280 + 2 * 5120) + 4 * 257 * 257 * 1280;
    console.log(`vision layer (${rows[0].device}): ${perLayer.toFixed(0)} ms, ${(flop / perLayer / 1e6).toFixed(1)} GFLOP/s`);
  }
  if (outside.length) throw new Error(`requests left the local server: ${outside}`);
} finally {
  await browser.close();
  server.stop();
}

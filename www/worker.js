// The engine's thread. Loads a wasm build of sciscore (made by scripts/serve) and runs the model
// here, so the page never freezes. WebGPU is used from this worker when a hardware adapter exists
// (or when ?backend=webgpu forces it); otherwise the wasm CPU path (SIMD128). Two builds: www/pkg/
// (SIMD128, every browser with WebAssembly SIMD), www/pkg-relaxed/ (the same with a fused
// multiply-add CPU kernel, faster; its module only compiles where relaxed SIMD exists) and
// www/pkg-threads/ (the relaxed one on every core: rayon over a pool of workers sharing the wasm
// memory, which needs SharedArrayBuffer, so a cross-origin isolated page). startWasm() picks.
//
// Protocol: the page posts {id, type, ...}; the worker answers {id, type: 'progress', progress},
// then {id, type: 'done', value} or {id, type: 'error' | 'fatal', message}. 'fatal' means the
// wasm instance died (a Rust panic or a failed allocation is a trap on wasm32, and a trapped
// instance is unusable): the worker closes and the page starts a fresh one. An 'error' with
// `gpu: true` means the GPU failed under the model (device lost): the model is dropped, so the
// page loads it again. Requests run one at a time, in order.

import { CACHE_NAME, OLD_CACHE_NAMES } from './storage.js';

/** The loaded build's module (its class SciScore and free functions), once started. */
let wasm = null;
/** The instance's linear memory (to report its size when it runs out). */
let memory = null;
/** How the loaded build runs the CPU path (threads, kernel), for the backend note. */
let cpuMode = '';

/**
 * A module of one function that returns f32x4.relaxed_madd of three zero vectors: valid only
 * where the browser has WebAssembly relaxed SIMD.
 */
function hasRelaxedSimd() {
  const zero = [0xfd, 0x0c, ...new Array(16).fill(0)]; // v128.const 0
  const bytes = new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: [] -> [v128]
    0x03, 0x02, 0x01, 0x00, // one function of type 0
    0x0a, 0x3d, 0x01, 0x3b, 0x00, ...zero, ...zero, ...zero, 0xfd, 0x85, 0x02, 0x0b, // code
  ]);
  try {
    return WebAssembly.validate(bytes);
  } catch {
    return false;
  }
}

/** At most this many threads: the pool's workers each cost a stack and a wasm instance. */
const MAX_THREADS = 8;

/**
 * Starts the fastest build this browser runs: www/pkg-threads/ (relaxed SIMD on every core) where
 * the page is cross-origin isolated, else www/pkg-relaxed/ where relaxed SIMD exists, else (or
 * when one is missing) www/pkg/. The worker URL's ?wasm=simd128 keeps to www/pkg/, ?threads=1 to
 * one thread. Sets `cpuMode`, the line the backend note shows for the CPU path.
 */
async function startWasm() {
  const params = new URL(self.location.href).searchParams;
  const forced = params.get('wasm') === 'simd128';
  const relaxed = !forced && hasRelaxedSimd();
  const cores = Math.max(1, Math.min(self.navigator.hardwareConcurrency || 1, MAX_THREADS));
  let single = null; // why the CPU path runs on one thread
  if (params.get('threads') === '1') single = 'one thread forced with ?threads=1';
  else if (!relaxed) single = forced ? 'SIMD128 forced with ?wasm=simd128' : 'no relaxed SIMD in this browser';
  else if (!self.crossOriginIsolated || typeof SharedArrayBuffer !== 'function') {
    single = 'threads need a cross-origin isolated page (COOP/COEP headers)';
  } else if (cores < 2) single = 'one core';
  const dirs = [...(single ? [] : ['./pkg-threads/']), ...(relaxed ? ['./pkg-relaxed/'] : []), './pkg/'];
  let last = null;
  for (const dir of dirs) {
    try {
      const mod = await import(`${dir}sciscore.js`);
      memory = (await mod.default()).memory;
      if (dir === './pkg-threads/') await mod.initThreadPool(cores);
      wasm = mod;
      const kernel = dir === './pkg/' ? 'SIMD128' : 'relaxed SIMD';
      cpuMode = dir === './pkg-threads/'
        ? `CPU on ${cores} threads (wasm threads, ${kernel})`
        : `CPU on one thread (${kernel}; ${single || `the threads build failed: ${message(last)}`})`;
      return;
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

for (const old of OLD_CACHE_NAMES) self.caches?.delete(old).catch(() => {});

let wasmReady = null;
let model = null;
let queue = Promise.resolve();
/** The id of the request running now: the one a trap in the engine answers. */
let current = null;
let crashed = false;

const message = (e) => (e && e.message) || String(e);
const fmtBytes = (n) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`);

/** Tokens of occlusion runs the page asked to stop (www/explain.js). */
const cancelled = new Set();

self.onmessage = (ev) => {
  const msg = ev.data;
  // A cancel acts at once: the run it stops is the request in progress.
  if (msg.type === 'cancel') {
    cancelled.add(msg.token);
    return;
  }
  queue = queue.then(() => handle(msg));
};

/**
 * What killed the instance: the panic message the Rust hook left, or the allocation that failed
 * (a trap with neither is reported as it came).
 */
function crashMessage(e) {
  const panic = self.sciscorePanic;
  const failed = wasm?.takeAllocFailure?.() ?? 0;
  const used = memory ? memory.buffer.byteLength : 0;
  if (panic) return `the engine crashed: ${panic}`;
  if (failed > 0) {
    return `the engine ran out of memory: allocating ${fmtBytes(failed)} failed with ${fmtBytes(used)} of wasm memory in use`;
  }
  return `the engine crashed (${message(e)}) with ${fmtBytes(used)} of wasm memory in use`;
}

/** The instance trapped: answer the request in flight as fatal and stop this worker. */
function crash(e) {
  if (crashed) return;
  crashed = true;
  self.postMessage({ id: current, type: 'fatal', message: crashMessage(e) });
  self.close();
}

// A trap inside an async engine call happens in a promise job of wasm-bindgen-futures, not in
// the awaited call: it surfaces here, and the call's promise never settles.
self.addEventListener('unhandledrejection', (ev) => {
  if (ev.reason instanceof WebAssembly.RuntimeError) {
    ev.preventDefault();
    crash(ev.reason);
  }
});
self.addEventListener('error', (ev) => {
  if (ev.error instanceof WebAssembly.RuntimeError) {
    ev.preventDefault();
    crash(ev.error);
  }
});

async function handle(msg) {
  const { id } = msg;
  current = id;
  const progress = (p) => self.postMessage({ id, type: 'progress', progress: p });
  try {
    const op = ops[msg.type];
    if (!op) throw new Error(`unknown request ${msg.type}`);
    if (msg.type !== 'clearCache') {
      wasmReady ??= startWasm().catch((e) => {
        wasmReady = null;
        throw new Error(`could not start the wasm engine (${message(e)}); is www/pkg/ built? run scripts/serve`);
      });
      await wasmReady;
      wasm.takeAllocFailure(); // an allocation refused and handled earlier is not this request's
    }
    const value = await op(msg, progress);
    self.postMessage({ id, type: 'done', value });
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) {
      crash(e);
      return;
    }
    // The GPU failed under the model (a lost device): its buffers are gone, the page reloads it.
    if (e?.gpu && model && msg.type !== 'load') {
      model.free();
      model = null;
    }
    self.postMessage({ id, type: 'error', message: message(e), gpu: !!e?.gpu });
  }
}

/**
 * Which backend to try: WebGPU on a hardware adapter; the CPU when WebGPU or an adapter is
 * missing, when forced with ?backend=cpu, or when the only adapter is a software fallback
 * (SwiftShader: the wasm CPU path is far faster there) unless ?backend=webgpu forces it.
 */
async function chooseBackend(pref, why) {
  if (pref === 'cpu') return { backend: 'cpu', note: why || 'CPU forced with ?backend=cpu' };
  if (!self.navigator.gpu) return { backend: 'cpu', note: 'this browser has no WebGPU; using the CPU' };
  let adapter = null;
  try {
    adapter = await self.navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return { backend: 'cpu', note: `WebGPU adapter request failed (${message(e)}); using the CPU` };
  }
  if (!adapter) return { backend: 'cpu', note: 'no WebGPU adapter; using the CPU' };
  const info = adapter.info || {};
  const software = info.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false;
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown adapter';
  if (software && pref !== 'webgpu') {
    return { backend: 'cpu', note: `the only WebGPU adapter is a software one (${name}), slower than the CPU path; ?backend=webgpu forces it` };
  }
  return { backend: 'webgpu', note: software ? `software WebGPU adapter (${name}) forced with ?backend=webgpu` : '' };
}

function loadWith(source, backend, progress) {
  if (source.kind === 'files') return wasm.SciScore.loadFiles(source.files, backend, progress);
  return wasm.SciScore.loadUrl(source.url, backend, source.cache ? CACHE_NAME : undefined, progress);
}

const ops = {
  async load(msg, progress) {
    const t0 = performance.now();
    const choice = await chooseBackend(msg.backend, msg.why);
    const notes = choice.note ? [choice.note] : [];
    let loaded = null;
    if (choice.backend === 'webgpu') {
      try {
        loaded = await loadWith(msg.source, 'webgpu', progress);
      } catch (e) {
        if (e instanceof WebAssembly.RuntimeError) throw e;
        notes.push(`WebGPU could not run the model (${message(e)}); using the CPU`);
      }
    }
    if (!loaded) loaded = await loadWith(msg.source, 'cpu', progress);
    model?.free();
    model = loaded;
    const info = model.info();
    if (info.backend === 'cpu') notes.push(cpuMode);
    if (info.cache_repaired) {
      notes.push(`${info.cache_repaired} damaged piece(s) of the model kept in this browser were deleted and downloaded again`);
    }
    return { info, notes, ms: performance.now() - t0 };
  },

  probe(msg) {
    return wasm.SciScore.probeUrl(msg.url, msg.cache ? CACHE_NAME : undefined);
  },

  /**
   * Scores `images` against `prompts` (or the one `prompt`), within each index group of `groups`:
   * `results` for the first prompt, `matrix` {scores, probs_over_images, probs_over_prompts}
   * (rows prompts, columns images), and `encoded`, the prompts and images the towers have run
   * over since the load (a new prompt over cached images adds one text and no image).
   */
  async score(msg) {
    if (!model) throw new Error('no model loaded: load one first');
    const images = msg.images.map((im) => ({ name: im.name, bytes: new Uint8Array(im.bytes) }));
    const prompts = msg.prompts ?? [msg.prompt];
    const groups = msg.groups ?? [images.map((_, i) => i)];
    const results = new Array(images.length);
    const keys = ['scores', 'probs_over_images', 'probs_over_prompts'];
    const matrix = Object.fromEntries(keys.map((k) => [k, prompts.map(() => new Array(images.length))]));
    const t0 = performance.now();
    for (const g of groups) {
      // Embeddings are cached by content inside the model, so pairs and re-scores are cheap.
      const r = await model.scoreMatrix(prompts, g.map((i) => images[i]));
      g.forEach((i, k) => {
        results[i] = r.results[k];
        for (const key of keys) r.matrix[key].forEach((row, p) => { matrix[key][p][i] = row[k]; });
      });
    }
    return { results, matrix, encoded: model.encoded(), ms: performance.now() - t0 };
  },

  /**
   * Times the vision tower on random models of a named geometry with each of `layers` layers per
   * tower (nothing downloaded): ms per image for each, from which ms per layer follows.
   */
  async bench(msg) {
    const images = msg.images.map((im) => ({ name: im.name, bytes: new Uint8Array(im.bytes) }));
    const out = [];
    for (const layers of msg.layers) {
      const t0 = performance.now();
      const m = await wasm.SciScore.loadRandom(msg.geometry, layers, new Uint8Array(msg.tokenizer), msg.backend);
      const loadMs = performance.now() - t0;
      try {
        await m.score('warm-up', [images[0]]); // text tower, first image, shader compilation
        const times = [];
        for (const im of images.slice(1)) {
          const t1 = performance.now();
          await m.score('warm-up', [im]); // text embedding cached: one vision pass
          times.push(performance.now() - t1);
        }
        times.sort((a, b) => a - b);
        // Region maps: a patch map (the image pass plus the image head over every patch), then
        // one step of a 7 x 7 occlusion map (occlusionChunk() occluded images).
        const t2 = performance.now();
        const [maps] = await m.patchMaps('warm-up', [images[1]]);
        const patchMs = performance.now() - t2;
        const chunk = Math.max(1, m.occlusionChunk());
        const t3 = performance.now();
        await m.occlusionDrops('warm-up', images[1], 7, 0, chunk, maps.score);
        const occlusionImagesPerS = chunk / ((performance.now() - t3) / 1e3);
        const info = m.info();
        out.push({ layers, load_ms: loadMs, image_ms: times[Math.floor(times.length / 2)], patch_map_ms: patchMs,
          occlusion_images_per_s: occlusionImagesPerS, device: info.device, wasm_memory_bytes: info.wasm_memory_bytes,
          cpu_mode: cpuMode });
      } finally {
        m.free();
      }
    }
    return out;
  },

  /** Science-T2I accuracy over parquet shards (`files: [{name, bytes: ArrayBuffer}]`). */
  async evalParquet(msg, progress) {
    if (!model) throw new Error('no model loaded: load one first');
    const files = msg.files.map((f) => ({ name: f.name, bytes: new Uint8Array(f.bytes) }));
    const t0 = performance.now();
    const report = await model.evalParquet(files, progress);
    return { report, ms: performance.now() - t0 };
  },

  /** Score and patch map of each image (src/explain.rs): `[{name, score, patch_map} | {name, error}]`. */
  async patchMaps(msg) {
    if (!model) throw new Error('no model loaded: load one first');
    const images = msg.images.map((im) => ({ name: im.name, bytes: new Uint8Array(im.bytes) }));
    const t0 = performance.now();
    const results = await model.patchMaps(msg.prompt, images);
    return { results, ms: performance.now() - t0 };
  },

  /**
   * The occlusion map of one image, a few cells at a time (one image per step on the CPU):
   * progress after each step, and a cancel with this run's token stops it between steps.
   */
  async occlusion(msg, progress) {
    if (!model) throw new Error('no model loaded: load one first');
    const image = { name: msg.image.name, bytes: new Uint8Array(msg.image.bytes) };
    const total = msg.grid * msg.grid;
    const chunk = Math.max(1, model.occlusionChunk());
    const drops = [];
    try {
      while (drops.length < total) {
        // Let a cancel in: the CPU path computes a step without returning to the event loop.
        await new Promise((r) => { setTimeout(r, 0); });
        if (cancelled.has(msg.token)) throw new Error('occlusion cancelled');
        const end = Math.min(total, drops.length + chunk);
        drops.push(...await model.occlusionDrops(msg.prompt, image, msg.grid, drops.length, end, msg.original));
        progress({ done: drops.length, total });
      }
    } finally {
      cancelled.delete(msg.token);
    }
    return { drops };
  },

  clearCache() {
    return self.caches.delete(CACHE_NAME);
  },
};

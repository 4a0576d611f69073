// The page: model choice, images, prompt, results. All computation happens in worker.js; this
// file only moves files to it and renders what comes back. Names and prompts are rendered with
// textContent, never as HTML. Element ids are a contract (docs/contracts.md, "Page").

import { initExplain } from './explain.js';
import { CACHE_NAME } from './storage.js';

const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
/** 'auto' | 'cpu' | 'webgpu' (from ?backend=). */
const BACKEND_PREF = ['cpu', 'webgpu'].includes(params.get('backend')) ? params.get('backend') : 'auto';
/** Ask before downloading more than this (bytes) that is not already in Cache Storage. */
const CONFIRM_BYTES = 200e6;
/** Files of a Hugging Face CLIPModel folder the loader reads. */
const MODEL_FILE = /^(config\.json|preprocessor_config\.json|tokenizer\.json|vocab\.json|merges\.txt|model\.safetensors\.index\.json|.*\.safetensors)$/;

const hf = (repo) => `https://huggingface.co/${repo}/resolve/main`;
/**
 * `url`: the base URL of any model folder in the Hugging Face layout, f16 copies made with
 * `sciscore convert --dtype f16` included (half the download), hosted anywhere that allows
 * cross-origin Range requests. Either way the cache keeps the matrices in f16.
 */
const PRESETS = [
  { id: 'sciscore', label: 'Jialuo21/SciScore (Science-T2I reward model, 3.9 GB)', url: hf('Jialuo21/SciScore') },
  { id: 'pickscore', label: 'yuvalkirstain/PickScore_v1 (3.9 GB)', url: hf('yuvalkirstain/PickScore_v1') },
  { id: 'clip-h', label: 'laion/CLIP-ViT-H-14-laion2B-s32B-b79K (3.9 GB)', url: hf('laion/CLIP-ViT-H-14-laion2B-s32B-b79K') },
  { id: 'demo', label: 'Demo model (bundled, 12 MB, random weights: scores are meaningless)', url: new URL('models/demo/', location.href).href },
];

// ------------------------------------------------------------------------------------------------
// The engine (worker) connection

class Engine {
  constructor() {
    this.nextId = 1;
    this.pending = new Map();
    this.worker = null;
    /** Called when a crashed worker was replaced: whatever it held is gone. */
    this.onRestart = null;
  }

  ensure() {
    if (this.worker) return;
    const url = new URL('worker.js', import.meta.url);
    // ?wasm=simd128 keeps the worker on the plain SIMD128 build, ?threads=1 on one thread
    // (worker.js).
    if (params.get('wasm') === 'simd128') url.searchParams.set('wasm', 'simd128');
    if (params.get('threads') === '1') url.searchParams.set('threads', '1');
    this.worker = new Worker(url, { type: 'module' });
    this.worker.onmessage = (ev) => this.onMessage(ev.data);
    this.worker.onerror = (ev) => {
      ev.preventDefault?.();
      this.fail(`the engine did not start (${ev.message || 'worker script error'}); is www/pkg/ built? run scripts/serve`);
    };
  }

  /** A message the worker handles at once, outside the request queue (a cancel). */
  post(msg) {
    this.ensure();
    this.worker.postMessage(msg);
  }

  call(type, payload = {}, onProgress = null) {
    this.ensure();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, type, ...payload });
    });
  }

  onMessage(m) {
    const p = this.pending.get(m.id);
    // A crash after its request was answered still ends the worker.
    if (!p && m.type === 'fatal') this.fail(m.message, null, true);
    if (!p) return;
    if (m.type === 'progress') {
      p.onProgress?.(m.progress);
      return;
    }
    this.pending.delete(m.id);
    if (m.type === 'done') p.resolve(m.value);
    else if (m.type === 'fatal') this.fail(m.message, p, true);
    else p.reject(Object.assign(new Error(m.message), { gpu: !!m.gpu }));
  }

  /**
   * The worker is gone (its wasm instance trapped, or it did not start): reject everything.
   * After a crash a fresh worker starts at once; after a failed start, at the next call.
   */
  fail(message, first = null, restart = false) {
    const all = first ? [first, ...this.pending.values()] : [...this.pending.values()];
    this.pending.clear();
    this.worker?.terminate();
    this.worker = null;
    if (restart) {
      this.ensure();
      this.onRestart?.();
    }
    for (const p of all) {
      const e = new Error(restart ? `${message}; the engine was restarted` : message);
      e.fatal = true;
      p.reject(e);
    }
  }
}

const engine = new Engine();
engine.onRestart = () => {
  if (state.model) markStale(state.model, 'an engine crash');
};

// ------------------------------------------------------------------------------------------------
// State and small helpers

const state = {
  /** {name, bytes: ArrayBuffer, url: thumbnail blob URL} in input order. */
  images: [],
  /** Results of the last scoring, aligned with `scored` (a snapshot of images and prompt). */
  results: null,
  scored: null,
  /** {scores, probs_over_images, probs_over_prompts} of the last scoring (rows: scored.prompts). */
  matrix: null,
  /**
   * The loaded model: {label, info, source, stale}. `stale` says why the engine no longer holds
   * it (its worker crashed, or its GPU device was lost): the next Score loads it again.
   */
  model: null,
  /** GPU devices lost under a model this session: after two, reloads go to the CPU. */
  gpuLosses: 0,
  loadSeq: 0,
  scoreSeq: 0,
};

function setStatus(text, kind = '') {
  const s = $('#status');
  s.textContent = text;
  s.className = kind;
}

function showError(e) {
  setStatus(`error: ${e.message || e}`, 'error');
}

const fmtBytes = (n) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.round(n / 1e3)} kB`);
const fmtMs = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

let lastProgress = null;

function onProgress(p) {
  lastProgress = p;
  const bar = $('#progress');
  const text = $('#progress-text');
  if (p.phase === 'weights' && p.bytes_total > 0) {
    bar.value = p.bytes / p.bytes_total;
    text.textContent = `weights: ${p.tensors}/${p.tensors_total} tensors, ${fmtBytes(p.bytes)} of ${fmtBytes(p.bytes_total)}`
      + (p.tensors === p.tensors_total ? ' — preparing the engine…' : '');
  } else if (p.phase === 'shaders' && p.shaders_total > 0) {
    bar.value = p.shaders / p.shaders_total;
    text.textContent = `compiling GPU kernels: ${p.shaders}/${p.shaders_total} pipelines`;
  } else {
    bar.removeAttribute('value'); // indeterminate
    text.textContent = `reading ${p.file || p.phase}…`;
  }
}

// ------------------------------------------------------------------------------------------------
// Loading a model

/**
 * Loads a model into the engine; resolves to whether it did. `reload` (a reason) loads the model
 * that was loaded before again, without scoring afterwards: score() does that.
 */
async function load(source, label, { reload = null } = {}) {
  const seq = ++state.loadSeq;
  setStatus(`loading ${label}…`, 'busy');
  $('#progress').value = 0;
  $('#progress-text').textContent = '';
  lastProgress = null;
  $('#model-note').hidden = true;
  try {
    // A second GPU failure in one session: the device is not to be trusted, use the CPU.
    const toCpu = reload && state.gpuLosses >= 2 && BACKEND_PREF !== 'cpu';
    const backend = toCpu ? 'cpu' : BACKEND_PREF;
    const why = toCpu ? `the GPU failed ${state.gpuLosses} times; using the CPU` : undefined;
    const r = await engine.call('load', { source, backend, why }, onProgress);
    if (seq !== state.loadSeq) return false; // a newer load replaced this one
    if (reload) r.notes.push(`loaded again after: ${reload}`);
    state.model = { label, info: r.info, source, stale: null };
    state.results = null;
    state.scored = null;
    renderResults();
    $('#backend').textContent = r.info.backend;
    $('#backend-note').textContent = [
      `${r.info.device}; text ${r.info.text_layers}×${r.info.text_hidden}, vision ${r.info.vision_layers}×${r.info.vision_hidden}, ${r.info.image_size} px; wasm memory ${fmtBytes(r.info.wasm_memory_bytes)}`,
      ...r.notes,
    ].join(' · ');
    if (r.info.vision_hidden < 256) {
      const note = $('#model-note');
      note.textContent = 'Demo model: tiny and random. Its scores show that the pipeline works and mean nothing about science; load SciScore for real scores.';
      note.hidden = false;
    }
    $('#progress').value = 1;
    $('#progress-text').textContent = lastProgress?.tensors_total
      ? `loaded ${lastProgress.tensors_total} tensors, ${fmtBytes(lastProgress.bytes_total)}`
      : '';
    const st = $('#status');
    st.dataset.loadMs = String(Math.round(r.ms));
    setStatus(`ready — ${label} on ${r.info.backend} (loaded in ${fmtMs(r.ms)})`, 'ready');
    updateCacheUsage();
    if (!reload && state.images.length && $('#prompt').value.trim()) score();
    return true;
  } catch (e) {
    if (seq !== state.loadSeq) return false;
    // A failed load leaves the engine's model in place, unless the engine crashed (onRestart).
    const prev = state.model;
    if (!prev) {
      $('#backend').textContent = '—';
      showError(e);
    } else if (prev.stale) {
      showError(new Error(`${e.message}; press Score to load ${prev.label} again`));
    } else {
      showError(new Error(`${e.message} (the previous model, ${prev.label}, is still loaded)`));
    }
    return false;
  }
}

/** The engine lost `m` (crash, lost GPU device): the next Score loads it again. */
function markStale(m, why) {
  m.stale = why;
  $('#backend').textContent = '—';
}

/** After a failed scoring or Science-T2I eval: a crash or a lost GPU device cost the engine its model. */
function afterEngineFailure(e) {
  const m = state.model;
  if (m && e.gpu) {
    state.gpuLosses += 1;
    markStale(m, 'a GPU failure');
  }
  showError(m?.stale ? new Error(`${e.message}; press Score to load ${m.label} again`) : e);
}

/** Loads the model files among `files` (a folder's worth, maybe with extra files). */
function loadFiles(files, label) {
  // One file per name; from a nested folder, the shallowest copy wins.
  const byName = new Map();
  for (const f of files) {
    if (!MODEL_FILE.test(f.name)) continue;
    const depth = (f.webkitRelativePath || f.name).split('/').length;
    const seen = byName.get(f.name);
    if (!seen || depth < seen.depth) byName.set(f.name, { f, depth });
  }
  const chosen = [...byName.values()].map((v) => v.f);
  if (!byName.has('config.json')) {
    showError(new Error('no config.json among the chosen files: choose all files of a Hugging Face CLIP model folder'));
    return;
  }
  const folder = (files[0]?.webkitRelativePath || '').split('/')[0];
  load({ kind: 'files', files: chosen }, label || folder || `${chosen.length} local files`);
}

/** Loads from a base URL; asks first when that means downloading a lot. */
async function loadUrl(url) {
  let abs;
  try {
    abs = new URL(url.trim(), location.href);
    if (!['http:', 'https:'].includes(abs.protocol)) throw new Error('only http(s) URLs');
  } catch (e) {
    showError(new Error(`not a usable model URL: ${url} (${e.message})`));
    return;
  }
  const href = abs.href;
  const local = abs.origin === location.origin;
  const preset = PRESETS.find((p) => p.url.replace(/\/$/, '') === href.replace(/\/$/, ''));
  const label = preset?.id === 'demo' ? 'the demo model' : local ? abs.pathname : abs.pathname.split('/').slice(1, 3).join('/');
  const seq = ++state.loadSeq;
  setStatus(`checking ${label}…`, 'busy');
  let probe;
  try {
    probe = await engine.call('probe', { url: href, cache: !local });
  } catch (e) {
    if (seq === state.loadSeq) showError(e);
    return;
  }
  if (seq !== state.loadSeq) return;
  let cache = !local;
  const download = `Download ${fmtBytes(probe.total_bytes)} (${probe.files.length} files) from ${abs.host}? `;
  const free = cache && !probe.cached ? await freeStorage() : Infinity;
  if (seq !== state.loadSeq) return;
  if (probe.store_bytes > free) {
    // Not enough room to keep it: offer the download without the cache (the browser would
    // otherwise fail the writes midway, or evict other sites' data).
    const ok = await confirmDownload(`${download}Keeping this model for the next visit needs ${fmtBytes(probe.store_bytes)} `
      + `of browser storage, but only ${fmtBytes(Math.max(0, free))} is free: it can be loaded without keeping it `
      + '(downloaded again next time), or cancel and free some space ("Clear downloaded models", other sites\' data).', 'Load without keeping');
    if (!ok) {
      setStatus(`download cancelled: keeping the model needs ${fmtBytes(probe.store_bytes)} of storage, ${fmtBytes(Math.max(0, free))} is free`);
      return;
    }
    cache = false;
  } else if (cache && !probe.cached && probe.total_bytes > CONFIRM_BYTES) {
    const ok = await confirmDownload(`${download}The model is kept in this browser for the next visit `
      + `(${fmtBytes(probe.store_bytes)}, its matrices in f16; "Clear downloaded models" removes it). Your images are not sent anywhere.`);
    if (!ok) {
      setStatus('download cancelled: no model loaded');
      return;
    }
    navigator.storage?.persist?.().catch(() => {});
  }
  load({ kind: 'url', url: href, cache }, label);
}

/** Bytes this site may still store (quota - usage), or Infinity when the browser does not say. */
async function freeStorage() {
  try {
    const est = await navigator.storage?.estimate?.();
    return Number.isFinite(est?.quota) ? est.quota - (est.usage ?? 0) : Infinity;
  } catch {
    return Infinity;
  }
}

function confirmDownload(text, action = 'Download') {
  const box = $('#confirm');
  $('#confirm-text').textContent = text;
  $('#confirm-download').textContent = action;
  box.hidden = false;
  setStatus('waiting for your confirmation to download the model');
  return new Promise((resolve) => {
    const done = (ok) => {
      box.hidden = true;
      $('#confirm-download').onclick = null;
      $('#cancel-download').onclick = null;
      resolve(ok);
    };
    $('#confirm-download').onclick = () => done(true);
    $('#cancel-download').onclick = () => done(false);
    $('#confirm-download').focus();
  });
}

async function updateCacheUsage() {
  const out = $('#cache-usage');
  try {
    const keys = await (await caches.open(CACHE_NAME)).keys();
    const est = await navigator.storage?.estimate?.();
    out.textContent = keys.length ? `${keys.length} cached pieces; this site uses ${fmtBytes(est?.usage ?? 0)}` : 'nothing downloaded';
  } catch {
    out.textContent = '';
  }
}

/** Every file under dropped folders (DataTransferItem.webkitGetAsEntry). */
async function droppedFiles(dt) {
  const entries = [...dt.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...dt.files];
  const out = [];
  const walk = async (entry, path) => {
    if (entry.isFile) {
      const f = await new Promise((res, rej) => entry.file(res, rej));
      Object.defineProperty(f, 'webkitRelativePath', { value: path + f.name });
      out.push(f);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const e of batch) await walk(e, `${path}${entry.name}/`);
      }
    }
  };
  for (const e of entries) await walk(e, '');
  return out;
}

// ------------------------------------------------------------------------------------------------
// Images

async function addImages(files) {
  const added = [...files].filter((f) => f && f.size !== undefined);
  for (const f of added) {
    const bytes = await f.arrayBuffer();
    state.images.push({ name: f.name || `pasted-${state.images.length + 1}.png`, bytes, url: URL.createObjectURL(f) });
  }
  if (added.length) imagesChanged();
}

function removeImage(i) {
  URL.revokeObjectURL(state.images[i].url);
  state.images.splice(i, 1);
  imagesChanged();
}

function imagesChanged() {
  state.results = null;
  state.scored = null;
  renderThumbs();
  renderResults();
}

/** A thumbnail; a file the browser cannot show gets a blank tile, not a broken-image icon. */
function thumb(url) {
  const img = el('img', { src: url, alt: '' });
  img.onerror = () => img.classList.add('broken');
  return img;
}

function renderThumbs() {
  const ul = $('#thumbs');
  ul.replaceChildren(
    ...state.images.map((im, i) => {
      const rm = el('button', { type: 'button', class: 'remove', 'aria-label': `remove ${im.name}`, text: '×' });
      rm.onclick = () => removeImage(i);
      return el('li', {}, thumb(im.url), el('span', { class: 'name', text: `${i + 1}. ${im.name}` }), rm);
    }),
  );
}

// ------------------------------------------------------------------------------------------------
// Scoring

/** Index groups to score together: all images, or consecutive pairs in pairwise mode. */
function groups(n, pairwise) {
  if (!pairwise) return [[...Array(n).keys()]];
  const g = [];
  for (let i = 0; i < n; i += 2) g.push(i + 1 < n ? [i, i + 1] : [i]);
  return g;
}

async function score() {
  if (!state.model) {
    showError(new Error('no model loaded: load a model first'));
    return;
  }
  if (!state.images.length) {
    setStatus('ready — add images to score (file picker, drag and drop, or paste)', 'ready');
    return;
  }
  if (state.model.stale && !(await load(state.model.source, state.model.label, { reload: state.model.stale }))) return;
  const seq = ++state.scoreSeq;
  const prompt = $('#prompt').value;
  const prompts = promptsToScore();
  const pairwise = $('#pairwise').checked;
  const images = state.images.slice();
  setStatus(`scoring ${images.length} image${images.length > 1 ? 's' : ''}…`, 'busy');
  $('#score').disabled = true;
  try {
    const r = await engine.call('score', {
      prompts: prompts.map((p) => p.text),
      images: images.map((im) => ({ name: im.name, bytes: im.bytes })),
      groups: groups(images.length, pairwise),
    });
    if (seq !== state.scoreSeq) return; // superseded by a newer scoring
    state.results = r.results;
    state.matrix = r.matrix;
    state.scored = { prompt, prompts, pairwise, images, model: state.model.label, backend: state.model.info.backend };
    noteEncoded(r.encoded);
    renderResults();
    const failed = r.results.filter((x) => x.error).length;
    const st = $('#status');
    st.dataset.scoreMs = String(Math.round(r.ms));
    setStatus(
      `ready — scored ${images.length - failed} of ${images.length} images${prompts.length > 1 ? ` against ${prompts.length} prompts` : ''} ${r.ms < 1 ? 'at once (cached embeddings)' : `in ${fmtMs(r.ms)}`}`
        + (failed ? `; ${failed} could not be read (see below)` : ''),
      'ready',
    );
  } catch (e) {
    if (seq !== state.scoreSeq) return;
    afterEngineFailure(e);
  } finally {
    if (seq === state.scoreSeq) $('#score').disabled = false;
  }
}

/** Rank 1 = highest score, within each group. */
function ranks(results, gs) {
  const rank = new Array(results.length).fill(null);
  for (const g of gs) {
    const ok = g.filter((i) => !results[i].error).sort((a, b) => results[b].score - results[a].score);
    ok.forEach((i, k) => { rank[i] = k + 1; });
  }
  return rank;
}

function renderResults() {
  renderMatrix();
  const ol = $('#results');
  const r = state.results;
  $('#export-csv').disabled = !r;
  $('#export-json').disabled = !r;
  $('#results-hint').hidden = !!r;
  if (!r) {
    ol.replaceChildren();
    return;
  }
  const { images, pairwise } = state.scored;
  const gs = groups(images.length, pairwise);
  const rank = ranks(r, gs);
  const groupOf = new Map(gs.flatMap((g, k) => g.map((i) => [i, k])));
  const sorted = $('#sort').checked;
  const order = [...r.keys()].sort((a, b) => (r[b].score ?? -Infinity) - (r[a].score ?? -Infinity));
  ol.classList.toggle('pairwise', pairwise);
  ol.replaceChildren(
    ...r.map((res, i) => {
      const g = gs[groupOf.get(i)];
      const li = el('li', { 'data-testid': 'result', 'data-name': res.name, 'data-index': String(i) });
      // Input order in the DOM; "best first" only changes the visual order.
      if (sorted) li.style.order = String(pairwise ? i : order.indexOf(i));
      li.append(thumb(images[i].url));
      const body = el('div', { class: 'body' });
      body.append(el('div', { class: 'name', text: res.name }));
      if (res.error) {
        li.classList.add('failed');
        li.setAttribute('data-error', res.error);
        body.append(el('div', { class: 'error', role: 'alert', text: `error: ${res.error}` }));
      } else {
        li.setAttribute('data-score', String(res.score));
        li.setAttribute('data-prob', String(res.prob));
        li.setAttribute('data-rank', String(rank[i]));
        const ok = g.filter((j) => !r[j].error).length;
        if (rank[i] === 1 && ok > 1) li.classList.add('best');
        const label = pairwise
          ? (g.length === 1 ? 'no partner' : `pair ${groupOf.get(i) + 1}: ${rank[i] === 1 ? 'more likely right' : 'less likely right'}`)
          : `rank ${rank[i]} of ${ok}`;
        body.append(el('div', { class: 'rank', text: label }));
        const bar = el('div', { class: 'bar', role: 'img', 'aria-label': `probability ${(res.prob * 100).toFixed(1)}%` });
        const fill = el('span');
        fill.style.width = `${Math.max(0, Math.min(1, res.prob)) * 100}%`;
        bar.append(fill);
        body.append(bar, el('div', { class: 'nums', text: `${(res.prob * 100).toFixed(1)}% · score ${res.score.toFixed(3)}` }));
      }
      li.append(body);
      return li;
    }),
  );
}

function rows() {
  const { images, pairwise, prompt } = state.scored;
  const gs = groups(images.length, pairwise);
  const rank = ranks(state.results, gs);
  const groupOf = new Map(gs.flatMap((g, k) => g.map((i) => [i, k])));
  return state.results.map((r, i) => ({
    prompt,
    image: r.name,
    group: groupOf.get(i) + 1,
    score: r.score ?? null,
    prob: r.prob ?? null,
    rank: rank[i],
    error: r.error ?? null,
  }));
}

function download(name, type, text) {
  const a = el('a', { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

function exportCsv() {
  // RFC 4180 quoting; a leading = + - @ is neutralised so spreadsheets do not run it.
  const cell = (v) => {
    if (v === null || v === undefined) return '';
    let s = String(v);
    if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const cols = ['prompt', 'image', 'group', 'score', 'prob', 'rank', 'error'];
  const lines = [cols.join(','), ...rows().map((r) => cols.map((c) => cell(r[c])).join(','))];
  download('sciscore-results.csv', 'text/csv', `${lines.join('\r\n')}\r\n`);
}

function exportJson() {
  const s = state.scored;
  const out = { model: s.model, backend: s.backend, prompt: s.prompt, mode: s.pairwise ? 'pairwise' : 'all', results: rows() };
  if (s.prompts.length > 1) Object.assign(out, { prompts: s.prompts.map((p) => p.text), matrix: state.matrix });
  download('sciscore-results.json', 'application/json', `${JSON.stringify(out, null, 2)}\n`);
}

// ------------------------------------------------------------------------------------------------
// Several prompts: more prompt fields after #prompt, filled by hand or from a Science-T2I row

/** The Science-T2I columns the row helper fills, in order: #prompt first. */
const T2I_PROMPTS = ['implicit_prompt', 'explicit_prompt', 'superficial_prompt'];
/** A pasted row bigger than this is not a Science-T2I row (its prompts are a sentence each). */
const T2I_MAX_CHARS = 1 << 20;

/** Every prompt field, #prompt first. */
function promptFields() {
  return [$('#prompt'), ...document.querySelectorAll('#more-prompts textarea')];
}

/** The prompts to score: #prompt always, the others where written; `field` is the field index. */
function promptsToScore() {
  return promptFields()
    .map((f, field) => ({ text: f.value, field }))
    .filter((p) => p.field === 0 || p.text.trim());
}

/** Numbers the fields 1..n (labels, ids) after one was added or removed. */
function renumberPrompts() {
  const extra = [...document.querySelectorAll('#more-prompts li')];
  $('#prompt-label').textContent = extra.length ? 'Prompt 1' : 'Prompt';
  extra.forEach((li, k) => {
    const n = k + 2;
    li.querySelector('label').textContent = `Prompt ${n}`;
    li.querySelector('label').htmlFor = `prompt-${n}`;
    li.querySelector('textarea').id = `prompt-${n}`;
    li.querySelector('button').setAttribute('aria-label', `remove prompt ${n}`);
  });
}

/** Adds an empty prompt field and returns it. */
function addPrompt(text = '') {
  const area = el('textarea', { rows: '2', spellcheck: 'true', class: 'extra-prompt' });
  area.value = text;
  const rm = el('button', { type: 'button', class: 'remove-prompt', text: 'Remove' });
  const li = el('li', {}, el('label'), area, rm);
  rm.onclick = () => {
    li.remove();
    renumberPrompts();
    $('#add-prompt').focus();
    if (state.results && state.model) score();
  };
  $('#more-prompts').append(li);
  renumberPrompts();
  return area;
}

/** Sets the prompts to `texts`, #prompt first, removing extra fields beyond them. */
function setPrompts(texts) {
  const extra = [...document.querySelectorAll('#more-prompts li')];
  extra.slice(Math.max(0, texts.length - 1)).forEach((li) => li.remove());
  texts.forEach((t, k) => {
    if (k === 0) $('#prompt').value = t;
    else (promptFields()[k] ?? addPrompt()).value = t;
  });
  renumberPrompts();
}

/**
 * The implicit, explicit and superficial prompts of a pasted Science-T2I row (a JSON object, as
 * the dataset viewer copies it), or throws why not.
 */
function parseT2iRow(text) {
  if (text.length > T2I_MAX_CHARS) throw new Error(`the pasted text is ${fmtBytes(text.length)}, more than a dataset row (at most ${fmtBytes(T2I_MAX_CHARS)})`);
  if (!text.trim()) throw new Error('paste a row first');
  let row;
  try {
    row = JSON.parse(text);
  } catch (e) {
    throw new Error(`not JSON (${e.message}): paste the row as a JSON object`);
  }
  if (!row || typeof row !== 'object' || Array.isArray(row)) throw new Error('not a JSON object: paste one row, {"implicit_prompt": …}');
  const missing = T2I_PROMPTS.filter((k) => typeof row[k] !== 'string' || !row[k].trim());
  if (missing.length) throw new Error(`the row has no text in ${missing.join(', ')}`);
  return T2I_PROMPTS.map((k) => row[k]);
}

function fillFromT2iRow() {
  const msg = $('#t2i-message');
  try {
    setPrompts(parseT2iRow($('#t2i-row').value));
    msg.textContent = 'filled prompts 1-3: implicit, explicit, superficial';
    msg.className = '';
    if (state.results && state.model) score();
  } catch (e) {
    msg.textContent = `not filled: ${e.message}`;
    msg.className = 'error';
  }
}

function initPrompts() {
  let timer = 0;
  $('#add-prompt').onclick = () => addPrompt().focus();
  $('#more-prompts').addEventListener('input', () => {
    clearTimeout(timer);
    // Image embeddings are cached: a new prompt costs one text-tower pass.
    if (state.results && state.model) timer = setTimeout(score, 300);
  });
  $('#t2i-fill').onclick = fillFromT2iRow;
}

/** How many prompts and images the engine's towers have encoded since the load (tests read it). */
function noteEncoded(encoded) {
  const st = $('#status');
  st.dataset.textsEncoded = String(encoded.texts);
  st.dataset.imagesEncoded = String(encoded.images);
}

// ------------------------------------------------------------------------------------------------
// The prompts x images matrix (several prompts)

/** Index of the largest of `xs` (nulls skipped), or -1. */
function argmax(xs) {
  let best = -1;
  xs.forEach((x, i) => { if (x !== null && x !== undefined && (best < 0 || x > xs[best])) best = i; });
  return best;
}

/**
 * A table: a row per prompt, a column per image; each cell its score and both probabilities,
 * with each prompt's best image and each image's best prompt marked in words as well as colour.
 */
function renderMatrix() {
  const panel = $('#matrix-panel');
  const m = state.results ? state.matrix : null;
  const prompts = state.scored?.prompts ?? [];
  panel.hidden = !m || prompts.length < 2;
  const table = $('#matrix');
  if (panel.hidden) {
    table.replaceChildren();
    return;
  }
  const { images } = state.scored;
  const pct = (x) => `${(x * 100).toFixed(1)}%`;
  const bestImage = m.scores.map((row) => argmax(row));
  const bestPrompt = images.map((_, i) => argmax(m.scores.map((row) => row[i])));
  const head = el('tr', {}, el('th', { scope: 'col', text: 'Prompt / image' }),
    ...images.map((im, i) => el('th', { scope: 'col', text: `${i + 1}. ${im.name}` })));
  const body = prompts.map((p, k) => el('tr', {},
    el('th', { scope: 'row', text: `${p.field + 1}. ${p.text}` }),
    ...images.map((_, i) => {
      const td = el('td', { 'data-testid': 'cell', 'data-prompt': String(p.field), 'data-image': String(i) });
      const score = m.scores[k][i];
      if (score === null || score === undefined) {
        td.classList.add('failed');
        td.setAttribute('data-error', state.results[i].error ?? 'not scored');
        td.append(el('span', { text: 'could not be read' }));
        return td;
      }
      td.setAttribute('data-score', String(score));
      td.setAttribute('data-prob-images', String(m.probs_over_images[k][i]));
      td.setAttribute('data-prob-prompts', String(m.probs_over_prompts[k][i]));
      td.append(
        el('span', { class: 'score', text: score.toFixed(3) }),
        el('span', { class: 'p', text: `over images ${pct(m.probs_over_images[k][i])}` }),
        el('span', { class: 'p', text: `over prompts ${pct(m.probs_over_prompts[k][i])}` }),
      );
      if (bestImage[k] === i) {
        td.classList.add('best-image');
        td.setAttribute('data-best-image', '');
        td.append(el('span', { class: 'mark', text: '★ best image for this prompt' }));
      }
      if (bestPrompt[i] === k) {
        td.classList.add('best-prompt');
        td.setAttribute('data-best-prompt', '');
        td.append(el('span', { class: 'mark', text: '◆ best prompt for this image' }));
      }
      return td;
    })));
  table.replaceChildren(
    el('caption', { class: 'visually-hidden', text: 'Prompts (rows) by images (columns): score, probability over the images, probability over the prompts' }),
    el('thead', {}, head),
    el('tbody', {}, ...body),
  );
}

// ------------------------------------------------------------------------------------------------
// Science-T2I eval: accuracy on the benchmark's parquet shards, evaluated in the worker like
// `sciscore eval` (the `#bench-*` element ids predate the name; tests use them)

const accuracy = { files: [], report: null, running: false };

function accuracyButtons() {
  $('#bench-run').disabled = accuracy.running || !accuracy.files.length;
  $('#bench-csv').disabled = accuracy.running || !accuracy.report;
}

async function runAccuracy() {
  if (!state.model) {
    showError(new Error('no model loaded: load a model first'));
    return;
  }
  if (state.model.stale && !(await load(state.model.source, state.model.label, { reload: state.model.stale }))) return;
  const files = accuracy.files.slice().sort((a, b) => a.name.localeCompare(b.name));
  if (!files.length) return;
  accuracy.running = true;
  accuracy.report = null;
  accuracyButtons();
  $('#bench-result').hidden = true;
  const bar = $('#bench-progress');
  const text = $('#bench-progress-text');
  bar.value = 0;
  text.textContent = 'reading files…';
  setStatus(`Science-T2I eval: evaluating ${files.map((f) => f.name).join(', ')}…`, 'busy');
  try {
    const payload = [];
    for (const f of files) payload.push({ name: f.name, bytes: await f.arrayBuffer() });
    const t0 = performance.now();
    const r = await engine.call('evalParquet', { files: payload }, (p) => {
      bar.max = Math.max(1, p.total);
      bar.value = p.done;
      const s = (performance.now() - t0) / 1000;
      text.textContent = `${p.done} / ${p.total} rows${s > 0 ? ` · ${(p.done / s).toFixed(2)} rows/s` : ''}`;
    });
    accuracy.report = r.report;
    renderAccuracy(r.report);
    text.textContent = `${r.report.rows} rows in ${fmtMs(r.ms)}`;
    const { per_row: _, ...summary } = r.report;
    $('#bench-result').dataset.report = JSON.stringify(summary); // for tests and copy-paste
    setStatus(`ready — Science-T2I eval: accuracy ${(r.report.overall_accuracy * 100).toFixed(1)}% over ${r.report.rows} rows`, 'ready');
  } catch (e) {
    text.textContent = '';
    afterEngineFailure(e);
  } finally {
    accuracy.running = false;
    accuracyButtons();
  }
}

function renderAccuracy(r) {
  const pct = (x) => `${(x * 100).toFixed(1)}%`;
  $('#bench-rows').textContent = String(r.rows);
  $('#bench-overall').textContent = pct(r.overall_accuracy);
  $('#bench-overall').dataset.value = String(r.overall_accuracy);
  $('#bench-errors').textContent = String(r.errors.length);
  const table = (id, head, acc) => {
    const t = $(id);
    t.replaceChildren(el('tr', {}, el('th', { text: head }), el('th', { text: 'accuracy' })));
    for (const [k, v] of Object.entries(acc)) {
      t.append(el('tr', {}, el('td', { text: k }), el('td', { text: pct(v), 'data-value': String(v) })));
    }
  };
  table('#bench-categories', 'category', r.category_accuracy);
  table('#bench-laws', 'law', r.law_accuracy);
  $('#bench-error-list').replaceChildren(...r.errors.map((e) => el('li', { text: `row ${e.row}: ${e.message}` })));
  $('#bench-result').hidden = false;
}

function exportAccuracyCsv() {
  const r = accuracy.report;
  if (!r) return;
  const cell = (v) => {
    let s = String(v);
    if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const cols = ['row', 'category', 'law', 'prob_explicit', 'prob_superficial', 'correct'];
  const lines = [cols.join(','), ...r.per_row.map((x) => cols.map((c) => cell(x[c])).join(','))];
  download('sciscore-eval.csv', 'text/csv', `${lines.join('\r\n')}\r\n`);
}

// ------------------------------------------------------------------------------------------------
// Wiring

function dropZone(zone, onFiles) {
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', async (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    onFiles(await droppedFiles(e.dataTransfer));
  });
}

function init() {
  const preset = $('#preset');
  for (const p of PRESETS) preset.append(el('option', { value: p.id, text: p.label }));
  preset.value = 'sciscore';
  $('#model-url').value = PRESETS[0].url;
  preset.onchange = () => { $('#model-url').value = PRESETS.find((p) => p.id === preset.value).url; };
  $('#load-preset').onclick = () => loadUrl(PRESETS.find((p) => p.id === preset.value).url);
  $('#load-url').onclick = () => loadUrl($('#model-url').value);
  $('#model-url').addEventListener('keydown', (e) => { if (e.key === 'Enter') loadUrl($('#model-url').value); });

  $('#model-files').onchange = (e) => { loadFiles([...e.target.files]); e.target.value = ''; };
  $('#model-folder').onchange = (e) => { loadFiles([...e.target.files]); e.target.value = ''; };
  dropZone($('#model-drop'), (files) => loadFiles(files));

  $('#images').onchange = async (e) => { await addImages(e.target.files); e.target.value = ''; };
  dropZone($('#image-drop'), (files) => addImages(files.filter((f) => !f.type || f.type.startsWith('image/') || !MODEL_FILE.test(f.name))));
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])];
    // Text pasted into a text field stays text; an image pasted anywhere becomes an image.
    const textField = e.target instanceof HTMLTextAreaElement || e.target === $('#model-url');
    if (textField && e.clipboardData?.types.includes('text/plain')) return;
    if (files.length) { e.preventDefault(); addImages(files); }
  });
  // A file dropped outside the zones must not navigate away from the page.
  for (const ev of ['dragover', 'drop']) document.addEventListener(ev, (e) => e.preventDefault());

  $('#score').onclick = () => score();
  $('#clear-images').onclick = () => { state.images.forEach((im) => URL.revokeObjectURL(im.url)); state.images = []; imagesChanged(); };
  $('#pairwise').onchange = () => { if (state.results) score(); };
  $('#sort').onchange = () => renderResults();
  let timer = 0;
  $('#prompt').addEventListener('input', () => {
    clearTimeout(timer);
    // Image embeddings are cached, so a new prompt costs one text-tower pass.
    if (state.results && state.model) timer = setTimeout(score, 300);
  });
  initPrompts();
  $('#bench-file').onchange = (e) => { accuracy.files = [...e.target.files]; accuracyButtons(); };
  $('#bench-run').onclick = () => runAccuracy();
  $('#bench-csv').onclick = exportAccuracyCsv;
  $('#export-csv').onclick = exportCsv;
  $('#export-json').onclick = exportJson;
  $('#clear-cache').onclick = async () => {
    try {
      await caches.delete(CACHE_NAME);
      $('#cache-usage').textContent = 'downloaded models cleared';
    } catch (e) {
      showError(e);
    }
  };

  initExplain({
    engine, $, el, download, setStatus, onFailure: afterEngineFailure,
    scored: () => state.scored,
    results: () => state.results,
  });

  setStatus('no model loaded — choose a preset, a URL, or a local model folder');
  updateCacheUsage();
  const model = params.get('model');
  if (model) {
    $('#model-url').value = model;
    loadUrl(model);
  }
}

init();

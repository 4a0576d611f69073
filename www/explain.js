// Region maps on the results (*Show regions*, `#explain`): each scored image gets its patch map
// drawn over its centre crop, a canvas `[data-testid=heatmap]` with `data-grid` ([rows, cols])
// and the values in `data-map` (JSON); an opacity slider; the occlusion map on request
// (`[data-testid=occlusion]`, with progress and cancel); PNG export of each map. The maps are
// computed in the worker (src/explain.rs defines them); this file only asks and draws.

/** Canvas side of the drawn crop (the model's input is a square centre crop). */
const SIDE = 224;
/** Colour scale under the crop: gap, bar height, label line. */
const GAP = 4;
const BAR = 10;
const LABEL = 14;

/** The viridis approximation of src/explain.rs (same coefficients), t in [0, 1] -> [r, g, b]. */
export function viridis(t) {
  const C = [
    [0.2777273, 0.005407344, 0.3340998],
    [0.10509304, 1.4046135, 1.3845902],
    [-0.3308618, 0.21484756, 0.09509516],
    [-4.6342304, -5.799101, -19.332441],
    [6.22827, 14.179933, 56.69055],
    [4.776385, -13.745145, -65.353035],
    [-5.435456, 4.6458526, 26.312435],
  ];
  const x = Math.min(1, Math.max(0, t));
  return [0, 1, 2].map((ch) => {
    const v = C.reduceRight((acc, c) => acc * x + c[ch], 0);
    return Math.round(Math.min(1, Math.max(0, v)) * 255);
  });
}

/** Pixel span of cell `r` of `g` over `size`: floor(r size / g) .. floor((r + 1) size / g). */
const span = (r, g, size) => [Math.floor((r * size) / g), Math.floor(((r + 1) * size) / g)];

/**
 * Draws the crop of `bitmap` (or a dark square when the browser cannot show the file), `map`
 * blended over it at `opacity`, and a colour scale with the map's min and max.
 */
function draw(canvas, map, bitmap, opacity) {
  canvas.width = SIDE;
  canvas.height = SIDE + GAP + BAR + GAP + LABEL;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#181818';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (bitmap) {
    const side = Math.min(bitmap.width, bitmap.height);
    ctx.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side, 0, 0, SIDE, SIDE);
  }
  const [gh, gw] = map.grid;
  const lo = Math.min(...map.values);
  const hi = Math.max(...map.values);
  const norm = (v) => (hi > lo ? (v - lo) / (hi - lo) : 0.5);
  ctx.globalAlpha = opacity;
  for (let r = 0; r < gh; r += 1) {
    const [y0, y1] = span(r, gh, SIDE);
    for (let c = 0; c < gw; c += 1) {
      const [x0, x1] = span(c, gw, SIDE);
      ctx.fillStyle = `rgb(${viridis(norm(map.values[r * gw + c])).join(',')})`;
      ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
    }
  }
  ctx.globalAlpha = 1;
  for (let x = 0; x < SIDE; x += 1) {
    ctx.fillStyle = `rgb(${viridis(x / (SIDE - 1)).join(',')})`;
    ctx.fillRect(x, SIDE + GAP, 1, BAR);
  }
  ctx.fillStyle = '#eee';
  ctx.font = '11px sans-serif';
  ctx.textBaseline = 'top';
  const y = SIDE + GAP + BAR + GAP;
  ctx.textAlign = 'left';
  ctx.fillText(lo.toFixed(2), 0, y);
  ctx.textAlign = 'right';
  ctx.fillText(hi.toFixed(2), SIDE, y);
}

/**
 * Wires the region-map controls. `ctx`: {engine, $, el, download(name, type, blob), setStatus,
 * onFailure(e), scored() (the snapshot of the last scoring: {prompt, images}), results()}.
 */
export function initExplain(ctx) {
  const { engine, $, el } = ctx;
  const ui = {
    toggle: $('#explain'),
    controls: $('#explain-controls'),
    opacity: $('#explain-opacity'),
    opacityText: $('#explain-opacity-value'),
    grid: $('#occlusion-grid'),
    run: $('#explain-occlusion'),
    cancel: $('#explain-cancel'),
    bar: $('#explain-progress'),
    text: $('#explain-progress-text'),
  };
  /** Patch maps of one scoring: {scored, results: [{name, score, patch_map} | {name, error}]}. */
  let patch = null;
  /** Occlusion maps of that scoring, by image index: {grid: [g, g], values}. */
  let occlusion = new Map();
  /** The occlusion run in progress: its cancel token. */
  let running = null;
  let seq = 0;
  const bitmaps = new WeakMap();

  const setState = (s, text = '') => {
    ui.controls.dataset.state = s;
    ui.text.textContent = text;
  };

  async function bitmapOf(image) {
    if (!bitmaps.has(image)) {
      bitmaps.set(image, createImageBitmap(new Blob([image.bytes])).catch(() => null));
    }
    return bitmaps.get(image);
  }

  /** One map's figure: the canvas, a caption and its PNG export. */
  async function figure(kind, testid, map, image, caption) {
    const canvas = el('canvas', {
      'data-testid': testid,
      'data-grid': JSON.stringify(map.grid),
      'data-map': JSON.stringify(map.values),
      role: 'img',
      'aria-label': `${caption} of ${image.name}`,
    });
    draw(canvas, map, await bitmapOf(image), Number(ui.opacity.value));
    canvas.drawMap = (bitmap) => draw(canvas, map, bitmap, Number(ui.opacity.value));
    const png = el('button', { type: 'button', class: 'png', text: 'PNG' });
    png.onclick = () => canvas.toBlob((b) => ctx.download(`${image.name.replace(/\.[^.]*$/, '')}-${kind}.png`, 'image/png', b), 'image/png');
    return el('figure', { class: 'region' }, canvas, el('figcaption', { text: caption }), png);
  }

  /** Adds the maps to the result elements (renderResults rebuilds them on every scoring). */
  async function decorate() {
    const scored = ctx.scored();
    const mine = ++seq;
    document.querySelectorAll('[data-testid="result"] .regions').forEach((e) => e.remove());
    if (!ui.toggle.checked || !patch || patch.scored !== scored) return;
    for (const li of document.querySelectorAll('[data-testid="result"]')) {
      const i = Number(li.dataset.index);
      const r = patch.results[i];
      if (!r || r.error || !r.patch_map) continue;
      const box = el('div', { class: 'regions' });
      box.append(await figure('patch', 'heatmap', r.patch_map, scored.images[i], `patch map ${r.patch_map.grid.join('×')}`));
      const o = occlusion.get(i);
      if (o) box.append(await figure('occlusion', 'occlusion', o, scored.images[i], `occlusion ${o.grid.join('×')}: score drop`));
      if (mine !== seq) return; // a newer decoration is under way
      li.append(box);
    }
  }

  /** Computes the patch maps of the current scoring (one vision pass), then draws them. */
  async function computePatchMaps() {
    const scored = ctx.scored();
    if (!ui.toggle.checked || !scored || !ctx.results()) return;
    if (patch?.scored === scored) return decorate();
    setState('computing', 'computing patch maps…');
    ui.run.disabled = true;
    try {
      const r = await engine.call('patchMaps', {
        prompt: scored.prompt,
        images: scored.images.map((im) => ({ name: im.name, bytes: im.bytes })),
      });
      if (ctx.scored() !== scored) return; // superseded by a newer scoring
      patch = { scored, results: r.results };
      occlusion = new Map();
      setState('ready', `patch maps in ${Math.round(r.ms)} ms`);
      await decorate();
    } catch (e) {
      setState('error', `error: ${e.message}`);
      ctx.onFailure(e);
    } finally {
      ui.run.disabled = false;
    }
  }

  /** The occlusion map of every image with a patch map, one image after another. */
  async function runOcclusion() {
    const grid = Number(ui.grid.value);
    if (!Number.isInteger(grid) || grid < 1 || grid > 32) {
      setState('error', 'error: the occlusion grid takes 1 to 32 cells a side');
      return;
    }
    if (!ui.toggle.checked) {
      ui.toggle.checked = true;
      ui.controls.hidden = false;
    }
    await computePatchMaps();
    const p = patch;
    if (!p || p.scored !== ctx.scored() || running) return;
    const todo = p.results.map((r, i) => (r.patch_map ? i : -1)).filter((i) => i >= 0);
    const total = todo.length * grid * grid;
    const token = `occlusion-${Date.now()}-${Math.random()}`;
    running = token;
    ui.run.disabled = true;
    ui.cancel.hidden = false;
    ui.bar.max = Math.max(1, total);
    ui.bar.value = 0;
    setState('occlusion', `occlusion: 0 / ${total} images`);
    const t0 = performance.now();
    try {
      for (const [k, i] of todo.entries()) {
        const image = p.scored.images[i];
        const r = await engine.call('occlusion', {
          token,
          prompt: p.scored.prompt,
          image: { name: image.name, bytes: image.bytes },
          grid,
          original: p.results[i].score,
        }, (pr) => {
          const done = k * grid * grid + pr.done;
          ui.bar.value = done;
          const s = (performance.now() - t0) / 1000;
          ui.text.textContent = `occlusion: ${done} / ${total} images · ${(done / s).toFixed(2)} images/s`;
        });
        if (patch !== p) return;
        occlusion.set(i, { grid: [grid, grid], values: r.drops });
        await decorate();
      }
      setState('ready', `occlusion ${grid}×${grid}: ${total} images in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    } catch (e) {
      if (/cancelled/.test(e.message)) setState('cancelled', 'occlusion cancelled');
      else {
        setState('error', `error: ${e.message}`);
        ctx.onFailure(e);
      }
    } finally {
      running = null;
      ui.run.disabled = false;
      ui.cancel.hidden = true;
    }
  }

  ui.toggle.onchange = () => {
    ui.controls.hidden = !ui.toggle.checked;
    if (ui.toggle.checked) computePatchMaps();
    else decorate();
  };
  ui.opacity.oninput = () => {
    ui.opacityText.textContent = `${Math.round(Number(ui.opacity.value) * 100)}%`;
    document.querySelectorAll('.regions canvas').forEach(async (c) => {
      const li = c.closest('[data-testid="result"]');
      const image = ctx.scored()?.images[Number(li?.dataset.index)];
      c.drawMap?.(image ? await bitmapOf(image) : null);
    });
  };
  ui.run.onclick = () => runOcclusion();
  ui.cancel.onclick = () => {
    if (running) engine.post({ type: 'cancel', token: running });
  };
  // Every new scoring rebuilds the results: recompute the maps for it.
  new MutationObserver(() => computePatchMaps()).observe($('#results'), { childList: true });
}

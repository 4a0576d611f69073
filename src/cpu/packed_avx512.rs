//! `out (M, N; rows ldc apart) (+)= a (M, K) . W^T + b` natively on AVX-512, with W (N, K) packed
//! once when the model loads rather than on every product.
//!
//! Packed layout: panels of [`NR`] = 32 output columns; panel `j` holds, for each `p` in `0..K`,
//! the 32 values `W[32 j + c, p]` side by side (K x 32, k-major), 64-byte aligned, the last
//! panel padded with zero columns. A micro-kernel keeps an [`MR`] x 32 tile of `out` in 24 zmm
//! accumulators and per step of k loads two vectors of W and broadcasts one value of each of the
//! 12 rows of `a`: 24 FMAs per 14 loads, so the FMA units, not the loads, set the pace.
//!
//! Epilogue ([`Finish`]): the first block of k adds the bias and overwrites `out` (or adds to it:
//! the residual stream), the last applies GELU or QuickGELU to the tile while it is in L1, so no
//! pass over the output follows a product.
//!
//! Blocking: rows in blocks of [`MC`] = 264, k in blocks of [`KC`] (a panel's block of W, 256 x
//! 32 f32 = 32 KiB, stays in L1 while the row block's tiles pass it); threads take disjoint
//! [`Part`]s, a row block by a run of at most 16 panels ([`parts`]). Why not the `gemm` crate here: it packs W on every call, 1.6-1.7x behind
//! onnxruntime per ViT-H layer (docs/performance.md, issue 16).

use std::arch::x86_64::*;

/// Output columns per panel: two zmm vectors.
pub(super) const NR: usize = 32;
/// Rows of `a` per micro-kernel: 12 x 2 accumulators + 2 vectors of W + 1 broadcast of the
/// 32 zmm registers.
const MR: usize = 12;
/// Rows of `a` per row block: a block's rows of `a` for one block of k (264 x 256 f32 = 264
/// KiB) and of a part's output columns stay in L2 while the block's k blocks pass (at batch 4,
/// fc2's 1028 x 640 outputs of a thread, 2.6 MiB, left L2 between blocks of k). One image's 257
/// tokens are one block.
const MC: usize = 22 * MR;
/// k per block: one panel's block of W (KC x NR f32 = 32 KiB) fits the L1 data cache (48 KiB).
/// (128 and 192 measured no better on the ViT-H shapes, and 128 slower on one thread.)
const KC: usize = 256;

/// Whether this CPU runs the packed products. `SCISCORE_CPU_MATMUL=gemm` keeps the `gemm` crate
/// (benchmarks side by side, and tests of that path on an AVX-512 machine).
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::env::var("SCISCORE_CPU_MATMUL").as_deref() != Ok("gemm")
}

/// One cache line of packed values, so every panel starts 64-byte aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// How the packed values are stored: W's own precision (a half-precision checkpoint stays half
/// size in memory and is widened in registers, `vcvtph2ps` or a shift for bf16).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    F32,
    F16,
    BF16,
}

impl Kind {
    fn bytes(self) -> usize {
        match self {
            Kind::F32 => 4,
            Kind::F16 | Kind::BF16 => 2,
        }
    }
}

/// A weight matrix W (N, K) in panels of [`NR`] columns (module doc).
pub(crate) struct Packed {
    n: usize,
    k: usize,
    kind: Kind,
    lines: Vec<Line>,
}

impl Packed {
    /// Packs row-major W (n, k) of elements `T` (f32, or a half precision's bits) stored as
    /// `kind`.
    pub fn new<T: bytemuck::Pod>(n: usize, k: usize, kind: Kind, w: &[T]) -> Packed {
        assert!(
            std::mem::size_of::<T>() == kind.bytes() && w.len() >= n * k,
            "Packed::new: weight size"
        );
        // A panel is k steps of 32 values: 2 lines per step in f32, 1 in a half precision.
        let per_panel = k * NR * kind.bytes() / 64;
        let mut lines = vec![Line([0; 64]); n.div_ceil(NR) * per_panel];
        if per_panel > 0 {
            for (j, panel) in lines.chunks_mut(per_panel).enumerate() {
                let panel: &mut [T] = bytemuck::cast_slice_mut(panel);
                for c in 0..NR.min(n - j * NR) {
                    let row = &w[(j * NR + c) * k..][..k];
                    for (p, &v) in row.iter().enumerate() {
                        panel[p * NR + c] = v;
                    }
                }
            }
        }
        Packed { n, k, kind, lines }
    }

    /// Element `(r, p)` of W in f32.
    pub fn get(&self, r: usize, p: usize) -> f32 {
        let size = self.kind.bytes();
        let per_panel = self.k * NR * size / 64;
        let panel = &self.lines[(r / NR) * per_panel..][..per_panel];
        let at = (p * NR + r % NR) * size;
        let b = &bytemuck::cast_slice::<Line, u8>(panel)[at..at + size];
        match self.kind {
            Kind::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Kind::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            Kind::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        }
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// The first packed value of panel `j`.
    fn panel(&self, j: usize) -> *const u8 {
        let per_panel = self.k * NR * self.kind.bytes() / 64;
        self.lines[j * per_panel..].as_ptr() as *const u8
    }
}

// SAFETY: 64 plain bytes, no padding; any bits are a valid value.
unsafe impl bytemuck::Zeroable for Line {}
unsafe impl bytemuck::Pod for Line {}

/// `a (M, K)` row-major rearranged for the micro-kernel ([`pack_rows`]): for each block of
/// [`KC`] columns, blocks of [`MR`] rows (the last padded with zero rows), each k-major (the
/// MR values of one column side by side). The micro-kernel then reads its broadcasts at fixed
/// offsets from one sequential stream, not from 12 rows a whole row apart (K = 5120 puts every
/// row in the same L1 set).
pub(super) fn pack_rows(a: &[f32], m: usize, k: usize, out: &mut Vec<f32>) {
    use rayon::prelude::*;
    let m_pad = m.next_multiple_of(MR);
    // Every value is written below (the padding rows with zeros): no serial zero-fill first.
    out.resize(m_pad * k, 0.0);
    if m_pad == 0 {
        return;
    }
    // Each block of KC columns on its own thread (a serial rearrangement of fc2's 5 MB input
    // left the other cores idle).
    out.par_chunks_mut(m_pad * KC)
        .enumerate()
        .for_each(|(block, out)| {
            let (p0, kb) = (block * KC, out.len() / m_pad);
            for (i0, tile) in (0..m_pad).step_by(MR).zip(out.chunks_exact_mut(MR * kb)) {
                let rows = MR.min(m - i0);
                for r in 0..rows {
                    let row = &a[(i0 + r) * k + p0..][..kb];
                    for (p, &v) in row.iter().enumerate() {
                        tile[p * MR + r] = v;
                    }
                }
                if rows < MR {
                    for step in tile.chunks_exact_mut(MR) {
                        step[rows..].fill(0.0);
                    }
                }
            }
        });
}

/// What the tiles do with `a . W^T` as they store it (`matmul::Epilogue` as the kernel sees it),
/// so that no pass over the output follows the product.
#[derive(Clone, Copy)]
pub(super) struct Finish<'a> {
    /// `b (N,)`, added to the first block of k.
    pub bias: Option<&'a [f32]>,
    /// `out += a . W^T + b` (the residual stream); otherwise `out = a . W^T + b`, and out's
    /// old values are never read.
    pub residual: bool,
    /// Applied to each output after its last block of k, while the tile is in L1.
    pub act: Act,
}

/// The activation a product's outputs get ([`Finish::act`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Act {
    None,
    /// Exact (erf) GELU, `pointwise::gelu`'s operations (the same bits).
    Gelu,
    /// `pointwise::quick_gelu`'s `z sigmoid(1.702 z)`.
    QuickGelu,
}

/// `out (M, N; rows ldc apart) (+)= a (M, K) . W^T + b` on one [`Part`]: its rows, and its panels
/// of W (output columns `32 panels.start ..`); `a` as [`pack_rows`] wrote it, finished as
/// `finish` says.
///
/// # Safety
/// The CPU has AVX-512F ([`available`]); `out` holds `(m - 1) * ldc + w.n` values and `a`
/// is `pack_rows(.., m, w.k, ..)`'s output; `part`'s rows lie within `0..m` (from a multiple of
/// [`MC`]) and its panels within W's; a bias holds
/// `w.n` values; `w.k > 0` unless `finish.residual` with no bias (else nothing is stored).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn gemm_acc(
    out: *mut f32,
    ldc: usize,
    a: *const f32,
    m: usize,
    part: Part,
    w: &Packed,
    finish: Finish,
) {
    // SAFETY: forwarded (the caller's contract).
    unsafe {
        match w.kind {
            Kind::F32 => blocks::<F32>(out, ldc, a, m, part, w, finish),
            Kind::F16 => blocks::<F16>(out, ldc, a, m, part, w, finish),
            Kind::BF16 => blocks::<BF16>(out, ldc, a, m, part, w, finish),
        }
    }
}

// The storage kinds as const generic parameters of the micro-kernel.
const F32: u8 = 0;
const F16: u8 = 1;
const BF16: u8 = 2;

/// [`gemm_acc`] for one storage kind: blocks of [`MC`] rows, k blocks, panels, then tiles of
/// [`MR`] rows.
///
/// # Safety
/// As [`gemm_acc`].
#[target_feature(enable = "avx512f")]
unsafe fn blocks<const KIND: u8>(
    out: *mut f32,
    ldc: usize,
    a: *const f32,
    m: usize,
    part: Part,
    w: &Packed,
    finish: Finish,
) {
    let (k, size) = (w.k, w.kind.bytes());
    let m_pad = m.next_multiple_of(MR);
    let Part { rows, panels } = part;
    for i0 in rows.clone().step_by(MC) {
        let i_end = (i0 + MC).min(rows.end);
        let tiles = (i_end - i0).div_ceil(MR);
        for p0 in (0..k).step_by(KC) {
            let kb = KC.min(k - p0);
            for j in panels.clone() {
                let cols = NR.min(w.n - j * NR);
                let masks = [lane_mask(cols), lane_mask(cols.saturating_sub(16))];
                // The first block of k adds the bias and, outside the residual stream, overwrites
                // out; the last applies the activation.
                let (first, last) = (p0 == 0, p0 + KC >= k);
                let bias = finish.bias.filter(|_| first).map(|b| {
                    // SAFETY: the bias holds w.n values; the masks keep to this panel's columns.
                    unsafe {
                        let b = b.as_ptr().add(j * NR);
                        [
                            _mm512_maskz_loadu_ps(masks[0], b),
                            _mm512_maskz_loadu_ps(masks[1], b.add(16)),
                        ]
                    }
                });
                let store = Store {
                    bias,
                    keep: !first || finish.residual,
                };
                // SAFETY: the panel holds k steps of 32 values.
                let b = unsafe { w.panel(j).add(p0 * NR * size) };
                // The block of W after this one, fetched into L2 a slice per row block while this
                // one is in use: a whole tower's weights come from memory (CLIP-H: 79 MB a layer),
                // and the hardware prefetcher starts late on each jump to another panel.
                let next = if j + 1 < panels.end {
                    Some((j + 1, p0, kb))
                } else if p0 + KC < k {
                    Some((panels.start, p0 + KC, KC.min(k - p0 - KC)))
                } else if i_end < rows.end {
                    Some((panels.start, 0, KC.min(k)))
                } else {
                    None
                };
                let next = next.map(|(j, p0, kb)| {
                    // SAFETY: panel j holds k steps; block p0 has kb of them.
                    let start = unsafe { w.panel(j).add(p0 * NR * size) };
                    let lines = kb * NR * size / 64;
                    (start, lines, lines.div_ceil(tiles))
                });
                let mut i = i0;
                while i < i_end {
                    let rows = MR.min(i_end - i);
                    if let Some((start, lines, per_tile)) = next {
                        let first = ((i - i0) / MR) * per_tile;
                        for line in first..(first + per_tile).min(lines) {
                            // SAFETY: line < lines: within the next block.
                            unsafe {
                                _mm_prefetch::<_MM_HINT_T1>(start.add(line * 64) as *const i8)
                            };
                        }
                    }
                    // SAFETY: rows i..i + rows of a (k apart, from column p0) and of out (ldc apart,
                    // from column 32 j) are within the operands (caller's contract).
                    unsafe {
                        let (a, c) = (a.add(p0 * m_pad + i * kb), out.add(i * ldc + j * NR));
                        match rows {
                            12 => tile::<12, KIND>(a, b, kb, c, ldc, masks, store),
                            11 => tile::<11, KIND>(a, b, kb, c, ldc, masks, store),
                            10 => tile::<10, KIND>(a, b, kb, c, ldc, masks, store),
                            9 => tile::<9, KIND>(a, b, kb, c, ldc, masks, store),
                            8 => tile::<8, KIND>(a, b, kb, c, ldc, masks, store),
                            7 => tile::<7, KIND>(a, b, kb, c, ldc, masks, store),
                            6 => tile::<6, KIND>(a, b, kb, c, ldc, masks, store),
                            5 => tile::<5, KIND>(a, b, kb, c, ldc, masks, store),
                            4 => tile::<4, KIND>(a, b, kb, c, ldc, masks, store),
                            3 => tile::<3, KIND>(a, b, kb, c, ldc, masks, store),
                            2 => tile::<2, KIND>(a, b, kb, c, ldc, masks, store),
                            _ => tile::<1, KIND>(a, b, kb, c, ldc, masks, store),
                        }
                        if last && finish.act != Act::None {
                            for r in 0..rows {
                                // Row i + r of out, this panel's columns: this task's alone.
                                let row = std::slice::from_raw_parts_mut(c.add(r * ldc), cols);
                                activate(row, finish.act);
                            }
                        }
                    }
                    i += rows;
                }
            }
        }
    }
}

/// The lowest `min(cols, 16)` lanes.
fn lane_mask(cols: usize) -> __mmask16 {
    if cols >= 16 {
        0xffff
    } else {
        ((1u32 << cols) - 1) as u16
    }
}

/// `f(x)` for each x of `v` in place (AVX-512: the loops vectorize as `pointwise`'s do).
///
/// # Safety
/// AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn activate(v: &mut [f32], act: Act) {
    use super::pointwise::{gelu_scalar, quick_gelu_scalar};
    match act {
        Act::None => {}
        Act::Gelu => v.iter_mut().for_each(|x| *x = gelu_scalar(*x)),
        Act::QuickGelu => v.iter_mut().for_each(|x| *x = quick_gelu_scalar(*x)),
    }
}

/// How a tile stores its sums.
#[derive(Clone, Copy)]
struct Store {
    /// The bias of the panel's 32 columns, added to the sums (first block of k).
    bias: Option<[__m512; 2]>,
    /// Add out's values to the sums (false: overwrite them unread).
    keep: bool,
}

/// `out (R, 32 masked; rows ldc apart) (+)= a . b (+ bias)` as `store` says, `a` a packed block
/// of kb steps of MR values (the first R used), `b` a packed block of kb steps of 32 values of
/// storage `KIND`, widened to f32 in registers.
///
/// # Safety
/// AVX-512F; the operands hold what the shapes say; `b` is 64-byte aligned.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize, const KIND: u8>(
    a: *const f32,
    b: *const u8,
    kb: usize,
    out: *mut f32,
    ldc: usize,
    masks: [__mmask16; 2],
    store: Store,
) {
    let mut acc0 = [_mm512_setzero_ps(); R];
    let mut acc1 = [_mm512_setzero_ps(); R];
    // One step of k: two vectors of W, R broadcasts of a, 2R FMAs.
    macro_rules! step {
        ($p:expr) => {{
            let p = $p;
            // SAFETY: p < kb: within the block of b and of a.
            unsafe {
                let (b0, b1) = match KIND {
                    F32 => {
                        let q = b.add(p * NR * 4) as *const f32;
                        (_mm512_load_ps(q), _mm512_load_ps(q.add(16)))
                    }
                    F16 => {
                        let h = _mm512_load_si512(b.add(p * NR * 2) as *const __m512i);
                        (
                            _mm512_cvtph_ps(_mm512_castsi512_si256(h)),
                            _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(h)),
                        )
                    }
                    _ => {
                        // bf16 -> f32: the 16 bits become the high half of the f32.
                        let q = b.add(p * NR * 2) as *const __m256i;
                        let (h0, h1) = (_mm256_load_si256(q), _mm256_load_si256(q.add(1)));
                        (
                            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h0))),
                            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h1))),
                        )
                    }
                };
                for r in 0..R {
                    let av = _mm512_set1_ps(*a.add(p * MR + r));
                    acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                    acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
                }
            }
        }};
    }
    // Four steps per iteration: the loop's own instructions would otherwise take issue slots
    // of the FMA ports (one core, operands in L1: 126 -> 140-150 GFLOP/s of its ~166 peak).
    let mut p = 0;
    while p + 4 <= kb {
        step!(p);
        step!(p + 1);
        step!(p + 2);
        step!(p + 3);
        p += 4;
    }
    while p < kb {
        step!(p);
        p += 1;
    }
    for r in 0..R {
        let (mut v0, mut v1) = (acc0[r], acc1[r]);
        if let Some([b0, b1]) = store.bias {
            (v0, v1) = (_mm512_add_ps(v0, b0), _mm512_add_ps(v1, b1));
        }
        // SAFETY: the masks keep to the output's columns of this panel.
        unsafe {
            let o = out.add(r * ldc);
            if store.keep {
                v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(masks[0], o), v0);
                v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(masks[1], o.add(16)), v1);
            }
            _mm512_mask_storeu_ps(o, masks[0], v0);
            _mm512_mask_storeu_ps(o.add(16), masks[1], v1);
        }
    }
}

/// A share of a product: rows of `a` and `out` (from a multiple of [`MC`]) and panels of W.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Part {
    pub rows: std::ops::Range<usize>,
    pub panels: std::ops::Range<usize>,
}

/// How `threads` share a product of `m` rows and `n` output columns: blocks of [`MC`] rows,
/// each split into runs of panels, about four parts a thread (one thread: whole row blocks) (rayon's work stealing evens out a
/// core slowed by another process). A part reads its rows of `a` once for all its panels, and
/// its panels of W once per block of rows: with many rows (a batch of images) splitting rows
/// first keeps each part's rows of `a` few (fc2 at batch 4: 21 MB of `a` re-read by every run
/// of panels).
pub(super) fn parts(m: usize, n: usize, threads: usize) -> Vec<Part> {
    // 264 rows x 16 panels of out (528 KiB) stay in L2 beside the row block's `a` (at batch 4,
    // fc1's 80 panels a part measured 274-279 GFLOP/s, 16: 289-294).
    const PART_PANELS: usize = 16;
    let (row_blocks, panels) = (m.div_ceil(MC).max(1), n.div_ceil(NR));
    let runs = match threads {
        0 | 1 => 1,
        _ => (4 * threads)
            .div_ceil(row_blocks)
            .max(panels.div_ceil(PART_PANELS)),
    }
    .clamp(1, panels.max(1));
    let per_run = panels.div_ceil(runs).max(1);
    let mut parts = Vec::new();
    for i0 in (0..m.max(1)).step_by(MC) {
        for j0 in (0..panels).step_by(per_run) {
            parts.push(Part {
                rows: i0..(i0 + MC).min(m),
                panels: j0..(j0 + per_run).min(panels),
            });
        }
    }
    parts
}

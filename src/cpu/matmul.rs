//! Matrix products: `gemm_nt` (`out = a . b^T`) and `linear` / `linear_into` (`y = x W^T + b`,
//! PyTorch's `nn.Linear`, then an [`Epilogue`]). Natively on AVX-512 the products on weights run
//! on [`super::packed_avx512`]'s kernel, the epilogue fused; other products natively on the `gemm`
//! crate (f32, blocked, SIMD), its output columns split over the threads; in the browser the
//! packed SIMD128 product of [`super::sgemm`] (one thread, or every core in the `threads` build).

/// A weight matrix kept in the checkpoint's precision: f16/bf16 checkpoints stay half size in
/// memory, and on wasm32 a large f32 checkpoint is held as f16 too (CLIP-H in f32, 3.9 GB, does
/// not fit in wasm32's 4 GiB). Products still compute in f32: [`linear`] widens W block by block.
pub(crate) enum Matrix {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    BF16(Vec<half::bf16>),
    /// Natively on AVX-512: packed once for [`super::packed_avx512`]'s products, in the
    /// checkpoint's precision ([`Matrix::packed_for`]).
    #[cfg(target_arch = "x86_64")]
    Packed(super::packed_avx512::Packed),
}

impl Matrix {
    /// The whole matrix in f32 (borrowed when it is stored so).
    #[cfg(not(target_arch = "wasm32"))] // the native CPU benchmark's validation
    pub fn f32(&self) -> std::borrow::Cow<'_, [f32]> {
        use half::slice::HalfFloatSliceExt;
        use std::borrow::Cow;
        match self {
            Matrix::F32(v) => Cow::Borrowed(v),
            Matrix::F16(v) => {
                let mut out = vec![0.0; v.len()];
                v.convert_to_f32_slice(&mut out);
                Cow::Owned(out)
            }
            Matrix::BF16(v) => {
                let mut out = vec![0.0; v.len()];
                v.convert_to_f32_slice(&mut out);
                Cow::Owned(out)
            }
            #[cfg(target_arch = "x86_64")]
            Matrix::Packed(p) => Cow::Owned(
                (0..p.n() * p.k())
                    .map(|i| p.get(i / p.k(), i % p.k()))
                    .collect(),
            ),
        }
    }

    /// The rows of `parts` one after another (unpacked matrices of equal width): in their
    /// shared precision, or in f32 where the precisions differ. One part is returned as it is.
    pub fn concat_rows(mut parts: Vec<Matrix>) -> Matrix {
        if parts.len() == 1 {
            if let Some(m) = parts.pop() {
                return m;
            }
        }
        /// The parts' values one after another, if `get` finds every part in its precision.
        fn gather<T: Copy>(
            parts: &[Matrix],
            get: fn(&Matrix) -> Option<&Vec<T>>,
        ) -> Option<Vec<T>> {
            let mut out = Vec::new();
            for m in parts {
                out.extend_from_slice(get(m)?);
            }
            Some(out)
        }
        if let Some(v) = gather(&parts, |m| {
            if let Matrix::F32(v) = m {
                Some(v)
            } else {
                None
            }
        }) {
            return Matrix::F32(v);
        }
        if let Some(v) = gather(&parts, |m| {
            if let Matrix::F16(v) = m {
                Some(v)
            } else {
                None
            }
        }) {
            return Matrix::F16(v);
        }
        if let Some(v) = gather(&parts, |m| {
            if let Matrix::BF16(v) = m {
                Some(v)
            } else {
                None
            }
        }) {
            return Matrix::BF16(v);
        }
        Matrix::F32(parts.into_iter().flat_map(|m| m.into_f32()).collect())
    }

    /// All values in f32.
    fn into_f32(self) -> Vec<f32> {
        if let Matrix::F32(v) = self {
            return v;
        }
        let mut out = vec![0.0; self.len()];
        self.read_into(0, &mut out);
        out
    }

    /// The number of values.
    fn len(&self) -> usize {
        match self {
            Matrix::F32(v) => v.len(),
            Matrix::F16(v) => v.len(),
            Matrix::BF16(v) => v.len(),
            #[cfg(target_arch = "x86_64")]
            Matrix::Packed(p) => p.n() * p.k(),
        }
    }

    /// The matrix a product [`linear`] with `rows` x `cols` (out, in) runs fastest on here:
    /// natively on AVX-512 packed in panels once (the same values in the same precision),
    /// elsewhere itself.
    pub fn packed_for(self, rows: usize, cols: usize) -> Matrix {
        #[cfg(target_arch = "x86_64")]
        if super::packed_avx512::available() {
            use super::packed_avx512::{Kind, Packed};
            use half::slice::HalfFloatSliceExt;
            let packed = match &self {
                Matrix::F32(v) if v.len() == rows * cols => Packed::new(rows, cols, Kind::F32, v),
                Matrix::F16(v) if v.len() == rows * cols => {
                    Packed::new(rows, cols, Kind::F16, v.reinterpret_cast())
                }
                Matrix::BF16(v) if v.len() == rows * cols => {
                    Packed::new(rows, cols, Kind::BF16, v.reinterpret_cast())
                }
                _ => return self,
            };
            return Matrix::Packed(packed);
        }
        let _ = (rows, cols);
        self
    }

    /// Elements `[start, start + out.len())` in f32.
    pub fn read_into(&self, start: usize, out: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        let n = out.len();
        match self {
            Matrix::F32(v) => out.copy_from_slice(&v[start..start + n]),
            Matrix::F16(v) => widen_f16(&v[start..start + n], out),
            Matrix::BF16(v) => v[start..start + n].convert_to_f32_slice(out),
            #[cfg(target_arch = "x86_64")]
            Matrix::Packed(p) => {
                for (i, o) in (start..start + n).zip(out) {
                    *o = p.get(i / p.k(), i % p.k());
                }
            }
        }
    }
}

/// f16 -> f32. On wasm32 `half` has no hardware conversion (x86's F16C, ARM's FCVT) and
/// converts value by value with branches; the branch-free [`super::sgemm::f16_bits_to_f32`]
/// vectorizes to SIMD128 there.
fn widen_f16(src: &[half::f16], out: &mut [f32]) {
    #[cfg(target_arch = "wasm32")]
    for (o, h) in out.iter_mut().zip(src) {
        *o = super::sgemm::f16_bits_to_f32(h.to_bits());
    }
    #[cfg(not(target_arch = "wasm32"))]
    half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, out);
}

/// `y = x W^T + b`, W: (out, in) row-major as stored by PyTorch.
pub(crate) struct Linear {
    pub weight: Matrix,         // (out, in)
    pub bias: Option<Vec<f32>>, // (out,)
    pub out_features: usize,
    pub in_features: usize,
}

/// `out (M, N) = a (M, K) . b^T` with `b (N, K)` row-major, plus `out` when `accumulate`.
/// `threads`: let gemm use all cores (off inside an already parallel loop).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_nt(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    threads: bool,
) {
    #[cfg(not(target_arch = "wasm32"))]
    gemm_nt_ld(out, n, a, b, m, n, k, accumulate, threads);
    // The browser: the packed SIMD product of `sgemm`.
    #[cfg(target_arch = "wasm32")]
    {
        let _ = threads;
        assert!(out.len() >= m * n, "gemm_nt: operand sizes");
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        super::sgemm::gemm_acc(out, a, super::sgemm::Rows::F32(b), m, n, k);
    }
}

/// `gemm_nt` into an `out` whose rows are `ldc` apart (a column block of a wider matrix).
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
fn gemm_nt_ld(
    out: &mut [f32],
    ldc: usize,
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    threads: bool,
) {
    assert!(
        ldc >= n
            && (m == 0 || out.len() >= (m - 1) * ldc + n)
            && a.len() >= m * k
            && b.len() >= n * k,
        "gemm_nt: operand sizes"
    );
    // Threads split the output's columns (each a `Parallelism::None` product) rather than use
    // gemm's own split, whose AVX-512 kernels ran 77 x 4096 x 1024 at 61 GFLOP/s against 107 so
    // (docs/performance.md).
    let threads = if threads && m * n * k > 1 << 16 {
        super::threads::count()
    } else {
        1
    };
    let block = n.div_ceil(threads).next_multiple_of(16);
    if threads <= 1 || block >= n {
        // SAFETY: the assertion above keeps every access within the three slices.
        unsafe { gemm_block(out.as_mut_ptr(), ldc, a, b.as_ptr(), m, n, k, accumulate) };
        return;
    }
    let out_ptr = out.as_mut_ptr() as usize;
    use rayon::prelude::*;
    (0..n).into_par_iter().step_by(block).for_each(|j0| {
        let nb = block.min(n - j0);
        // SAFETY: the assertion above keeps every access within the slices, and the blocks
        // write disjoint columns j0..j0 + nb of `out`.
        unsafe {
            gemm_block(
                (out_ptr as *mut f32).add(j0),
                ldc,
                a,
                b.as_ptr().add(j0 * k),
                m,
                nb,
                k,
                accumulate,
            )
        }
    });
}

/// One single-threaded `gemm` call: `out (M, N; rows ldc apart) (+)= a (M, K) . b^T`, `b (N, K)`.
///
/// # Safety
/// `out` must hold `(m - 1) * ldc + n` elements, `a` `m * k` and `b` `n * k`.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_block(
    out: *mut f32,
    ldc: usize,
    a: &[f32],
    b: *const f32,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if m <= super::dot_avx512::MAX_ROWS && super::dot_avx512::available() {
        // SAFETY: the CPU has AVX-512F; the operand sizes are the caller's contract.
        return unsafe { super::dot_avx512::gemm_nt(out, ldc, a.as_ptr(), b, m, n, k, accumulate) };
    }
    // Strides describe row-major a (M, K), column access of b (N, K) as (K, N), and row-major
    // out (M, N).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            1,
            ldc as isize,
            accumulate,
            a.as_ptr(),
            1,
            k as isize,
            b,
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Rows of a half-precision weight widened to f32 at a time (256 x 5120 f32 = 5 MiB).
#[cfg(not(target_arch = "wasm32"))]
pub(super) const WIDEN_ROWS: usize = 256;

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    /// The reused f32 block of [`linear`] for half-precision weights.
    static WIDEN: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What a product does with `z = x W^T + b` (the GPU path's `gpu::pass::Epilogue`). Natively on
/// AVX-512 the packed kernel does it as it stores each tile; elsewhere a pass follows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Epilogue {
    /// y = z
    Store,
    /// y = gelu(z), the exact (erf) GELU
    Gelu,
    /// y = quick_gelu(z) = z sigmoid(1.702 z)
    QuickGelu,
    /// y = y + z (the residual stream)
    Residual,
}

/// `y (M, out) = x (M, in) W^T + b` ([`linear_into`] with [`Epilogue::Store`]).
pub(crate) fn linear(x: &[f32], m: usize, l: &Linear) -> Vec<f32> {
    let mut y = Vec::new();
    linear_into(&mut y, x, m, l, Epilogue::Store);
    y
}

/// `y (M, out) = epilogue(x (M, in) W^T + b)`: Store and the activations make `y` hold M * out
/// values (reusing its allocation natively on AVX-512), Residual adds to the M * out it holds.
///
/// Natively on AVX-512 our packed kernel on W packed at load, the epilogue fused into its
/// stores; elsewhere natively the `gemm` crate (threads), half-precision W widened block by block
/// into a reused buffer so a product never allocates a full f32 copy of its weight (fc1 of
/// CLIP-H: 26 MB); on wasm32 the packed SIMD128 product of `sgemm`, which widens W as it packs
/// it. There a pass over y does the epilogue.
pub(crate) fn linear_into(y: &mut Vec<f32>, x: &[f32], m: usize, l: &Linear, epilogue: Epilogue) {
    let (n, k) = (l.out_features, l.in_features);
    assert!(
        x.len() >= m * k && (epilogue != Epilogue::Residual || y.len() == m * n),
        "linear: operand sizes"
    );
    #[cfg(target_arch = "x86_64")]
    if let (Matrix::Packed(w), true) = (&l.weight, k > 0) {
        if epilogue != Epilogue::Residual {
            // Every value is overwritten; the zeros only keep the Vec initialized.
            y.clear();
            y.resize(m * n, 0.0);
        }
        return packed_linear(y, x, m, w, l.bias.as_deref(), epilogue);
    }
    let mut z = product(x, m, l);
    match epilogue {
        Epilogue::Store => {}
        Epilogue::Gelu => super::pointwise::gelu(&mut z),
        Epilogue::QuickGelu => super::pointwise::quick_gelu(&mut z),
        Epilogue::Residual => return super::pointwise::add(y, &z),
    }
    *y = z;
}

/// `z (M, out) = x (M, in) W^T + b` off the packed path (see [`linear_into`]).
fn product(x: &[f32], m: usize, l: &Linear) -> Vec<f32> {
    let (n, k) = (l.out_features, l.in_features);
    let mut z = match &l.bias {
        Some(b) => b.repeat(m),
        None => vec![0.0; m * n],
    };
    #[cfg(target_arch = "wasm32")]
    {
        use super::sgemm::{gemm_acc, Rows};
        let rows = match &l.weight {
            Matrix::F32(w) => Rows::F32(w),
            Matrix::F16(w) => Rows::F16(w),
            Matrix::BF16(w) => Rows::BF16(w),
        };
        gemm_acc(&mut z, x, rows, m, n, k);
    }
    #[cfg(not(target_arch = "wasm32"))]
    match &l.weight {
        Matrix::F32(w) => gemm_nt(&mut z, x, w, m, n, k, true, true),
        #[cfg(target_arch = "x86_64")]
        Matrix::Packed(_) => {} // k = 0: z = b
        half => WIDEN.with(|buf| {
            let mut buf = buf.borrow_mut();
            for j0 in (0..n).step_by(WIDEN_ROWS) {
                let nb = WIDEN_ROWS.min(n - j0);
                buf.resize(nb * k, 0.0);
                half.read_into(j0 * k, &mut buf[..nb * k]);
                gemm_nt_ld(&mut z[j0..], n, x, &buf[..nb * k], m, nb, k, true, true);
            }
        }),
    }
    z
}

/// [`linear_into`] on packed W (k > 0): x rearranged once, the product split into parts over
/// the threads.
#[cfg(target_arch = "x86_64")]
fn packed_linear(
    y: &mut [f32],
    x: &[f32],
    m: usize,
    w: &super::packed_avx512::Packed,
    bias: Option<&[f32]>,
    epilogue: Epilogue,
) {
    use super::packed_avx512::{pack_rows, Act, Finish};
    let finish = Finish {
        bias,
        residual: epilogue == Epilogue::Residual,
        act: match epilogue {
            Epilogue::Gelu => Act::Gelu,
            Epilogue::QuickGelu => Act::QuickGelu,
            Epilogue::Store | Epilogue::Residual => Act::None,
        },
    };
    // The kernel's bounds (unsafe code): y, x and the bias as W's packed shape says.
    assert!(
        y.len() == m * w.n() && x.len() >= m * w.k() && bias.is_none_or(|b| b.len() == w.n()),
        "linear: operand sizes"
    );
    // The rearranged x in a buffer reused across products; a fresh one if this thread's is
    // in use (a product started from within another's threads).
    PACKED_ROWS.with(|rows| match rows.try_borrow_mut() {
        Ok(mut a) => {
            pack_rows(x, m, w.k(), &mut a);
            packed_acc_on(y, &a, m, w, finish)
        }
        Err(_) => {
            let mut a = Vec::new();
            pack_rows(x, m, w.k(), &mut a);
            packed_acc_on(y, &a, m, w, finish)
        }
    })
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// The reused rearranged x of [`packed_linear`].
    static PACKED_ROWS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`packed_linear`] on x rearranged by `pack_rows`.
#[cfg(target_arch = "x86_64")]
fn packed_acc_on(
    y: &mut [f32],
    x: &[f32],
    m: usize,
    w: &super::packed_avx512::Packed,
    finish: super::packed_avx512::Finish,
) {
    use super::packed_avx512::{gemm_acc, parts};
    let (n, k) = (w.n(), w.k());
    let threads = if m * n * k > 1 << 16 {
        super::threads::count()
    } else {
        1
    };
    let y_ptr = y.as_mut_ptr() as usize;
    let run = |part| {
        // SAFETY: the CPU has AVX-512F (a Packed matrix exists only then); y holds M * N values
        // and a bias N (packed_linear's assertion), x is pack_rows' output for M rows of K,
        // k > 0; parts write disjoint blocks (their rows and panels) of y.
        unsafe { gemm_acc(y_ptr as *mut f32, n, x.as_ptr(), m, part, w, finish) }
    };
    let parts = parts(m, n, threads);
    if threads <= 1 || parts.len() <= 1 {
        parts.into_iter().for_each(run);
    } else {
        use rayon::prelude::*;
        parts.into_par_iter().for_each(run);
    }
}

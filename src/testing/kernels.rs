//! Every GPU kernel against a plain CPU reference (f64 accumulation) on seeded, awkward
//! shapes, through the recorder as the forward uses it; both kernel families on every adapter.

use super::{rand, run, upload, TestGpu};
use crate::gpu::{
    pack_rows, row_words, Epilogue, Gpu, GpuLayerNorm, GpuLinear, KernelFamily, Pass,
};

/// Matmul: f32 accumulation of K products in the kernel vs f64 in the reference. The rounding
/// error of a K-term sum is about sqrt(K) eps of the sum of |terms| (random walk); 4x margin.
fn matmul_tol(k: usize, abs_sum: f64) -> f64 {
    4.0 * (k as f64).sqrt() * f32::EPSILON as f64 * abs_sum + 1e-6
}
/// LayerNorm, attention, embeddings: a few f32 roundings of O(1) values.
const KERNEL_ABS: f64 = 2e-5;
/// The erf approximation (A&S 7.1.26, 1.5e-7 exact) evaluated in f32: the contract.
const ERF_ABS: f64 = 1e-6;

fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

fn gelu64(v: f64) -> f64 {
    0.5 * v * (1.0 + libm::erf(v * std::f64::consts::FRAC_1_SQRT_2))
}

#[allow(clippy::too_many_arguments)]
async fn check_matmul(
    gpu: &Gpu,
    family: KernelFamily,
    m: usize,
    n: usize,
    k: usize,
    f16: bool,
    bias: bool,
    epi: Epilogue,
    seed: u64,
) -> String {
    let x = rand(m * k, seed, 1.0);
    let w = rand(n * k, seed + 1, 1.0);
    let b = rand(n, seed + 2, 1.0);
    let y0 = rand(m * n, seed + 3, 1.0);
    let lin = GpuLinear::from_f32(gpu, &w, bias.then_some(&b[..]), n, k, f16).unwrap();
    let (xb, yb) = (upload(gpu, &x), upload(gpu, &y0));
    let mut pass = Pass::with_family(gpu, family);
    pass.linear("test", &lin, &xb, &yb, m, epi);
    let got = run(gpu, pass, &yb, m * n).await;
    let we = if f16 { f16_round(&w) } else { w.clone() };
    let mut worst = 0.0f64;
    for i in 0..m {
        for j in 0..n {
            let (mut acc, mut abs) = (0.0f64, 0.0f64);
            for kk in 0..k {
                let t = x[i * k + kk] as f64 * we[j * k + kk] as f64;
                acc += t;
                abs += t.abs();
            }
            if bias {
                acc += b[j] as f64;
                abs += (b[j] as f64).abs();
            }
            let want = match epi {
                Epilogue::Store => acc,
                Epilogue::Gelu => gelu64(acc),
                Epilogue::QuickGelu => acc / (1.0 + (-1.702 * acc).exp()),
                Epilogue::Residual => acc + y0[i * n + j] as f64,
            };
            let tol = matmul_tol(k, abs) + ERF_ABS * (1.0 + want.abs());
            let d = (got[i * n + j] as f64 - want).abs();
            worst = worst.max(d / tol);
            assert!(
                d <= tol,
                "matmul {m}x{n}x{k} f16={f16} {epi:?}: y[{i},{j}] = {} vs {want} (|diff| {d:.3e} > {tol:.3e})",
                got[i * n + j]
            );
        }
    }
    format!("matmul {m}x{n}x{k} f16={f16} bias={bias} {epi:?} {family:?}: worst |diff| / tol = {worst:.3}")
}

pub async fn matmul(g: &TestGpu) -> String {
    let g = &g.0;
    let mut out = Vec::new();
    // (M, N, K, f16, bias, epilogue): ViT-H rows (257) with K = 1280 and K = 5120 but few
    // columns, to keep software adapters quick; odd K (packed pad half), N and M not tile
    // multiples, no bias, both activations. Row counts cover every tiling: 64-row tiles plus
    // 16-row tiles for the rest (257, 77, 65), 16-row tiles only (3, 1), 64-row tiles only
    // (128 exact, 50 and 120 with a remainder over 48); K % 8 == 0 and K % 4 == 0 reach the
    // CPU adapters' kernels (f16 and f32), other K fall back to the tiled ones. Both families
    // run on every adapter.
    for (i, (m, n, kk, f16, bias, epi)) in [
        (257, 70, 1280, true, true, Epilogue::Store),
        (257, 33, 5120, true, true, Epilogue::Residual),
        (257, 70, 1280, false, true, Epilogue::Gelu),
        (77, 130, 67, true, false, Epilogue::QuickGelu),
        (65, 129, 33, false, false, Epilogue::QuickGelu),
        (3, 5, 1, true, true, Epilogue::Gelu),
        (1, 1, 15, false, true, Epilogue::Residual),
        (128, 65, 40, true, true, Epilogue::Residual),
        (50, 64, 24, false, true, Epilogue::Store),
        (120, 3, 31, true, false, Epilogue::Gelu),
        (77, 100, 1024, true, true, Epilogue::QuickGelu),
        (9, 70, 20, false, true, Epilogue::Residual),
        (17, 66, 24, true, false, Epilogue::Store),
    ]
    .into_iter()
    .enumerate()
    {
        for family in [KernelFamily::Tiled, KernelFamily::CpuAdapter] {
            out.push(check_matmul(g, family, m, n, kk, f16, bias, epi, i as u64 + 1).await);
        }
    }
    out.join("\n")
}

/// The GELU epilogue on the device over a dense grid: y = gelu(x . 1) with K = 1.
pub async fn gelu(g: &TestGpu) -> String {
    let g = &g.0;
    let m = 40_001;
    let x: Vec<f32> = (0..m).map(|i| (i as f32 - 20_000.0) * 5e-4).collect(); // [-10, 10]
    let lin = GpuLinear::from_f32(g, &[1.0], None, 1, 1, false).unwrap();
    let (xb, yb) = (upload(g, &x), g.storage("y", (m * 4) as u64).unwrap());
    let mut pass = Pass::new(g);
    pass.linear("gelu", &lin, &xb, &yb, m, Epilogue::Gelu);
    let got = run(g, pass, &yb, m).await;
    let mut worst = 0.0f64;
    for (i, &v) in x.iter().enumerate() {
        // 0.5 x erf error plus f32 rounding of the result
        let want = gelu64(v as f64);
        let d = (got[i] as f64 - want).abs();
        let tol = 0.5 * (v as f64).abs() * ERF_ABS + 2.0 * f32::EPSILON as f64 * want.abs() + 1e-7;
        worst = worst.max(d);
        assert!(d <= tol, "gelu({v}) = {} vs {want}", got[i]);
    }
    format!("device gelu: max |diff| {worst:.3e}")
}

pub async fn layer_norm(g: &TestGpu) -> String {
    let g = &g.0;
    let mut worst = 0.0f64;
    for (rows, d, eps, seed) in [
        (257usize, 1280usize, 1e-5f32, 10u64),
        (13, 42, 1e-6, 11),
        (5, 30, 1e-5, 12),
        (2, 1, 1e-5, 13),
    ] {
        // A large mean, as in CLIP's residual stream, exercises the two-pass variance.
        let x: Vec<f32> = rand(rows * d, seed, 3.0).iter().map(|v| v + 50.0).collect();
        let (w, b) = (rand(d, seed + 1, 1.0), rand(d, seed + 2, 1.0));
        let ln = GpuLayerNorm::from_f32(g, &w, &b).unwrap();
        let (xb, yb) = (
            upload(g, &x),
            g.storage("y", (rows * d * 4) as u64).unwrap(),
        );
        let mut pass = Pass::new(g);
        pass.layer_norm("ln", &ln, &xb, &yb, rows, d, eps);
        let got = run(g, pass, &yb, rows * d).await;
        let want = crate::cpu::layer_norm(
            &x,
            &crate::cpu::LayerNorm {
                weight: w.clone(),
                bias: b.clone(),
            },
            eps,
        );
        for i in 0..rows * d {
            let dd = (got[i] as f64 - want[i] as f64).abs();
            worst = worst.max(dd);
            assert!(
                dd <= KERNEL_ABS * (1.0 + want[i].abs() as f64),
                "ln {rows}x{d}: [{i}] {} vs {}",
                got[i],
                want[i]
            );
        }
    }
    format!("layer norm: 4 shapes, max |diff| {worst:.3e}")
}

fn attention_ref(qkv: &[f32], b: usize, t: usize, d: usize, h: usize, causal: bool) -> Vec<f32> {
    let dh = d / h;
    let scale = (dh as f64).powf(-0.5);
    let mut out = vec![0.0f32; b * t * d];
    for s in 0..b {
        for hd in 0..h {
            for i in 0..t {
                let q = &qkv[(s * t + i) * 3 * d + hd * dh..][..dh];
                let keys = if causal { i + 1 } else { t };
                let sc: Vec<f64> = (0..keys)
                    .map(|j| {
                        let k = &qkv[(s * t + j) * 3 * d + d + hd * dh..][..dh];
                        q.iter()
                            .zip(k)
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let mx = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = sc.iter().map(|v| (v - mx).exp()).collect();
                let sum: f64 = e.iter().sum();
                for c in 0..dh {
                    let v: f64 = (0..keys)
                        .map(|j| e[j] * qkv[(s * t + j) * 3 * d + 2 * d + hd * dh + c] as f64)
                        .sum();
                    out[(s * t + i) * d + hd * dh + c] = (v / sum) as f32;
                }
            }
        }
    }
    out
}

pub async fn attention(g: &TestGpu) -> String {
    let g = &g.0;
    let mut worst = 0.0f64;
    // (B, T, D, H, causal): ViT-H's 16 heads of 80, text heads of 64, the odd fixture's 14
    // and 15, batch > 1, a sequence over two tiles with the causal mask.
    for (b, t, d, h, causal, seed) in [
        (2usize, 257usize, 1280usize, 16usize, false, 20u64),
        (3, 77, 128, 2, true, 21),
        (1, 130, 64, 1, true, 25),
        (2, 17, 42, 3, false, 22),
        (3, 9, 30, 2, true, 23),
        (1, 1, 8, 1, true, 24),
    ] {
        let qkv = rand(b * t * 3 * d, seed, 2.0);
        let qb = upload(g, &qkv);
        let want = attention_ref(&qkv, b, t, d, h, causal);
        for family in [KernelFamily::Tiled, KernelFamily::CpuAdapter] {
            // Fresh (zeroed) outputs: nothing left over from the other kernel family.
            let cb = g.storage("ctx", (b * t * d * 4) as u64).unwrap();
            let sb = g.storage("scores", (b * h * t * t * 4) as u64).unwrap();
            let mut pass = Pass::with_family(g, family);
            pass.attention(&qb, &sb, &cb, b, t, d, h, causal);
            let got = run(g, pass, &cb, b * t * d).await;
            for i in 0..got.len() {
                let dd = (got[i] as f64 - want[i] as f64).abs();
                worst = worst.max(dd);
                assert!(
                    dd <= KERNEL_ABS * (1.0 + want[i].abs() as f64),
                    "attention b{b} t{t} d{d} h{h} causal {causal} {family:?}: [{i}] {} vs {}",
                    got[i],
                    want[i]
                );
            }
        }
    }
    format!("attention: 6 shapes, both kernel families, max |diff| {worst:.3e}")
}

pub async fn vision_embeddings(g: &TestGpu) -> String {
    let g = &g.0;
    let mut worst = 0.0f64;
    let (b, s, p, d) = (2usize, 36usize, 6usize, 42usize);
    let (gr, kk) = (s / p, 3 * p * p);
    let (n, t) = (gr * gr, gr * gr + 1);
    let pixels = rand(b * 3 * s * s, 30, 2.0);
    let w = rand(d * kk, 31, 0.1);
    let class = rand(d, 32, 1.0);
    let pos = rand(t * d, 33, 1.0);
    let lin = GpuLinear::from_f32(g, &w, None, d, kk, false).unwrap();
    let pix = upload(g, &pixels);
    let patches = g.storage("patches", (b * n * kk * 4) as u64).unwrap();
    let pe = g.storage("pe", (b * n * d * 4) as u64).unwrap();
    let x = g.storage("x", (b * t * d * 4) as u64).unwrap();
    let (cb, pb) = (upload(g, &class), upload(g, &pos));
    let mut pass = Pass::new(g);
    pass.im2col(&pix, &patches, b, s, p);
    pass.linear("patch", &lin, &patches, &pe, b * n, Epilogue::Store);
    pass.vision_embed(&pe, &cb, &pb, &x, b, t, d);
    let got = run(g, pass, &x, b * t * d).await;
    for img in 0..b {
        for r in 0..t {
            for c in 0..d {
                let want = if r == 0 {
                    class[c] as f64
                } else {
                    let (gy, gx) = ((r - 1) / gr, (r - 1) % gr);
                    let mut acc = 0.0f64;
                    for ch in 0..3 {
                        for ky in 0..p {
                            for kx in 0..p {
                                let px = pixels
                                    [((img * 3 + ch) * s + gy * p + ky) * s + gx * p + kx]
                                    as f64;
                                acc += px * w[c * kk + (ch * p + ky) * p + kx] as f64;
                            }
                        }
                    }
                    acc
                } + pos[r * d + c] as f64;
                let v = got[(img * t + r) * d + c] as f64;
                worst = worst.max((v - want).abs());
                assert!(
                    (v - want).abs() <= KERNEL_ABS * (1.0 + want.abs()),
                    "vision embed [{img},{r},{c}] {v} vs {want}"
                );
            }
        }
    }
    format!("vision embeddings: max |diff| {worst:.3e}")
}

pub async fn text_embed_and_pooling(g: &TestGpu) -> String {
    let g = &g.0;
    let mut worst = 0.0f32;
    let (b, t, d) = (2usize, 5usize, 7usize); // odd D: f16 rows padded to 4 words
    let rows = rand(b * t * d, 40, 1.0);
    let pos = rand(t * d, 41, 1.0);
    let pb = upload(g, &pos);
    for f16 in [true, false] {
        let packed = pack_rows(&rows, d, f16);
        let rb = g.upload("rows", bytemuck::cast_slice(&packed)).unwrap();
        let x = g.storage("x", (b * t * d * 4) as u64).unwrap();
        let index = g
            .upload("index", bytemuck::cast_slice(&[3u32, 5 + 4]))
            .unwrap();
        let out = g.storage("out", (2 * d * 4) as u64).unwrap();
        let mut pass = Pass::new(g);
        pass.text_embed(&rb, f16, row_words(d, f16), &pb, &x, b, t, d);
        pass.gather_rows(&x, &index, &out, 2, d);
        let got = run(g, pass, &out, 2 * d).await;
        let rv = if f16 { f16_round(&rows) } else { rows.clone() };
        for (k, row) in [3usize, 9].iter().enumerate() {
            for c in 0..d {
                let want = rv[row * d + c] + pos[(row % t) * d + c];
                worst = worst.max((got[k * d + c] - want).abs());
                assert!(
                    (got[k * d + c] - want).abs() <= 1e-6,
                    "text embed f16={f16} row {row} col {c}: {} vs {want}",
                    got[k * d + c]
                );
            }
        }
    }
    format!("text embeddings and pooling: max |diff| {worst:.3e}")
}

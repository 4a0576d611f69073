//! Where a ViT-H/14 vision layer's time goes on the native CPU path, stage by stage (the
//! browser's figure is `tests/wasm_gpu.rs`'s `bench_cpu_vision_layer_stages`), and each CLIP-H
//! product on the packed AVX-512 kernels and on the `gemm` crate side by side:
//!
//!     cargo run --release --features selftest --example cpu_layer_profile [f16] [batch N]
//!
//! `SCISCORE_CPU_MATMUL=gemm` runs the layer's products on the `gemm` crate.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let f16 = args.iter().any(|a| a == "f16");
    let batch = match args.iter().position(|a| a == "batch") {
        Some(i) => match args.get(i + 1).and_then(|n| n.parse::<usize>().ok()) {
            Some(n @ 1..=64) => n,
            _ => {
                eprintln!("batch: give a number of images from 1 to 64");
                std::process::exit(2);
            }
        },
        None => 1,
    };
    let t0 = std::time::Instant::now();
    let now = || t0.elapsed().as_secs_f64() * 1e3;
    let stages = sciscore::selftest::cpu_layer_profile(&now, f16, batch);
    let weights = if f16 { "f16" } else { "f32" };
    println!("ViT-H/14 vision layer, {batch} image(s), weights {weights}, best of 3 (ms):");
    for (stage, ms) in stages {
        println!("{stage:40} {ms:8.1}");
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // (M, K, N): a vision q/k/v/out projection, fc1, fc2 (one image, four); the text tower's fc1
    // at 77 and 12 tokens.
    let shapes = [
        (257, 1280, 1280),
        (257, 1280, 5120),
        (257, 5120, 1280),
        (1028, 1280, 5120), // fc1 and fc2 at batch 4
        (1028, 5120, 1280),
        (77, 1024, 4096),
        (12, 1024, 4096),
    ];
    for t in [1, threads] {
        println!("products, f32 W, {t} thread(s), best of 30:");
        for shape in shapes {
            for (path, ms, gflops) in sciscore::selftest::cpu_linear_timing(shape, 30, t) {
                let (m, k, n) = shape;
                println!("  {m:4} x {k:4} -> {n:4}  {path:11} {ms:7.2} ms {gflops:6.1} GFLOP/s");
            }
        }
    }
}

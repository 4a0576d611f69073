//! The GPU kernels against their CPU references natively (lavapipe in CI): the checks of
//! `crate::testing` on the default device and on the same adapter without optional features,
//! and the two W-tile types of the tiled matmul against each other.
//!
//! Without an adapter a test prints a skip line and passes, unless SCISCORE_REQUIRE_GPU=1
//! (CI with lavapipe), where it fails.

use super::{Epilogue, GpuLinear, KernelFamily, Pass};
use crate::testing::devices::{gpu, gpu_core};
use crate::testing::{self, rand, upload};

#[test]
fn matmul_matches_reference_on_awkward_shapes() {
    let Some(g) = gpu() else { return };
    eprintln!("{}", pollster::block_on(testing::matmul(g)));
}

#[test]
fn gelu_on_device_matches_f64() {
    let Some(g) = gpu() else { return };
    eprintln!("{}", pollster::block_on(testing::gelu(g)));
}

#[test]
fn layer_norm_matches_reference() {
    let Some(g) = gpu() else { return };
    eprintln!("{}", pollster::block_on(testing::layer_norm(g)));
}

#[test]
fn attention_matches_reference() {
    let Some(g) = gpu() else { return };
    eprintln!("{}", pollster::block_on(testing::attention(g)));
}

#[test]
fn optional_features_are_used_where_the_adapter_has_them() {
    let Some(g) = gpu() else { return };
    eprintln!("default device: {}", g.info());
    // lavapipe has subgroups and shader-f16: CI (SCISCORE_REQUIRE_GPU=1) must exercise
    // reduce_subgroups.wgsl and wtile_f16.wgsl.
    if g.info().contains("llvmpipe") && std::env::var("SCISCORE_REQUIRE_GPU").as_deref() == Ok("1")
    {
        assert!(g.0.subgroups(), "lavapipe offers subgroups: {}", g.info());
        assert!(g.0.shader_f16(), "lavapipe offers shader-f16: {}", g.info());
    }
    let core = gpu_core().unwrap();
    assert!(
        !core.0.subgroups() && !core.0.shader_f16(),
        "{}",
        core.info()
    );
}

#[test]
fn matmul_matches_reference_without_optional_features() {
    let Some(g) = gpu_core() else { return };
    eprintln!("{}", pollster::block_on(testing::matmul(g)));
}

/// The tiled matmul with f16 weight tiles (`wtile_f16.wgsl`) gives the products of the f32
/// tiles (`wtile_f32.wgsl`) bit for bit: the weights are f16 either way, and both widen them
/// to f32 before the same FMAs in the same order.
#[test]
fn f16_weight_tiles_give_the_f32_tiles_products_bit_for_bit() {
    let (Some(g), Some(core)) = (gpu(), gpu_core()) else {
        return;
    };
    if !g.0.shader_f16() {
        eprintln!("skipping: {} has no shader-f16", g.info());
        return;
    }
    // 257 rows (64-row and 16-row tiles), K = 1280, an odd K (the pad half), N off the tile.
    for (m, n, k, epi) in [
        (257usize, 70usize, 1280usize, Epilogue::Gelu),
        (77, 130, 67, Epilogue::Residual),
        (3, 5, 1, Epilogue::Store),
    ] {
        let x = rand(m * k, 31, 2.0);
        let w = rand(n * k, 32, 1.0);
        let b = rand(n, 33, 1.0);
        let y0 = rand(m * n, 34, 1.0);
        let outs: Vec<Vec<f32>> = [&g.0, &core.0]
            .iter()
            .map(|dev| {
                let lin = GpuLinear::from_f32(dev, &w, Some(&b), n, k, true).unwrap();
                let (xb, yb) = (upload(dev, &x), upload(dev, &y0));
                let mut pass = Pass::with_family(dev, KernelFamily::Tiled);
                pass.linear("test", &lin, &xb, &yb, m, epi);
                let mut enc = dev.device.create_command_encoder(&Default::default());
                pass.encode(&mut enc).unwrap();
                pollster::block_on(dev.submit_and_read(enc, &yb, m * n)).unwrap()
            })
            .collect();
        let differ = outs[0]
            .iter()
            .zip(&outs[1])
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "{m}x{n}x{k}: {differ} outputs differ");
    }
}

#[test]
fn layer_norm_matches_reference_without_subgroups() {
    let Some(g) = gpu_core() else { return };
    eprintln!("{}", pollster::block_on(testing::layer_norm(g)));
}

#[test]
fn attention_matches_reference_without_subgroups() {
    let Some(g) = gpu_core() else { return };
    eprintln!("{}", pollster::block_on(testing::attention(g)));
}

#[test]
fn vision_embeddings_match_reference() {
    let Some(g) = gpu() else { return };
    eprintln!("{}", pollster::block_on(testing::vision_embeddings(g)));
}

#[test]
fn text_embed_and_pooling_match_reference() {
    let Some(g) = gpu() else { return };
    eprintln!("{}", pollster::block_on(testing::text_embed_and_pooling(g)));
}

// The f16-weight tiles of matmul.wgsl on devices without `shader-f16` (the core WebGPU path):
// W pairs widened to f32 by `unpack2x16float` as the tile is loaded, an f32 tile (4 KiB).
// The host puts this file (or wtile_f16.wgsl) in front of matmul.wgsl.

alias WPair16 = vec2<f32>;
alias WTile16 = vec4<f32>;

fn unpack_pair16(u: u32) -> WPair16 {
    return unpack2x16float(u);
}

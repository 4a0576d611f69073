enable f16;

// The f16-weight tiles of matmul.wgsl on devices with `shader-f16`: the tile holds f16 (2 KiB
// instead of 4 KiB). The packed pair goes through f32 on the way in, exactly (naga 30 types
// `bitcast<vec2<f16>>(u32)` wrongly, so no reinterpretation); a load serves 64 FMAs. The
// product widens each W vector to f32 as it reads it, so products and sums are the f32
// ones of wtile_f32.wgsl, bit for bit. The host puts this file (or wtile_f32.wgsl) in front of
// matmul.wgsl.

alias WPair16 = vec2<f16>;
alias WTile16 = vec4<f16>;

fn unpack_pair16(u: u32) -> WPair16 {
    return vec2<f16>(unpack2x16float(u));
}

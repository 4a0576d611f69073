// Pooling: out[b] = x[index[b]], the EOS row of each prompt (text) or the class token of each
// image (vision). The final / post LayerNorm and the projection run on these rows only
// (LayerNorm is row-wise, so normalizing after the gather is the same as before it).

struct Params {
    rows: u32, // B
    d: u32,    // width D
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // (B*T, D) f32
@group(0) @binding(2) var<storage, read> index: array<u32>;      // (B,) u32 rows of x
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // (B, D) f32

// Dispatch (ceil(B * D / 256), 1, 1).
@compute @workgroup_size(256)
fn gather_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.rows * p.d) {
        return;
    }
    let b = i / p.d;
    let c = i % p.d;
    out[i] = x[index[b] * p.d + c];
}

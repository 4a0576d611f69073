// Embeddings: the input of each encoder.
//
// Vision: the patch conv (stride = kernel = p) is an im2col followed by a matmul with the conv
// weight viewed as (D, 3 p p); then `vision_embed` puts the class token in front and adds the
// position embedding. Text: the rows of the token-embedding table are gathered by buffer copies
// (the table can be larger than one storage binding may be, 202 MB in f32 for CLIP-H), then
// `text_embed_*` widens them to f32 and adds the position embedding.
//
// Every entry is element-wise: dispatch (min(G, 65535), ceil(G / 65535), 1) workgroups of 256
// with G = ceil(total / 256); the linear index is rebuilt from the grid.

struct Params {
    total: u32, // elements to write
    t: u32,     // tokens per sequence (vision: 1 + grid^2)
    d: u32,     // width D
    s: u32,     // image side S
    psize: u32, // patch side p
    grid: u32,  // patches per side S / p
    ldr: u32,   // text_embed_f16: row stride of `rows16` in u32 words, ceil(D / 2)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pixels: array<f32>;          // (B, 3, S, S) f32
@group(0) @binding(2) var<storage, read_write> patches: array<f32>;   // (B*N, 3*p*p) f32, N = grid^2
@group(0) @binding(3) var<storage, read> patch_embeds: array<f32>;    // (B*N, D) f32
@group(0) @binding(4) var<storage, read> class_embedding: array<f32>; // (D,) f32
@group(0) @binding(5) var<storage, read> positions: array<f32>;       // (T_max, D) f32
@group(0) @binding(6) var<storage, read_write> out: array<f32>;       // (B*T, D) f32
@group(0) @binding(7) var<storage, read> rows16: array<u32>;          // (B*T, ldr) f16 pairs
@group(0) @binding(8) var<storage, read> rows32: array<f32>;          // (B*T, D) f32

fn linear_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * 256u + lid;
}

// patches[(b N + gy grid + gx), (c p + ky) p + kx] = pixels[b, c, gy p + ky, gx p + kx]
@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let kk = 3u * p.psize * p.psize;
    let row = i / kk;
    let col = i % kk;
    let n = p.grid * p.grid;
    let img = row / n;
    let gy = (row % n) / p.grid;
    let gx = row % p.grid;
    let c = col / (p.psize * p.psize);
    let ky = (col / p.psize) % p.psize;
    let kx = col % p.psize;
    patches[i] = pixels[((img * 3u + c) * p.s + gy * p.psize + ky) * p.s + gx * p.psize + kx];
}

// out[b, r] = (r == 0 ? class_embedding : patch_embeds[b, r - 1]) + positions[r]
@compute @workgroup_size(256)
fn vision_embed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let c = i % p.d;
    let tok = i / p.d;
    let img = tok / p.t;
    let r = tok % p.t;
    var v = 0.0;
    if (r == 0u) {
        v = class_embedding[c];
    } else {
        v = patch_embeds[(img * (p.t - 1u) + r - 1u) * p.d + c];
    }
    out[i] = v + positions[r * p.d + c];
}

// out[b, r] = f32(rows16[b, r]) + positions[r]
@compute @workgroup_size(256)
fn text_embed_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let c = i % p.d;
    let tok = i / p.d;
    let pair = unpack2x16float(rows16[tok * p.ldr + c / 2u]);
    out[i] = select(pair.x, pair.y, (c & 1u) == 1u) + positions[(tok % p.t) * p.d + c];
}

// out[b, r] = rows32[b, r] + positions[r]
@compute @workgroup_size(256)
fn text_embed_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let c = i % p.d;
    let tok = i / p.d;
    out[i] = rows32[i] + positions[(tok % p.t) * p.d + c];
}

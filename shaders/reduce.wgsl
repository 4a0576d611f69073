// Workgroup reductions (sum, max) of one f32 per invocation, for the row statistics of
// layernorm.wgsl and attention.wgsl's softmax. The host puts this file in front of those two
// when the device has no `subgroups` feature, and reduce_subgroups.wgsl (same `Lanes`, same
// functions) when it has; the including file defines `WG`, its workgroup size (a power of two).
// Callers must be in workgroup-uniform control flow (barriers).
//
// A tree in workgroup memory: log2(WG) + 2 barriers per reduction.

struct Lanes {
    @builtin(local_invocation_index) lid: u32,
}

var<workgroup> red: array<f32, WG>;

fn reduce_tree(lid: u32, v: f32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            if (is_max) {
                red[lid] = max(red[lid], red[lid + s]);
            } else {
                red[lid] = red[lid] + red[lid + s];
            }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(l: Lanes, v: f32) -> f32 {
    return reduce_tree(l.lid, v, false);
}

fn reduce_max(l: Lanes, v: f32) -> f32 {
    return reduce_tree(l.lid, v, true);
}

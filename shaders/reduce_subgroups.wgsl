// reduce.wgsl's workgroup reductions with subgroup operations, for devices with the
// `subgroups` feature. Native only: wgpu 30 does not offer the feature on the web backend, and
// naga takes subgroup builtins without the `enable subgroups;` that Tint would require (naga
// rejects that directive as not yet implemented), so this file has none. Each subgroup
// reduces in registers and its first lane writes the result to slot `subgroup_id`; then every
// subgroup reduces those slots the same way (lane i takes slots i, i + size, ...), so all
// invocations get the same, deterministic result. Two barriers per reduction instead of
// log2(WG) + 2. The loops run uniformly (bounds from uniform builtins) so that the subgroup
// operations after them see every lane. The including file defines `WG`.

struct Lanes {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) size: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) count: u32,
}

// One slot per subgroup (at most WG of them).
var<workgroup> red: array<f32, WG>;

// v reduced over the subgroup; `is_max` is the same for every caller lane (uniform).
fn subgroup_reduce(v: f32, is_max: bool) -> f32 {
    if (is_max) {
        return subgroupMax(v);
    }
    return subgroupAdd(v);
}

fn reduce_sg(l: Lanes, v: f32, is_max: bool) -> f32 {
    let s = subgroup_reduce(v, is_max);
    // The previous reduction's readers are done with `red`.
    workgroupBarrier();
    if (l.lane == 0u) {
        red[l.sg] = s;
    }
    workgroupBarrier();
    // Lanes past the last slot contribute the first slot's value: neutral for max, and zero
    // for the sum.
    var t = select(0.0, red[0], is_max);
    for (var j = 0u; j < l.count; j = j + l.size) {
        if (j + l.lane < l.count) {
            let r = red[j + l.lane];
            t = select(t + r, max(t, r), is_max);
        }
    }
    return subgroup_reduce(t, is_max);
}

fn reduce_sum(l: Lanes, v: f32) -> f32 {
    return reduce_sg(l, v, false);
}

fn reduce_max(l: Lanes, v: f32) -> f32 {
    return reduce_sg(l, v, true);
}

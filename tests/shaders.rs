//! Every kernel module parses and validates with naga (the same front end wgpu uses natively;
//! browsers compile with Tint, whose messages the GPU context reports at run time) exactly as
//! the engine composes it from `shaders/*.wgsl` (`sciscore::shader_modules`), for each set of
//! optional device features: core WebGPU, `subgroups`, `shader-f16` and both. Every file in
//! `shaders/` must be part of some module, so none escapes validation.

use naga::valid::{Capabilities, ShaderStages, SubgroupOperationSet, ValidationFlags, Validator};
use sciscore::{shader_modules, ShaderFeatures};
use std::path::PathBuf;

fn validate(name: &str, src: &str, caps: Capabilities) -> naga::Module {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let mut v = Validator::new(ValidationFlags::all(), caps);
    if caps.contains(Capabilities::SUBGROUP) {
        v.subgroup_stages(ShaderStages::COMPUTE)
            .subgroup_operations(SubgroupOperationSet::all());
    }
    v.validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    module
}

#[test]
fn every_shader_parses_and_validates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders");
    // Core WebGPU without optional features; naga lists the core builtins unpack2x16float & co.
    // as a capability because some GL targets lack them.
    let core = Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    let mut used = std::collections::BTreeSet::new();
    for (subgroups, shader_f16) in [(false, false), (true, false), (false, true), (true, true)] {
        let f = ShaderFeatures {
            subgroups,
            shader_f16,
        };
        let mut caps = core;
        if subgroups {
            caps |= Capabilities::SUBGROUP;
        }
        if shader_f16 {
            caps |= Capabilities::SHADER_FLOAT16;
        }
        let modules = shader_modules(f);
        assert!(modules.len() >= 6, "expected the six kernel files");
        for (label, src) in &modules {
            // Without the feature, its WGSL must not be in the module (the device would reject it).
            assert!(
                shader_f16 || !src.contains("enable f16"),
                "{label} with {f:?}"
            );
            assert!(
                subgroups || !src.contains("subgroupAdd"),
                "{label} with {f:?}"
            );
            if label.contains("wtile_f") {
                assert_eq!(
                    src.starts_with("enable f16;"),
                    shader_f16,
                    "{label} with {f:?}"
                );
            }
            let module = validate(&format!("{label} ({f:?})"), src, caps);
            assert!(!module.entry_points.is_empty(), "{label}: no entry point");
            for ep in &module.entry_points {
                let [x, y, z] = ep.workgroup_size;
                assert!(
                    x * y * z <= 256,
                    "{label}: {} uses {} invocations per workgroup",
                    ep.name,
                    x * y * z
                );
            }
            used.extend(label.split(" + ").map(str::to_string));
        }
        let composed = |part: &str| modules.iter().filter(|(l, _)| l.contains(part)).count();
        assert_eq!(
            composed("reduce"),
            2,
            "layernorm and attention use the reductions"
        );
        assert_eq!(
            composed("matmul_epilogue.wgsl"),
            2,
            "matmul and matmul_direct"
        );
        assert_eq!(composed("wtile_f"), 1, "matmul.wgsl's f16 tiles");
        assert_eq!(composed("tile8x8.wgsl"), 2, "matmul and attention");
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().to_string();
        if file.ends_with(".wgsl") {
            assert!(
                used.contains(&file),
                "shaders/{file} is in no kernel module"
            );
        }
    }
}

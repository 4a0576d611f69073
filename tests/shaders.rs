//! Every `shaders/*.wgsl` parses and validates with naga (the same front end wgpu uses natively;
//! browsers compile with Tint, whose messages the GPU context reports at run time), as the host
//! composes it: a file that calls `reduce_sum` / `reduce_max` is validated behind
//! `reduce.wgsl` with core WebGPU and behind `reduce_subgroups.wgsl` with subgroups.

use naga::valid::{Capabilities, ShaderStages, SubgroupOperationSet, ValidationFlags, Validator};
use std::path::{Path, PathBuf};

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

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

#[test]
fn every_shader_parses_and_validates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders");
    // Core WebGPU without optional features; naga lists the core builtins unpack2x16float & co.
    // as a capability because some GL targets lack them.
    let core = Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    let (tree, subgroups) = (
        read(&dir, "reduce.wgsl"),
        read(&dir, "reduce_subgroups.wgsl"),
    );
    let mut seen = 0;
    let mut composed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") || file.starts_with("reduce") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let module = if src.contains("reduce_sum(") || src.contains("reduce_max(") {
            composed += 1;
            validate(
                &format!("reduce_subgroups.wgsl + {file}"),
                &format!("{subgroups}\n{src}"),
                core | Capabilities::SUBGROUP,
            );
            validate(
                &format!("reduce.wgsl + {file}"),
                &format!("{tree}\n{src}"),
                core,
            )
        } else {
            validate(&file, &src, core)
        };
        assert!(!module.entry_points.is_empty(), "{file}: no entry point");
        for ep in &module.entry_points {
            let [x, y, z] = ep.workgroup_size;
            assert!(
                x * y * z <= 256,
                "{file}: {} uses {} invocations per workgroup",
                ep.name,
                x * y * z
            );
        }
        seen += 1;
    }
    assert!(seen >= 6, "expected the six kernel files, found {seen}");
    assert_eq!(
        composed, 2,
        "layernorm.wgsl and attention.wgsl use the reductions"
    );
}

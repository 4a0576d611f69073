//! Every `shaders/*.wgsl` parses and validates with naga as written (the same front end wgpu
//! uses natively; browsers compile with Tint, whose messages the GPU context reports at run time).

use std::path::PathBuf;

#[test]
fn every_shader_parses_and_validates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        // Core WebGPU without optional features (no shader-f16, no subgroups); naga lists the core
        // builtins unpack2x16float & co. as a capability because some GL targets lack them.
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        assert!(
            !module.entry_points.is_empty(),
            "{}: no entry point",
            path.display()
        );
        for ep in &module.entry_points {
            let [x, y, z] = ep.workgroup_size;
            assert!(
                x * y * z <= 256,
                "{}: {} uses {} invocations per workgroup",
                path.display(),
                ep.name,
                x * y * z
            );
        }
        seen += 1;
    }
    assert!(seen >= 5, "expected the five shader files, found {seen}");
}

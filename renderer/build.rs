//! Compiles the WGSL shaders to SPIR-V at build time (naga, pure Rust: no glslang needed), so a
//! shader error is a build error with file, line and column. `frame.wgsl` (the per-frame block
//! and the pose buffers) is put in front of the shaders that share it; their line numbers in an
//! error then count from the start of `frame.wgsl`.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let read = |path: &str| {
        println!("cargo:rerun-if-changed={path}");
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let frame = read("shaders/frame.wgsl");
    for (name, shared) in [("avatar", true), ("pose", true), ("convert", false)] {
        let path = format!("shaders/{name}.wgsl");
        let own = read(&path);
        let source = if shared { format!("{frame}\n{own}") } else { own };
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}", e.emit_to_string_with_path(&source, &path)));
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}", e.emit_to_string_with_path(&source, &path)));
        let words = naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), None)
            .unwrap_or_else(|e| panic!("{path}: SPIR-V output failed: {e}"));
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        std::fs::write(out.join(format!("{name}.spv")), bytes).expect("write SPIR-V");
    }
}

//! Flowgate's integration tests (`all/`), benchmarks (`benches/`), and the wasm components they
//! use, built from `plugins/` by `build.rs`.

/// Paths of the built plugin and test-guest components.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

pub mod bench;
pub mod cpu;
pub mod daemon;
pub mod receivers;

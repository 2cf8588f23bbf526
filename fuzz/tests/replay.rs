//! Every seed and every input that once crashed or hung a target, replayed on every test run
//! (no fuzzer needed), and a short pseudo-random run per target so a new panic on plain noise
//! shows up even where AFL++ is not installed. The coverage-guided runs are scripts/fuzz.sh.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use emcee_fuzz::TARGETS;

fn corpus(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(kind).join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn the_gltf_seed_is_the_triangle_this_test_builds() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/gltf/triangle.glb");
    if std::env::var_os("EMCEE_WRITE_SEEDS").is_some() {
        std::fs::write(&seed, emcee_avatar_build::glb::triangle()).unwrap();
    }
    assert_eq!(
        std::fs::read(&seed).ok(),
        Some(emcee_avatar_build::glb::triangle()),
        "run once with EMCEE_WRITE_SEEDS=1"
    );
    assert!(emcee_renderer::model::Model::from_glb(&emcee_avatar_build::glb::triangle()).is_ok());
}

#[test]
fn every_avatar_that_once_crashed_the_loader_is_refused() {
    // The fuzzer's build checks more than a release build (debug assertions, overflow): each of
    // these aborted it; a release build must refuse them, not read garbage.
    for input in corpus("regressions", "gltf") {
        let loaded = emcee_renderer::model::Model::from_glb(&std::fs::read(&input).unwrap());
        assert!(loaded.is_err(), "{} loads", input.display());
    }
}

#[test]
fn every_seed_and_regression_runs_clean() {
    for (name, target) in TARGETS {
        let seeds = corpus("seeds", name);
        assert!(!seeds.is_empty(), "{name} has no seed");
        for input in seeds.iter().chain(&corpus("regressions", name)) {
            let bytes = std::fs::read(input).unwrap();
            let started = Instant::now();
            target(&bytes);
            // A hang found by the fuzzer must stay fixed: far below AFL++'s 1 s limit.
            assert!(started.elapsed() < Duration::from_secs(2), "{}: {:?}", input.display(), started.elapsed());
        }
    }
}

#[test]
fn every_target_survives_mutated_seeds() {
    // A fixed xorshift sequence: the same inputs on every run.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (name, target) in TARGETS {
        for seed in corpus("seeds", name) {
            let original = std::fs::read(&seed).unwrap();
            for _ in 0..300 {
                let mut bytes = original.clone();
                for _ in 0..=(next() % 8) {
                    let at = (next() as usize) % bytes.len().max(1);
                    match next() % 3 {
                        0 if !bytes.is_empty() => bytes[at] = next() as u8,
                        1 if !bytes.is_empty() => bytes.truncate(at),
                        _ => bytes.insert(at.min(bytes.len()), next() as u8),
                    }
                }
                target(&bytes);
            }
        }
    }
}

//! The AFL++ harness: `emcee-fuzz TARGET` reads inputs as AFL++ feeds them to the target
//! named TARGET (see `emcee_fuzz::TARGETS`). Built and run by `scripts/fuzz.sh`.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = emcee_fuzz::target(&name) else {
        let names: Vec<&str> = emcee_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: emcee-fuzz TARGET, one of: {}", names.join(", "));
        std::process::exit(64);
    };
    // No abort-on-any-panic hook: a panic the code catches by design (a dependency's panic
    // caught at the RTMP session, which ends that session with an error) is not a crash; one
    // that escapes the target still is.
    afl::fuzz_nohook!(|data: &[u8]| target(data));
}

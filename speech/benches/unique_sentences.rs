//! Memory over many distinct sentences: a neural voice meets a new input length with almost every
//! sentence (operator lines, answers), and what ONNX Runtime keeps per length must not pile up.
//! Synthesizes N sentences of varying length with the Piper test voice and prints the process's
//! resident memory every 50. `cargo bench -p emcee-speech --bench unique_sentences -- [N]`.

use std::path::PathBuf;

use emcee_protocol::Voice;
use emcee_speech::espeak::default_bridge_path;
use emcee_speech::{Speaker, SpeechSettings};

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(400);
    let run = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../run");
    let mut speaker = Speaker::new(SpeechSettings {
        espeak_bridge: default_bridge_path(),
        espeak_dir: None,
        onnxruntime: Some(run.join("lib/libonnxruntime.so.1.31.1")),
        voices_dir: Some(run.join("voices")),
        cache_dir: None,
    });
    let voice = Voice { name: "piper:en_US-joe-medium".into(), words_per_minute: 165, pitch: 50 };
    speaker.prepare(&voice).expect("the voice loads (run scripts/setup.sh)");
    let words = ["kettle", "warranty", "price", "steel", "handle", "litre", "minute", "order", "store"];
    println!("| sentences | RSS MB |");
    println!("|---|---|");
    for i in 0..=n {
        if i % 50 == 0 {
            println!("| {i} | {:.1} |", rss_mb());
        }
        let extra: Vec<&str> = (0..i % 23).map(|k| words[(i + k) % words.len()]).collect();
        let text = format!("<speak>A word from the store, number {i}, about the {}.</speak>", extra.join(" "));
        speaker.synthesize(&text, &voice).expect("speech");
    }
}

//! Speech synthesis cost on this machine: voice load, time to first audio (a sentence is
//! synthesized whole, so that is the first sentence's synthesis time) and real-time factor, for
//! the Piper test voice and espeak-ng. Prints a Markdown table; `cargo bench -p emcee-speech
//! --bench tts`. Needs `scripts/setup.sh` (the voice and ONNX Runtime).

use std::path::PathBuf;
use std::time::Instant;

use emcee_protocol::Voice;
use emcee_speech::espeak::default_bridge_path;
use emcee_speech::{Speaker, SpeechSettings, MEDIA_RATE};

const SENTENCES: &[&str] = &[
    "Welcome to the show!",
    "Today's kettle boils a litre in ninety seconds, and it switches itself off when the water is ready.",
    "It is made of brushed steel, with a soft-touch handle that stays cool.",
    "Order in the next ten minutes and the second one is half price.",
    "Thank you for watching, and see you tomorrow at the same time.",
];

fn main() {
    let run = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../run");
    println!("| voice | load s | first sentence: audio s / synthesis s | all {} sentences: audio s | synthesis s | real-time factor |", SENTENCES.len());
    println!("|---|---|---|---|---|---|");
    for name in ["piper:en_US-joe-medium", "en-us"] {
        let started = Instant::now();
        let mut speaker = Speaker::new(SpeechSettings {
            espeak_bridge: default_bridge_path(),
            espeak_dir: None,
            onnxruntime: Some(run.join("lib/libonnxruntime.so.1.31.1")),
            voices_dir: Some(run.join("voices")),
            cache_dir: None,
        });
        let voice = Voice { name: name.into(), words_per_minute: 165, pitch: 50 };
        speaker.prepare(&voice).expect("the voice loads (run scripts/setup.sh)");
        let load = started.elapsed().as_secs_f64();
        let (mut audio, mut work, mut first) = (0.0, 0.0, (0.0, 0.0));
        for (i, text) in SENTENCES.iter().enumerate() {
            let t = Instant::now();
            let u = speaker.synthesize(&format!("<speak>{text}</speak>"), &voice).expect("speech");
            let took = t.elapsed().as_secs_f64();
            let secs = u.pcm.len() as f64 / f64::from(MEDIA_RATE);
            if i == 0 {
                first = (secs, took);
            }
            audio += secs;
            work += took;
        }
        println!(
            "| {name} | {load:.2} | {:.2} / {:.3} | {audio:.1} | {work:.2} | {:.3} |",
            first.0,
            first.1,
            work / audio
        );
    }
}

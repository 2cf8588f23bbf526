//! Speech: text → 48 kHz PCM with phoneme timing → mouth animation.
//!
//! # Layout
//! - [`espeak`]: espeak-ng voices, run in the `emcee-espeak` child process (GPL stays out of ours).
//! - [`resample`]: engine rate → the 48 kHz media clock, with exact position mapping.
//! - [`viseme`]: IPA → viseme classes → a [`viseme::MouthTrack`] sampled per video frame.
//!
//! Flow: text → [`Utterance`] (PCM + phoneme spans) → mouth track → renderer pose.
#![forbid(unsafe_code)]

pub mod espeak;
pub mod resample;
pub mod viseme;

/// The media clock rate every utterance is delivered at.
pub const MEDIA_RATE: u32 = 48_000;

#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// The engine process failed (it is restarted on the next request).
    #[error("speech engine failed: {0}")]
    Engine(String),
    /// The engine refused this request (bad voice, bad text); other requests still work.
    #[error("speech engine refused the request: {0}")]
    Rejected(String),
}

/// A synthesized sentence: mono PCM at [`MEDIA_RATE`], its phonemes and its SSML marks on the
/// same clock (samples from the start of the utterance).
#[derive(Debug, Clone, Default)]
pub struct Utterance {
    pub pcm: Vec<i16>,
    pub phonemes: Vec<viseme::PhonemeSpan>,
    pub marks: Vec<(String, u64)>,
}

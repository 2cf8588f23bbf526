//! Speech: text → 48 kHz PCM with phoneme timing → mouth animation.
//!
//! # Layout
//! - [`Speaker`]: the one entry point — routes a sentence to its engine, through the cache.
//! - [`espeak`]: espeak-ng voices, run in the `emcee-espeak` child process (GPL stays out of
//!   ours); also text → IPA for the neural voices.
//! - [`piper`]: Piper neural voices on ONNX Runtime (loaded at run time), exact phoneme
//!   durations from the model; [`onnx_graph`] exposes the duration tensor at load.
//! - [`markup`]: the normalised SSML the control plane sends → text runs, pauses, marks.
//! - [`cache`]: synthesized sentences on disk, keyed by engine, voice and text.
//! - [`prosody`]: pitch (F0) per 10 ms, for head motion that follows the voice.
//! - [`resample`]: engine rate → the 48 kHz media clock, with exact position mapping.
//! - [`viseme`]: IPA → viseme classes → a [`viseme::MouthTrack`] sampled per video frame.
//!
//! Flow: text → [`Utterance`] (PCM + phoneme spans) → mouth track → renderer pose.
#![forbid(unsafe_code)]

pub mod cache;
pub mod espeak;
pub mod markup;
pub mod onnx_graph;
pub mod piper;
pub mod prosody;
pub mod resample;
pub mod viseme;

use std::path::PathBuf;

use emcee_protocol::Voice;

/// The media clock rate every utterance is delivered at (the protocol's one media clock).
pub const MEDIA_RATE: u32 = emcee_protocol::MEDIA_CLOCK_HZ as u32;

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
    /// Pitch per 10 ms in semitones against the sentence's median (see [`prosody`]); filled
    /// by [`Speaker`], empty from the engines themselves.
    pub pitch: Vec<f32>,
}

/// Where the speech engines and their data are.
#[derive(Debug, Clone, Default)]
pub struct SpeechSettings {
    /// The `emcee-espeak` child program.
    pub espeak_bridge: PathBuf,
    /// Another espeak-ng build for it (`libespeak-ng.so.1` + `espeak-ng-data/`); `None`: the
    /// system's.
    pub espeak_dir: Option<PathBuf>,
    /// `libonnxruntime.so`, for Piper voices.
    pub onnxruntime: Option<PathBuf>,
    /// Directory of Piper voices (`NAME.onnx` + `NAME.onnx.json`).
    pub voices_dir: Option<PathBuf>,
    /// Directory for cached sentences; `None`: no cache.
    pub cache_dir: Option<PathBuf>,
}

/// Cap on the sentence cache (about 45 minutes of 48 kHz speech).
const CACHE_CAP_BYTES: u64 = 256 << 20;

/// Synthesizes sentences with whichever engine their voice names: `piper:NAME` is a Piper
/// voice, anything else an espeak-ng voice.
pub struct Speaker {
    settings: SpeechSettings,
    espeak: espeak::EspeakEngine,
    piper: Option<piper::PiperEngine>,
    cache: Option<cache::SpeechCache>,
}

impl Speaker {
    pub fn new(settings: SpeechSettings) -> Self {
        let piper = match (&settings.onnxruntime, &settings.voices_dir) {
            (Some(lib), Some(dir)) => Some(piper::PiperEngine::new(lib.clone(), dir.clone())),
            _ => None,
        };
        let cache = settings.cache_dir.clone().and_then(|dir| {
            cache::SpeechCache::new(dir.clone(), CACHE_CAP_BYTES)
                .map_err(|e| tracing::warn!(error = %e, dir = %dir.display(), "speech cache off"))
                .ok()
        });
        let espeak =
            espeak::EspeakEngine::new(settings.espeak_bridge.clone()).with_library_dir(settings.espeak_dir.clone());
        Self { espeak, settings, piper, cache }
    }

    /// The cache key: engine, voice (with its model file's size and time, so a replaced model
    /// is not answered from the old one), settings and text.
    fn cache_key(&self, ssml: &str, voice: &Voice) -> String {
        let model = match (voice.name.strip_prefix(piper::PREFIX), &self.settings.voices_dir) {
            (Some(name), Some(dir)) => std::fs::metadata(emcee_voices::model_path(dir, name))
                .ok()
                .map(|m| format!("{}:{:?}", m.len(), m.modified().ok()))
                .unwrap_or_default(),
            _ => String::new(),
        };
        format!("v1\n{}\n{model}\n{}\n{}\n{ssml}", voice.name, voice.words_per_minute, voice.pitch)
    }

    /// Loads `voice` now if it needs loading (a Piper model takes a second or two), so the
    /// first sentence is not late.
    pub fn prepare(&mut self, voice: &Voice) -> Result<(), SpeechError> {
        match (voice.name.strip_prefix(piper::PREFIX), self.piper.as_mut()) {
            (Some(name), Some(piper)) => piper.prepare(name),
            _ => Ok(()),
        }
    }

    /// Synthesizes `ssml` (the normalised SSML the control plane sends) with `voice`.
    pub fn synthesize(&mut self, ssml: &str, voice: &Voice) -> Result<Utterance, SpeechError> {
        let key = self.cache.as_ref().map(|_| self.cache_key(ssml, voice));
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            if let Some(hit) = cache.get(key) {
                return Ok(hit);
            }
        }
        let utterance = match voice.name.strip_prefix(piper::PREFIX) {
            Some(name) => {
                let piper = self.piper.as_mut().ok_or_else(|| {
                    SpeechError::Rejected(format!(
                        "voice `{}` is a Piper voice, but no voices directory and ONNX Runtime are configured",
                        voice.name
                    ))
                })?;
                piper.synthesize(ssml, name, voice.words_per_minute, &mut self.espeak)?
            }
            None => self.espeak.synthesize(ssml, voice)?,
        };
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            cache.put(key, &utterance);
        }
        Ok(utterance)
    }

    /// Synthesizes `ssml` with `voice` (from the cache when it is there), with its pitch track.
    pub fn speak(&mut self, ssml: &str, voice: &Voice) -> Result<Utterance, SpeechError> {
        let mut utterance = self.synthesize(ssml, voice)?;
        utterance.pitch = prosody::relative_pitch(&utterance.pcm);
        Ok(utterance)
    }
}

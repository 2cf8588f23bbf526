//! Piper (VITS) neural voices through ONNX Runtime, loaded at run time.
//!
//! Text → IPA comes from espeak-ng in its child process (the voices were trained on its
//! phonemes); IPA → ids through the voice's `phoneme_id_map`; one ONNX run gives the audio and,
//! through the graph's `Ceil` output we expose at load (see [`crate::onnx_graph`]), how many
//! [`HOP`]-sample frames each id lasts — exact phoneme timing, not an estimate.
//!
//! A voice is `NAME.onnx` beside `NAME.onnx.json` (Piper's own layout) in the voices
//! directory; the config names it `piper:NAME`. ONNX Runtime is the `libonnxruntime.so` the
//! config names (set-up takes it from the `onnxruntime` wheel); nothing is downloaded or linked
//! at build time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use emcee_voices::{VoiceConfig, PREFIX};
use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

use crate::espeak::EspeakEngine;
use crate::markup::{self, Piece};
use crate::resample::Resampler;
use crate::viseme::PhonemeSpan;
use crate::{SpeechError, Utterance, MEDIA_RATE};

/// Samples per duration frame: the VITS hop length of every Piper voice.
pub const HOP: u64 = 256;
/// The rate (words per minute) at which a voice speaks at its own pace.
pub const OWN_PACE_WPM: f32 = 165.0;
/// Threads ONNX Runtime may use within one run. One: synthesis runs ahead of the clock, so it
/// need not be fast, only never take the cores the frames are rendered and encoded on.
const INTRA_THREADS: usize = 1;

fn rejected(what: impl std::fmt::Display) -> SpeechError {
    SpeechError::Rejected(what.to_string())
}

/// The process's one ONNX Runtime, loaded from `library` on first use.
fn runtime(library: &Path) -> Result<&'static Environment, SpeechError> {
    static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let builder = ort::init_from(library).map_err(|e| format!("cannot load {}: {e}", library.display()))?;
            builder.with_name("emcee-speech").build().map_err(|e| format!("ONNX Runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| SpeechError::Engine(e.clone()))
}

/// A token of the model's input: a phoneme character, or padding / start / end.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Phone(char),
    Filler,
}

/// One loaded voice.
pub struct PiperVoice {
    session: Session,
    pub config: VoiceConfig,
    durations_output: String,
    audio_output: String,
}

/// Audio (at the voice's rate, −1…1) and frames per input id.
pub type Inferred = (Vec<f32>, Vec<u64>);

impl PiperVoice {
    /// Loads `model` (and its `.json`) into ONNX Runtime loaded from `library`.
    pub fn load(library: &Path, model: &Path) -> Result<Self, SpeechError> {
        let config = VoiceConfig::read_beside(model).map_err(rejected)?;
        let bytes = std::fs::read(model).map_err(|e| rejected(format!("{}: {e}", model.display())))?;
        let (bytes, durations_output) = crate::onnx_graph::expose_single_node_output(&bytes, "Ceil")
            .map_err(|e| rejected(format!("{}: {e}", model.display())))?;
        let environment = runtime(library)?;
        let ort_err = |e: ort::Error| rejected(format!("{}: {e}", model.display()));
        let session = Session::builder(environment)
            .map_err(ort_err)?
            .with_intra_threads(INTRA_THREADS)
            .map_err(|e| ort_err(e.into()))?
            .with_intra_op_spinning(false)
            .map_err(|e| ort_err(e.into()))?
            .with_inter_op_spinning(false)
            .map_err(|e| ort_err(e.into()))?
            // Every sentence is an input of another length, and ONNX Runtime keeps a memory
            // pattern per input shape: on a show that runs for months, with operator lines and
            // answers never said before, that is memory that only grows (the soak bench found
            // it; `cargo bench -p emcee-speech --bench unique_sentences` shows it alone).
            .with_memory_pattern(false)
            .map_err(|e| ort_err(e.into()))?
            .commit_from_memory(&bytes)
            .map_err(ort_err)?;
        let audio_output = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .find(|n| *n != durations_output)
            .ok_or_else(|| rejected(format!("{}: the model has no audio output", model.display())))?;
        Ok(Self { session, config, durations_output, audio_output })
    }

    /// Model input for `phonemes` (IPA, with spaces and punctuation): `^ _ p _ p _ … $`.
    fn tokens(&self, phonemes: &str) -> (Vec<i64>, Vec<Token>) {
        let c = &self.config;
        let mut ids = vec![c.bos, c.pad];
        let mut tokens = vec![Token::Filler, Token::Filler];
        for ch in phonemes.chars() {
            // Characters the voice was not trained on are left out (as Piper does).
            if let Some(&id) = c.ids.get(&ch) {
                ids.extend([id, c.pad]);
                tokens.extend([Token::Phone(ch), Token::Filler]);
            }
        }
        ids.push(c.eos);
        tokens.push(Token::Filler);
        (ids, tokens)
    }

    /// Speaks `phonemes` (IPA with spaces and punctuation, as [`EspeakEngine::phonemize`]
    /// gives it): audio at the voice's rate and the frames each model input lasts.
    pub fn phonemes_to_audio(&mut self, phonemes: &str, length_scale: f32) -> Result<Inferred, SpeechError> {
        let (ids, _) = self.tokens(phonemes);
        self.infer(&ids, length_scale)
    }

    /// One run of the model.
    fn infer(&mut self, ids: &[i64], length_scale: f32) -> Result<Inferred, SpeechError> {
        let engine = |e: ort::Error| SpeechError::Engine(format!("Piper: {e}"));
        let n = ids.len();
        let c = &self.config;
        let mut inputs = vec![
            ("input", Tensor::from_array(([1usize, n], ids.to_vec())).map_err(engine)?.into_dyn()),
            ("input_lengths", Tensor::from_array(([1usize], vec![n as i64])).map_err(engine)?.into_dyn()),
            (
                "scales",
                Tensor::from_array(([3usize], vec![c.noise_scale, length_scale, c.noise_w]))
                    .map_err(engine)?
                    .into_dyn(),
            ),
        ];
        if c.multi_speaker {
            inputs.push(("sid", Tensor::from_array(([1usize], vec![0i64])).map_err(engine)?.into_dyn()));
        }
        let outputs = self.session.run(inputs).map_err(engine)?;
        let audio = outputs
            .get(&self.audio_output)
            .ok_or_else(|| SpeechError::Engine("Piper: no audio output".into()))?
            .try_extract_tensor::<f32>()
            .map_err(engine)?
            .1
            .to_vec();
        let durations = outputs
            .get(&self.durations_output)
            .ok_or_else(|| SpeechError::Engine("Piper: no duration output".into()))?
            .try_extract_tensor::<f32>()
            .map_err(engine)?
            .1
            .iter()
            .map(|&f| f.max(0.0) as u64)
            .collect::<Vec<u64>>();
        if durations.len() != n {
            return Err(SpeechError::Engine(format!("Piper: {} durations for {n} ids", durations.len())));
        }
        Ok((audio, durations))
    }
}

/// Modifier letters that lengthen or colour the phoneme before them.
fn modifies_previous(c: char) -> bool {
    matches!(c, 'ː' | 'ˑ' | 'ʰ' | 'ʲ' | 'ʷ' | '̃' | '̩' | '̯' | '͡') || ('\u{300}'..='\u{36f}').contains(&c)
}

/// Phoneme spans (at the voice's rate, from `offset`) for `tokens` lasting `frames` each.
///
/// Padding and word spaces after a phoneme belong to it; stress marks open the phoneme after
/// them; punctuation is a pause (an empty name), merged when adjacent.
fn spans(tokens: &[Token], frames: &[u64], offset: u64) -> Vec<PhonemeSpan> {
    let mut out: Vec<PhonemeSpan> = Vec::new();
    let mut at = offset;
    let mut stress: Option<(char, u64)> = None;
    for (token, &f) in tokens.iter().zip(frames) {
        let (start, end) = (at, at + f * HOP);
        at = end;
        match *token {
            Token::Phone(c @ ('ˈ' | 'ˌ')) => stress = Some((c, stress.map_or(start, |s| s.1))),
            Token::Phone(c) if c.is_alphabetic() && !modifies_previous(c) => {
                let (ipa, start) = match stress.take() {
                    Some((mark, s)) => (format!("{mark}{c}"), s),
                    None => (c.to_string(), start),
                };
                out.push(PhonemeSpan { ipa, start, end });
            }
            Token::Phone(c) if modifies_previous(c) && out.last().is_some_and(|l| !l.ipa.is_empty()) => {
                if let Some(last) = out.last_mut() {
                    last.ipa.push(c);
                    last.end = end;
                }
            }
            // Padding after a stress mark belongs to the stressed phoneme, which starts earlier.
            Token::Filler | Token::Phone(' ') if stress.is_some() => {}
            // A word boundary is not a pause in connected speech: the mouth moves on.
            Token::Filler | Token::Phone(' ') if out.last().is_some() => {
                if let Some(last) = out.last_mut() {
                    last.end = end;
                }
            }
            _ => {
                stress = None;
                match out.last_mut() {
                    Some(last) if last.ipa.is_empty() => last.end = end,
                    _ => out.push(PhonemeSpan { ipa: String::new(), start, end }),
                }
            }
        }
    }
    out
}

/// Appends `new` to `out`, a pause right after a pause lengthening it.
fn append_spans(out: &mut Vec<PhonemeSpan>, new: impl IntoIterator<Item = PhonemeSpan>) {
    for span in new {
        match out.last_mut() {
            Some(last) if last.ipa.is_empty() && span.ipa.is_empty() => last.end = span.end,
            _ => out.push(span),
        }
    }
}

/// Speaks with Piper voices from a voices directory, loading each on first use.
pub struct PiperEngine {
    library: PathBuf,
    voices_dir: PathBuf,
    voices: HashMap<String, PiperVoice>,
    resampler: Option<(u32, Resampler)>,
}

/// Text (and marks) of one model run, with its rate and gain.
#[derive(Default)]
struct Run {
    phonemes: String,
    /// (mark, phoneme characters before it).
    marks: Vec<(String, usize)>,
    rate: f32,
    gain: f32,
}

impl PiperEngine {
    pub fn new(library: PathBuf, voices_dir: PathBuf) -> Self {
        Self { library, voices_dir, voices: HashMap::new(), resampler: None }
    }

    fn voice(&mut self, name: &str) -> Result<&mut PiperVoice, SpeechError> {
        if !self.voices.contains_key(name) {
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(rejected(format!("`{name}` is not a voice name")));
            }
            let voice = PiperVoice::load(&self.library, &emcee_voices::model_path(&self.voices_dir, name))?;
            tracing::info!(voice = name, rate = voice.config.sample_rate, "Piper voice loaded");
            self.voices.insert(name.to_string(), voice);
        }
        self.voices.get_mut(name).ok_or_else(|| rejected("voice vanished"))
    }

    /// Loads voice `name` if it is not loaded yet, and runs it once: ONNX Runtime sets up its
    /// buffers on the first run, which would otherwise slow the first sentence of the show.
    pub fn prepare(&mut self, name: &str) -> Result<(), SpeechError> {
        self.voice(name)?.phonemes_to_audio("həlˈoʊ.", 1.0).map(|_| ())
    }

    /// Synthesizes `ssml` with voice `name` at `words_per_minute` (165 is the voice's own pace),
    /// phonemized by `espeak`. PCM at [`MEDIA_RATE`], phoneme spans and marks on its clock.
    pub fn synthesize(
        &mut self,
        ssml: &str,
        name: &str,
        words_per_minute: u32,
        espeak: &mut EspeakEngine,
    ) -> Result<Utterance, SpeechError> {
        let pace = OWN_PACE_WPM / words_per_minute.clamp(80, 450) as f32;
        let espeak_voice = self.voice(name)?.config.espeak_voice.clone();
        // Phonemize first (the bridge), then run the model once per run of text between pauses.
        let mut runs: Vec<Result<Run, u32>> = Vec::new();
        for piece in markup::pieces(ssml) {
            match piece {
                Piece::Text { text, rate, gain } => {
                    let mut phonemes = String::new();
                    for (ipa, terminator) in espeak.phonemize(&text, &espeak_voice)? {
                        phonemes.push_str(&ipa);
                        phonemes.push_str(&terminator);
                        phonemes.push(' ');
                    }
                    match runs.last_mut() {
                        Some(Ok(run)) if run.phonemes.is_empty() || (run.rate == rate && run.gain == gain) => {
                            run.phonemes.push_str(&phonemes);
                            (run.rate, run.gain) = (rate, gain);
                        }
                        _ => runs.push(Ok(Run { phonemes, rate, gain, marks: Vec::new() })),
                    }
                }
                Piece::Mark(mark) => match runs.last_mut() {
                    Some(Ok(run)) => run.marks.push((mark, run.phonemes.chars().count())),
                    _ => runs.push(Ok(Run { marks: vec![(mark, 0)], rate: 1.0, gain: 1.0, ..Run::default() })),
                },
                Piece::Break { ms } => runs.push(Err(ms)),
            }
        }

        let voice = self.voice(name)?;
        let rate_hz = voice.config.sample_rate;
        let length_scale = voice.config.length_scale * pace;
        let mut audio: Vec<f32> = Vec::new();
        let mut phonemes: Vec<PhonemeSpan> = Vec::new();
        let mut marks: Vec<(String, u64)> = Vec::new();
        for run in runs {
            let offset = audio.len() as u64;
            let run = match run {
                Err(ms) => {
                    let silence = u64::from(ms) * u64::from(rate_hz) / 1000;
                    audio.resize(audio.len() + silence as usize, 0.0);
                    append_spans(
                        &mut phonemes,
                        [PhonemeSpan { ipa: String::new(), start: offset, end: offset + silence }],
                    );
                    continue;
                }
                Ok(run) => run,
            };
            let text = run.phonemes.trim_end();
            if text.is_empty() {
                marks.extend(run.marks.into_iter().map(|(m, _)| (m, offset)));
                continue;
            }
            let (ids, tokens) = voice.tokens(text);
            let (samples, frames) = voice.infer(&ids, length_scale / run.rate.max(0.25))?;
            let total: u64 = frames.iter().sum::<u64>() * HOP;
            if total != samples.len() as u64 {
                return Err(SpeechError::Engine(format!(
                    "Piper: durations give {total} samples, the audio has {}",
                    samples.len()
                )));
            }
            // A mark before the n-th phoneme character sits where that character's token starts.
            let chars: Vec<char> = text.chars().collect();
            for (mark, before) in run.marks {
                let wanted =
                    chars[..before.min(chars.len())].iter().filter(|c| voice.config.ids.contains_key(c)).count();
                // Token 0 is `^`, 1 is `_`; phoneme k is token 2 + 2k.
                let token = (2 + 2 * wanted).min(frames.len());
                marks.push((mark, offset + frames[..token].iter().sum::<u64>() * HOP));
            }
            append_spans(&mut phonemes, spans(&tokens, &frames, offset));
            audio.extend(samples.iter().map(|s| s * run.gain));
        }

        let pcm: Vec<i16> = audio.iter().map(|s| (s * 32767.0).clamp(-32768.0, 32767.0) as i16).collect();
        let resampler = match self.resampler.take() {
            Some((r, resampler)) if r == rate_hz => resampler,
            _ => Resampler::new(rate_hz, MEDIA_RATE).ok_or_else(|| SpeechError::Engine("bad voice rate".into()))?,
        };
        let utterance = Utterance {
            pcm: resampler.process(&pcm),
            phonemes: phonemes
                .into_iter()
                .map(|p| PhonemeSpan {
                    ipa: p.ipa,
                    start: resampler.map_position(p.start),
                    end: resampler.map_position(p.end),
                })
                .collect(),
            marks: marks.into_iter().map(|(m, at)| (m, resampler.map_position(at))).collect(),
            pitch: Vec::new(),
        };
        self.resampler = Some((rate_hz, resampler));
        Ok(utterance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_give_padding_to_phonemes_and_stress_to_the_next() {
        use Token::*;
        // ^ _ h _ ˈ _ e _ ː _ , _ $
        let tokens = [
            Filler,
            Filler,
            Phone('h'),
            Filler,
            Phone('ˈ'),
            Filler,
            Phone('e'),
            Filler,
            Phone('ː'),
            Filler,
            Phone(','),
            Filler,
            Filler,
        ];
        let frames = [1, 1, 2, 1, 1, 0, 3, 1, 2, 0, 4, 1, 1];
        let s = spans(&tokens, &frames, 0);
        let got: Vec<(&str, u64, u64)> = s.iter().map(|p| (p.ipa.as_str(), p.start / HOP, p.end / HOP)).collect();
        assert_eq!(got, vec![("", 0, 2), ("h", 2, 5), ("ˈeː", 5, 12), ("", 12, 18)]);
        // The spans tile the audio exactly.
        assert_eq!(s.last().unwrap().end, frames.iter().sum::<u64>() * HOP);
    }
}

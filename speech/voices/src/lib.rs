//! The Piper voices a box has: their names, where their files are, and what their configs say,
//! checked — without ONNX Runtime, so that the control plane can validate and list voices
//! without linking the engine.
//!
//! # Layout
//! One file: [`PREFIX`] (how the config names a Piper voice), [`model_path`], [`VoiceConfig`]
//! (a voice's `.onnx.json`, parsed and checked) and [`installed_voices`].
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Voice names in the config: `piper:NAME`.
pub const PREFIX: &str = "piper:";

/// The model file of voice `name` (without the `piper:` prefix) in `voices_dir`: `NAME.onnx`
/// beside `NAME.onnx.json`, Piper's own layout.
pub fn model_path(voices_dir: &Path, name: &str) -> PathBuf {
    voices_dir.join(format!("{name}.onnx"))
}

#[derive(Deserialize)]
struct ConfigFile {
    audio: AudioSection,
    espeak: EspeakSection,
    #[serde(default)]
    inference: Inference,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default)]
    num_speakers: u32,
}

#[derive(Deserialize)]
struct AudioSection {
    sample_rate: u32,
}

#[derive(Deserialize)]
struct EspeakSection {
    voice: String,
}

#[derive(Deserialize)]
struct Inference {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

impl Default for Inference {
    fn default() -> Self {
        Self { noise_scale: 0.667, length_scale: 1.0, noise_w: 0.8 }
    }
}

/// What a voice's `.onnx.json` says, checked.
#[derive(Debug, Clone)]
pub struct VoiceConfig {
    pub sample_rate: u32,
    /// The espeak-ng voice that phonemizes for it.
    pub espeak_voice: String,
    pub noise_scale: f32,
    pub length_scale: f32,
    pub noise_w: f32,
    /// Each phoneme character's input id.
    pub ids: HashMap<char, i64>,
    /// The ids of padding (between phonemes), the start and the end.
    pub pad: i64,
    pub bos: i64,
    pub eos: i64,
    /// The model takes a speaker id (we always use speaker 0).
    pub multi_speaker: bool,
}

impl VoiceConfig {
    /// Parses and checks a voice's JSON config.
    pub fn parse(json: &str) -> Result<Self, String> {
        let file: ConfigFile = serde_json::from_str(json).map_err(|e| format!("not a Piper voice config: {e}"))?;
        if !(8_000..=96_000).contains(&file.audio.sample_rate) {
            return Err(format!("audio.sample_rate {} is not a speech rate", file.audio.sample_rate));
        }
        let mut ids = HashMap::new();
        for (symbol, id) in &file.phoneme_id_map {
            let mut chars = symbol.chars();
            match (chars.next(), chars.next(), id.as_slice()) {
                (Some(c), None, [id]) => {
                    ids.insert(c, *id);
                }
                _ => return Err(format!("phoneme_id_map entry `{symbol}`: one character → one id expected")),
            }
        }
        let special = |c: char| ids.get(&c).copied().ok_or(format!("phoneme_id_map has no `{c}`"));
        Ok(Self {
            sample_rate: file.audio.sample_rate,
            espeak_voice: file.espeak.voice,
            noise_scale: file.inference.noise_scale,
            length_scale: file.inference.length_scale,
            noise_w: file.inference.noise_w,
            pad: special('_')?,
            bos: special('^')?,
            eos: special('$')?,
            ids,
            multi_speaker: file.num_speakers > 1,
        })
    }

    /// Reads `NAME.onnx.json` beside `model`.
    pub fn read_beside(model: &Path) -> Result<Self, String> {
        let path = PathBuf::from(format!("{}.json", model.display()));
        let json = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&json).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The Piper voices installed in `dir` (every `NAME.onnx`), by name, each with its checked
/// config or why it cannot be used.
pub fn installed_voices(dir: &Path) -> std::io::Result<Vec<(String, Result<VoiceConfig, String>)>> {
    let mut voices: Vec<(String, Result<VoiceConfig, String>)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let name = path.file_name()?.to_str()?.strip_suffix(".onnx")?.to_string();
            Some((name, VoiceConfig::read_beside(&path)))
        })
        .collect();
    voices.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(voices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_configs_are_checked() {
        let good = r#"{"audio":{"sample_rate":22050},"espeak":{"voice":"en-us"},
            "phoneme_id_map":{"_":[0],"^":[1],"$":[2]," ":[3],"a":[14]}}"#;
        let c = VoiceConfig::parse(good).unwrap();
        assert_eq!((c.pad, c.bos, c.eos, c.ids[&'a']), (0, 1, 2, 14));
        assert!(VoiceConfig::parse("{}").unwrap_err().contains("not a Piper voice config"));
        let no_pad = good.replace(r#""_":[0],"#, "");
        assert!(VoiceConfig::parse(&no_pad).unwrap_err().contains("no `_`"));
        let two = good.replace(r#""a":[14]"#, r#""ab":[14]"#);
        assert!(VoiceConfig::parse(&two).unwrap_err().contains("`ab`"));
        let rate = good.replace("22050", "5");
        assert!(VoiceConfig::parse(&rate).unwrap_err().contains("sample_rate"));
    }
}

//! Values that several tables share or that need more than a type check: colours, scenes and
//! voices (the config's `[avatar]`, the materials' `[[scene]]` and `[[voice]]`), avatar files,
//! installed Piper voices.

use std::path::Path;

use emcee_protocol::{CameraPreset, Scene, SpeechConfig, Voice};
use toml_edit::Table;

use super::checker::Checker;
use super::schema::{DEFAULT_BACKGROUND, DEFAULT_PITCH, DEFAULT_VOICE, DEFAULT_WORDS_PER_MINUTE};

pub(crate) fn parse_colour(s: &str) -> Option<[u8; 3]> {
    let hex = s.strip_prefix('#')?;
    if hex.len() != 6 || !hex.is_ascii() {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// An avatar the stage can draw: read with the stage's own loader, so a truncated or garbled
/// file is refused here, with the loader's reason, instead of by the stage at every start.
pub(crate) fn avatar_file(path: &Path) -> Result<(), String> {
    let bytes = crate::files::read_regular_bytes(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    emcee_renderer::model::Model::from_glb(&bytes)
        .map(drop)
        .map_err(|e| format!("{} is not an avatar the stage can draw: {e}", path.display()))
}

/// Checks that Piper voice `name` is installed in the configured voices directory and that
/// ONNX Runtime is configured to run it.
pub(crate) fn piper_voice(name: &str, speech: &SpeechConfig) -> Result<(), String> {
    let (Some(voices), Some(_)) = (&speech.voices, &speech.onnxruntime) else {
        return Err("a Piper voice needs [speech] voices and onnxruntime".into());
    };
    let model = emcee_voices::model_path(voices, name);
    if !model.is_file() {
        return Err(format!("{} is missing", model.display()));
    }
    emcee_voices::VoiceConfig::read_beside(&model).map(|_| ())
}

/// `background` and `camera` of `table` (the config's `[avatar]` or a `[[scene]]`), with defaults.
pub(crate) fn scene_fields(c: &mut Checker<'_>, table: Option<&Table>, context: &str) -> Scene {
    let section = context.trim_matches(['[', ']']);
    let background_rgb = match c.string(table, section, "background") {
        None => DEFAULT_BACKGROUND,
        Some((s, item)) => parse_colour(s).unwrap_or_else(|| {
            c.error(item.span(), format!("{context} background = \"{s}\" is not a colour like \"#1f3550\""));
            [0; 3]
        }),
    };
    let camera = match c.string(table, section, "camera") {
        None => CameraPreset::default(),
        Some((s, item)) => CameraPreset::from_name(s).unwrap_or_else(|| {
            let names = CameraPreset::NAMES.join("\", \"");
            c.error(item.span(), format!("{context} camera = \"{s}\": use \"{names}\""));
            CameraPreset::default()
        }),
    };
    Scene { background_rgb, camera }
}

/// The voice `name_key`, `words_per_minute` and `pitch` of `table` (the config's `[avatar]` or
/// a `[[voice]]`), with defaults.
pub(crate) fn voice_fields(c: &mut Checker<'_>, table: Option<&Table>, context: &str, name_key: &str) -> Voice {
    let section = context.trim_matches(['[', ']']);
    let name = match c.string(table, section, name_key) {
        None => DEFAULT_VOICE.to_string(),
        Some((s, item)) => {
            let ok = match s.strip_prefix(emcee_voices::PREFIX) {
                Some(model) => {
                    !model.is_empty()
                        && !model.starts_with('.')
                        && model.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
                }
                None => !s.is_empty() && s.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_+".contains(ch)),
            };
            if !ok {
                c.error(
                    item.span(),
                    format!("{context} {name_key} = \"{s}\" is not a voice name like \"en-us\" or \"piper:en_US-joe-medium\""),
                );
            }
            s.to_string()
        }
    };
    let words_per_minute = c.integer(table, section, "words_per_minute", DEFAULT_WORDS_PER_MINUTE, 80..451) as u32;
    let pitch = c.integer(table, section, "pitch", DEFAULT_PITCH, 0..100) as u8;
    Voice { name, words_per_minute, pitch }
}

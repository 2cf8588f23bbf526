//! The technician's TOML configuration: parsed, typed and validated in one place, with every
//! error reported at once as `file:line:column: message`. Nothing binds or opens a device
//! until a configuration has passed.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use emcee_protocol::{
    AudioConfig, AvatarConfig, CameraPreset, EncoderChoice, OutputConfig, RecorderSettings, RtmpUrl, Scene,
    SpeechConfig, StageConfig, StopWhen, VideoConfig, Voice,
};

use crate::schedule::{self, Schedule, Window};
use crate::scheduler::WhenDone;
use toml_edit::{ImDocument, Item, Table};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The script: one sentence per line.
    pub script: PathBuf,
    /// What happens when the script is done: end, loop, or idle.
    pub when_done: WhenDone,
    /// Where an interaction cuts a script sentence.
    pub interrupt: StopWhen,
    /// Start the live room as soon as the daemon is up (ignored when there is a schedule).
    pub autostart: bool,
    /// Windows in which the room opens and closes by itself.
    pub schedule: Schedule,
    /// The products file (materials with their FAQ), if any.
    pub products: Option<PathBuf>,
    /// Answers below this confidence (0…1) are replaced by the holding line.
    pub min_confidence: f64,
    /// Said when no answer is good enough.
    pub holding_line: String,
    /// An answer not yet said after this many seconds is dropped (the chat has moved on).
    pub answer_max_age_s: u64,
    /// Where the state database lives.
    pub state_dir: PathBuf,
    /// The local HTTP API.
    pub api_listen: SocketAddr,
    /// The API's bearer token; created (mode 0600) if missing. A systemd credential named
    /// `api-token` takes precedence.
    pub token_file: PathBuf,
    /// Where the stage accepts the control plane.
    pub stage_listen: SocketAddr,
    pub stage: StageConfig,
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.file.display(), e.line, e.column, e.message)?;
        }
        Ok(())
    }
}

const SECTIONS: &[(&str, &[&str])] = &[
    ("show", &["script", "when_done", "autostart", "interrupt"]),
    ("state", &["dir"]),
    ("content", &["products"]),
    ("answers", &["min_confidence", "holding_line", "max_age_s"]),
    ("api", &["listen", "token_file"]),
    ("video", &["width", "height", "fps", "bitrate_kbps", "keyframe_interval_s", "encoder"]),
    ("audio", &["bitrate_kbps", "channels"]),
    ("avatar", &["model", "background", "camera", "voice", "words_per_minute", "pitch", "subtitles", "label", "slate"]),
    ("stage", &["listen"]),
    ("speech", &["voices", "onnxruntime", "espeak", "cache"]),
    ("recorder", &["dir", "segment_min", "max_mb"]),
    ("output", &["url", "platform", "rotate_after_h", "ca"]),
    ("schedule", &["days", "start", "end", "time_zone"]),
];

/// Collects every problem of one TOML file, with positions (shared with the content files).
pub(crate) struct Checker<'a> {
    pub(crate) source: &'a str,
    pub(crate) errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    /// Starts checking `text`: the parsed document, or its one syntax error.
    pub(crate) fn parse(text: &'a str) -> Result<(Self, ImDocument<&'a str>), Vec<ConfigError>> {
        let mut c = Checker { source: text, errors: Vec::new() };
        match ImDocument::parse(text) {
            Ok(doc) => Ok((c, doc)),
            Err(e) => {
                c.error(e.span(), format!("not valid TOML: {}", e.message().trim()));
                Err(c.errors)
            }
        }
    }

    /// Every error, sorted by position, or `value` when there were none.
    pub(crate) fn finish<T>(mut self, value: T) -> Result<T, Vec<ConfigError>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            self.errors.sort_by_key(|e| (e.line, e.column));
            Err(self.errors)
        }
    }

    pub(crate) fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let offset = span.map_or(0, |s| s.start).min(self.source.len());
        let before = &self.source[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.errors.push(ConfigError { line, column, message: message.into() });
    }

    pub(crate) fn unknown_keys(&mut self, table: &Table, allowed: &[&str], context: &str) {
        for (key, _) in table.iter() {
            if !allowed.contains(&key) {
                let hint = closest(key, allowed).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default();
                self.error(table.key(key).and_then(|k| k.span()), format!("unknown key `{key}` in {context}{hint}"));
            }
        }
    }

    pub(crate) fn integer(
        &mut self,
        table: Option<&Table>,
        section: &str,
        key: &str,
        default: i64,
        range: Range<i64>,
    ) -> i64 {
        let Some(item) = table.and_then(|t| t.get(key)) else { return default };
        match item.as_integer() {
            Some(v) if range.contains(&v) => v,
            Some(v) => {
                self.error(
                    item.span(),
                    format!("[{section}] {key} = {v} is out of range {}..{}", range.start, range.end - 1),
                );
                default
            }
            None => {
                self.error(item.span(), format!("[{section}] {key} must be an integer"));
                default
            }
        }
    }

    /// `true`/`false` under `key`, or `default`.
    pub(crate) fn boolean(&mut self, table: Option<&Table>, section: &str, key: &str, default: bool) -> bool {
        match table.and_then(|t| t.get(key)) {
            None => default,
            Some(item) => item.as_bool().unwrap_or_else(|| {
                self.error(item.span(), format!("[{section}] {key} must be true or false"));
                default
            }),
        }
    }

    pub(crate) fn string<'t>(
        &mut self,
        table: Option<&'t Table>,
        section: &str,
        key: &str,
    ) -> Option<(&'t str, &'t Item)> {
        let item = table.and_then(|t| t.get(key))?;
        match item.as_str() {
            Some(s) => Some((s, item)),
            None => {
                self.error(item.span(), format!("[{section}] {key} must be a string"));
                None
            }
        }
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates.iter().map(|c| (distance(word, c), *c)).filter(|(d, _)| *d <= 2).min().map(|(_, c)| c)
}

fn parse_colour(s: &str) -> Option<[u8; 3]> {
    let hex = s.strip_prefix('#')?;
    if hex.len() != 6 || !hex.is_ascii() {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// A readable glTF binary (`.glb` / `.vrm`); the stage reads the rest of it.
fn avatar_file(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if &magic != b"glTF" {
        return Err(format!("{} is not a glTF binary (.glb or .vrm)", path.display()));
    }
    Ok(())
}

/// Checks that Piper voice `name` is installed in the configured voices directory and that
/// ONNX Runtime is configured to run it.
fn piper_voice(name: &str, speech: &SpeechConfig) -> Result<(), String> {
    let (Some(voices), Some(_)) = (&speech.voices, &speech.onnxruntime) else {
        return Err("a Piper voice needs [speech] voices and onnxruntime".into());
    };
    let model = emcee_speech::piper::PiperEngine::model_path(voices, name);
    if !model.is_file() {
        return Err(format!("{} is missing", model.display()));
    }
    emcee_speech::piper::VoiceConfig::read_beside(&model).map(|_| ())
}

/// `background` and `camera` of `table` (the config's `[avatar]` or a `[[scene]]`), with defaults.
pub(crate) fn scene_fields(c: &mut Checker<'_>, table: Option<&Table>, context: &str) -> Scene {
    let section = context.trim_matches(['[', ']']);
    let background_rgb = match c.string(table, section, "background") {
        None => [0x1f, 0x35, 0x50],
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
        None => "en-us".to_string(),
        Some((s, item)) => {
            let ok = match s.strip_prefix(emcee_speech::piper::PREFIX) {
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
    let words_per_minute = c.integer(table, section, "words_per_minute", 165, 80..451) as u32;
    let pitch = c.integer(table, section, "pitch", 50, 0..100) as u8;
    Voice { name, words_per_minute, pitch }
}

/// One `[[schedule]]` table; errors are recorded in `c`.
fn schedule_window(c: &mut Checker<'_>, table: &Table) -> Option<Window> {
    let mut days = [false; 7];
    match table.get("days") {
        None => days = [true; 7],
        Some(item) => match item.as_array() {
            Some(list) if !list.is_empty() => {
                for day in list.iter() {
                    match day.as_str().map(|d| schedule::parse_day(d, &mut days)) {
                        Some(Ok(())) => {}
                        Some(Err(e)) => c.error(day.span(), format!("[[schedule]] days: {e}")),
                        None => c.error(day.span(), "[[schedule]] days are names like \"mon\""),
                    }
                }
            }
            _ => c.error(item.span(), "[[schedule]] days = [\"mon\", …] (or leave it out for every day)"),
        },
    }
    let mut time = |key: &str| -> Option<jiff::civil::Time> {
        let Some((text, item)) = c.string(Some(table), "schedule", key) else {
            if table.get(key).is_none() {
                c.error(table.span(), format!("[[schedule]] needs {key} = \"HH:MM\""));
            }
            return None;
        };
        schedule::parse_time(text).map_err(|e| c.error(item.span(), format!("[[schedule]] {key}: {e}"))).ok()
    };
    let (start, end) = (time("start"), time("end"));
    let tz = match c.string(Some(table), "schedule", "time_zone") {
        None => Some(jiff::tz::TimeZone::system()),
        Some((name, item)) => schedule::parse_time_zone(name)
            .map_err(|e| c.error(item.span(), format!("[[schedule]] time_zone: {e}")))
            .ok(),
    };
    if let (Some(start), Some(end)) = (start, end) {
        if start == end {
            c.error(table.get("end").and_then(|i| i.span()), "[[schedule]] start and end are the same time");
            return None;
        }
    }
    Some(Window { days, start: start?, end: end?, tz: tz? })
}

impl Config {
    /// Reads and validates `path`. `outputs`, when not empty, replace the file's outputs.
    pub fn load(path: &Path, outputs: &[String]) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            file: path.to_path_buf(),
            errors: vec![ConfigError { line: 1, column: 1, message: format!("cannot read the file: {e}") }],
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, outputs).map_err(|errors| ConfigErrors { file: path.to_path_buf(), errors })
    }

    /// Validates configuration text; relative paths resolve against `base`.
    pub fn parse(text: &str, base: &Path, outputs: &[String]) -> Result<Self, Vec<ConfigError>> {
        let (mut c, doc) = Checker::parse(text)?;
        let root: &Table = &doc;
        let names: Vec<&str> = SECTIONS.iter().map(|s| s.0).collect();
        c.unknown_keys(root, &names, "the file");
        let mut section = |name: &str| -> Option<&Table> {
            let item = root.get(name)?;
            if name == "output" || name == "schedule" {
                return None; // arrays of tables, read below
            }
            match item.as_table() {
                Some(t) => {
                    let allowed = SECTIONS.iter().find(|s| s.0 == name).map_or(&[][..], |s| s.1);
                    c.unknown_keys(t, allowed, &format!("[{name}]"));
                    Some(t)
                }
                None => {
                    c.error(item.span(), format!("`{name}` must be a [{name}] table"));
                    None
                }
            }
        };
        let (show, video, audio, avatar, stage) =
            (section("show"), section("video"), section("audio"), section("avatar"), section("stage"));
        let (state, api) = (section("state"), section("api"));
        let (content, answers, speech) = (section("content"), section("answers"), section("speech"));
        let recorder_table = section("recorder");

        // [show]
        let script = match c.string(show, "show", "script") {
            Some((s, _)) => base.join(s),
            None => {
                if show.and_then(|t| t.get("script")).is_none() {
                    c.error(
                        show.and_then(|t| t.span()),
                        "[show] script is required: the file with the sentences to say",
                    );
                }
                PathBuf::new()
            }
        };
        let autostart = c.boolean(show, "show", "autostart", true);
        let when_done = match c.string(show, "show", "when_done") {
            None => WhenDone::End,
            Some(("end", _)) => WhenDone::End,
            Some(("loop", _)) => WhenDone::Loop,
            Some(("idle", _)) => WhenDone::Idle,
            Some((other, item)) => {
                c.error(item.span(), format!("[show] when_done = \"{other}\": use \"end\", \"loop\" or \"idle\""));
                WhenDone::End
            }
        };

        let interrupt = match c.string(show, "show", "interrupt") {
            None | Some(("phoneme", _)) => StopWhen::Phoneme,
            Some(("sentence_end", _)) => StopWhen::SentenceEnd,
            Some((other, item)) => {
                c.error(item.span(), format!("[show] interrupt = \"{other}\": use \"phoneme\" or \"sentence_end\""));
                StopWhen::Phoneme
            }
        };

        // [video]
        let encoder = match c.string(video, "video", "encoder") {
            None | Some(("auto", _)) => EncoderChoice::Auto,
            Some(("openh264", _)) => EncoderChoice::Openh264,
            Some(("cuda-readback", _)) => EncoderChoice::CudaReadback,
            Some((other, item)) => {
                c.error(
                    item.span(),
                    format!("[video] encoder = \"{other}\": use \"auto\", \"openh264\" or \"cuda-readback\""),
                );
                EncoderChoice::Auto
            }
        };
        let width = c.integer(video, "video", "width", 1280, 16..3841) as u32;
        let height = c.integer(video, "video", "height", 720, 16..2161) as u32;
        if !width.is_multiple_of(8) || !height.is_multiple_of(2) {
            let span = video.and_then(|t| t.get("width").or(t.get("height"))).and_then(|i| i.span());
            c.error(span, format!("[video] {width}x{height}: width must be a multiple of 8 and height even"));
        }
        let fps = c.integer(video, "video", "fps", 30, 1..121) as u32;
        let bitrate_kbps = c.integer(video, "video", "bitrate_kbps", 2500, 100..50_001) as u32;
        let keyframe_interval_frames = match video.and_then(|t| t.get("keyframe_interval_s")) {
            None => 2 * fps,
            Some(item) => {
                let secs = item.as_float().or_else(|| item.as_integer().map(|i| i as f64));
                match secs {
                    Some(s) if (0.5..=10.0).contains(&s) && ((s * f64::from(fps)).fract()).abs() < 1e-9 => {
                        (s * f64::from(fps)) as u32
                    }
                    Some(s) => {
                        c.error(item.span(), format!("[video] keyframe_interval_s = {s}: must be 0.5…10 s and a whole number of frames at {fps} fps"));
                        2 * fps
                    }
                    None => {
                        c.error(item.span(), "[video] keyframe_interval_s must be a number of seconds");
                        2 * fps
                    }
                }
            }
        };

        // [audio]
        let audio_kbps = c.integer(audio, "audio", "bitrate_kbps", 128, 32..321) as u32;
        let channels = c.integer(audio, "audio", "channels", 2, 1..3) as u8;

        // [avatar]
        let scene = scene_fields(&mut c, avatar, "[avatar]");
        let voice = voice_fields(&mut c, avatar, "[avatar]", "voice");
        let subtitles = c.boolean(avatar, "avatar", "subtitles", true);
        let label = c.string(avatar, "avatar", "label").map(|(s, _)| s.trim().to_string()).filter(|s| !s.is_empty());
        let slate = c.string(avatar, "avatar", "slate").and_then(|(name, item)| {
            let path = base.join(name);
            let is_image = matches!(
                path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
                Some("png" | "jpg" | "jpeg")
            );
            match (path.is_file(), is_image) {
                (true, true) => Some(path),
                (false, _) => {
                    c.error(item.span(), format!("[avatar] slate = \"{name}\": no such file"));
                    None
                }
                (true, false) => {
                    c.error(item.span(), format!("[avatar] slate = \"{name}\": must be a PNG or JPEG picture"));
                    None
                }
            }
        });
        let model = c.string(avatar, "avatar", "model").and_then(|(name, item)| {
            let path = base.join(name);
            match avatar_file(&path) {
                Ok(()) => Some(path),
                Err(why) => {
                    c.error(item.span(), format!("[avatar] model = \"{name}\": {why}"));
                    None
                }
            }
        });

        // [stage]
        let stage_listen = match c.string(stage, "stage", "listen") {
            None => SocketAddr::from(([127, 0, 0, 1], 7611)),
            Some((s, item)) => s.parse().unwrap_or_else(|_| {
                c.error(item.span(), format!("[stage] listen = \"{s}\" is not an address like \"127.0.0.1:7611\""));
                SocketAddr::from(([127, 0, 0, 1], 7611))
            }),
        };

        // [state], [api]
        let state_dir = match c.string(state, "state", "dir") {
            Some((s, _)) => base.join(s),
            None => PathBuf::from("/var/lib/emcee"),
        };
        let api_listen = match c.string(api, "api", "listen") {
            None => SocketAddr::from(([127, 0, 0, 1], 7610)),
            Some((s, item)) => s.parse().unwrap_or_else(|_| {
                c.error(item.span(), format!("[api] listen = \"{s}\" is not an address like \"127.0.0.1:7610\""));
                SocketAddr::from(([127, 0, 0, 1], 7610))
            }),
        };
        // [speech]
        // [recorder]
        let recorder = recorder_table.map(|t| RecorderSettings {
            dir: c
                .string(Some(t), "recorder", "dir")
                .map_or_else(|| state_dir.join("recordings"), |(s, _)| base.join(s)),
            segment_s: c.integer(Some(t), "recorder", "segment_min", 60, 1..1441) as u64 * 60,
            max_mb: c.integer(Some(t), "recorder", "max_mb", 4096, 16..10_000_001) as u64,
        });
        let mut path_of = |key: &str, is_dir: bool| {
            let (s, item) = c.string(speech, "speech", key)?;
            let path = base.join(s);
            let ok = if is_dir { path.is_dir() } else { path.is_file() };
            if !ok {
                let what = if is_dir { "a directory" } else { "a file" };
                c.error(item.span(), format!("[speech] {key} = \"{s}\": {} is not {what}", path.display()));
            }
            Some(path)
        };
        let speech_config = SpeechConfig {
            voices: path_of("voices", true),
            onnxruntime: path_of("onnxruntime", false),
            espeak: path_of("espeak", true),
            cache: Some(
                c.string(speech, "speech", "cache")
                    .map_or_else(|| state_dir.join("speech-cache"), |(s, _)| base.join(s)),
            ),
        };
        if let Some(dir) = &speech_config.espeak {
            for need in ["libespeak-ng.so.1", "espeak-ng-data/phontab"] {
                if dir.is_dir() && !dir.join(need).is_file() {
                    let span = speech.and_then(|t| t.get("espeak")).and_then(|i| i.span());
                    c.error(span, format!("[speech] espeak: {} has no {need}", dir.display()));
                }
            }
        }
        if let Some(name) = voice.name.strip_prefix(emcee_speech::piper::PREFIX) {
            if let Err(why) = piper_voice(name, &speech_config) {
                let span = avatar.and_then(|t| t.get("voice")).and_then(|i| i.span());
                c.error(span, format!("[avatar] voice = \"{}\": {why}", voice.name));
            }
        }

        let token_file = match c.string(api, "api", "token_file") {
            Some((s, _)) => base.join(s),
            None => state_dir.join("api-token"),
        };
        if api_listen == stage_listen {
            let span = api.and_then(|t| t.get("listen")).and_then(|i| i.span());
            c.error(span, format!("[api] listen and [stage] listen are both {api_listen}"));
        }

        // [[output]]
        let mut urls = Vec::new();
        match root.get("output") {
            None => {}
            Some(Item::ArrayOfTables(array)) => {
                for table in array.iter() {
                    c.unknown_keys(table, &["url", "platform", "rotate_after_h", "ca"], "[[output]]");
                    let rotate_after_s = output_rotation(&mut c, table);
                    let ca_file = c.string(Some(table), "output", "ca").and_then(|(name, item)| {
                        let path = base.join(name);
                        if path.is_file() {
                            Some(path)
                        } else {
                            c.error(item.span(), format!("[[output]] ca = \"{name}\": no such file"));
                            None
                        }
                    });
                    match c.string(Some(table), "output", "url") {
                        Some((url, item)) => match RtmpUrl::parse(url) {
                            Ok(_) => urls.push(OutputConfig { url: url.to_string(), rotate_after_s, ca_file }),
                            Err(e) => c.error(item.span(), e.to_string()),
                        },
                        None if table.get("url").is_none() => c.error(table.span(), "[[output]] needs a url"),
                        None => {}
                    }
                }
            }
            Some(item) => c.error(item.span(), "outputs are written as [[output]] tables with a url"),
        }
        // [content], [answers]
        let products = c.string(content, "content", "products").map(|(s, _)| base.join(s));
        let min_confidence = match answers.and_then(|t| t.get("min_confidence")) {
            None => 0.5,
            Some(item) => match item.as_float() {
                Some(v) if (0.0..=1.0).contains(&v) => v,
                _ => {
                    c.error(item.span(), "[answers] min_confidence must be a number from 0.0 to 1.0");
                    0.5
                }
            },
        };
        let holding_line = match c.string(answers, "answers", "holding_line") {
            Some((s, _)) if !s.trim().is_empty() => s.trim().to_string(),
            Some((_, item)) => {
                c.error(item.span(), "[answers] holding_line is empty");
                String::new()
            }
            None => "Great question! Let me check that and come back to you.".to_string(),
        };

        let answer_max_age_s = c.integer(answers, "answers", "max_age_s", 120, 5..86_401) as u64;

        // [[schedule]]
        let mut windows = Vec::new();
        match root.get("schedule") {
            None => {}
            Some(Item::ArrayOfTables(array)) => {
                for table in array.iter() {
                    c.unknown_keys(table, &["days", "start", "end", "time_zone"], "[[schedule]]");
                    if let Some(w) = schedule_window(&mut c, table) {
                        windows.push(w);
                    }
                }
            }
            Some(item) => c.error(item.span(), "schedule windows are written as [[schedule]] tables"),
        }

        if !outputs.is_empty() {
            urls.clear();
            for url in outputs {
                match RtmpUrl::parse(url) {
                    Ok(_) => urls.push(OutputConfig::new(url.clone())),
                    Err(e) => c.error(None, format!("--output: {e}")),
                }
            }
        }
        if urls.is_empty() && c.errors.is_empty() {
            c.error(None, "no outputs: add an [[output]] table with a url, or pass --output");
        }

        c.finish(Config {
            script,
            when_done,
            interrupt,
            autostart,
            schedule: Schedule { windows },
            products,
            min_confidence,
            holding_line,
            answer_max_age_s,
            state_dir,
            api_listen,
            token_file,
            stage_listen,
            stage: StageConfig {
                video: VideoConfig { width, height, fps, bitrate_kbps, keyframe_interval_frames, encoder },
                audio: AudioConfig { bitrate_kbps: audio_kbps, channels },
                avatar: AvatarConfig { scene, voice, model, subtitles, label, slate },
                speech: speech_config,
                recorder,
                outputs: urls,
            },
        })
    }
}

/// How long an output's sessions run before a planned reconnect: `rotate_after_h`, else the
/// `platform`'s preset (sessions end before the platform ends them), else 12 h.
fn output_rotation(c: &mut Checker, table: &toml_edit::Table) -> u64 {
    let preset_h = match c.string(Some(table), "output", "platform") {
        None | Some(("generic", _)) => 12.0,
        // Facebook Live ends a stream at 8 h.
        Some(("facebook", _)) => 7.5,
        Some(("youtube", _)) => 12.0,
        // Twitch and Amazon IVS end sessions at 48 h.
        Some(("twitch" | "aws-ivs", _)) => 23.0,
        Some((other, item)) => {
            let message = format!("[[output]] platform = \"{other}\": use \"generic\", \"youtube\", \"facebook\", \"twitch\" or \"aws-ivs\"");
            c.error(item.span(), message);
            12.0
        }
    };
    let hours = match table.get("rotate_after_h") {
        None => preset_h,
        Some(item) => match item.as_float().or_else(|| item.as_integer().map(|i| i as f64)) {
            Some(h) if (0.01..=47.0).contains(&h) => h,
            _ => {
                c.error(item.span(), "[[output]] rotate_after_h must be a number of hours from 0.01 to 47");
                preset_h
            }
        },
    };
    (hours * 3600.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r##"
[show]
script = "demo.txt"

[video]
width = 640
height = 360
fps = 30
keyframe_interval_s = 2.0

[avatar]
background = "#102030"

[[output]]
url = "rtmp://127.0.0.1:1935/live/demo"
"##;

    #[test]
    fn a_good_file_is_typed_with_defaults() {
        let c = Config::parse(GOOD, Path::new("/etc/emcee"), &[]).unwrap();
        assert_eq!(c.script, PathBuf::from("/etc/emcee/demo.txt"));
        assert_eq!((c.stage.video.width, c.stage.video.height, c.stage.video.keyframe_interval_frames), (640, 360, 60));
        assert_eq!(c.stage.avatar.scene.background_rgb, [0x10, 0x20, 0x30]);
        assert_eq!(c.stage.avatar.scene.camera, CameraPreset::Medium);
        assert_eq!(c.stage.avatar.voice.pitch, 50);
        assert_eq!(c.stage.audio.channels, 2);
        assert_eq!(c.stage.outputs, vec![OutputConfig::new("rtmp://127.0.0.1:1935/live/demo")]);
    }

    #[test]
    fn an_avatar_model_must_be_a_readable_gltf_binary() {
        let dir = std::env::temp_dir().join(format!("emcee-config-avatar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("host.vrm"), b"glTF\x02\0\0\0").unwrap();
        std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
        let with = |model: &str| GOOD.replace("[avatar]\n", &format!("[avatar]\nmodel = \"{model}\"\n"));
        let c = Config::parse(&with("host.vrm"), &dir, &[]).unwrap();
        assert_eq!(c.stage.avatar.model, Some(dir.join("host.vrm")));
        for (name, why) in [("notes.txt", "is not a glTF binary"), ("gone.vrm", "cannot read")] {
            let errors = Config::parse(&with(name), &dir, &[]).unwrap_err();
            assert!(errors[0].message.contains(why) && errors[0].column == 9, "{errors:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_piper_voice_must_be_installed_and_runnable() {
        let dir = std::env::temp_dir().join(format!("emcee-config-piper-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("voices")).unwrap();
        std::fs::write(dir.join("libonnxruntime.so"), b"\x7fELF").unwrap();
        std::fs::write(dir.join("voices/joe.onnx"), b"model").unwrap();
        let json =
            r#"{"audio":{"sample_rate":22050},"espeak":{"voice":"en-us"},"phoneme_id_map":{"_":[0],"^":[1],"$":[2]}}"#;
        std::fs::write(dir.join("voices/joe.onnx.json"), json).unwrap();
        std::fs::write(dir.join("voices/bad.onnx"), b"model").unwrap();
        std::fs::write(dir.join("voices/bad.onnx.json"), "{}").unwrap();
        let speech = "[speech]\nvoices = \"voices\"\nonnxruntime = \"libonnxruntime.so\"\n";
        let with = |voice: &str, speech: &str| {
            format!("{speech}{}", GOOD.replace("[avatar]\n", &format!("[avatar]\nvoice = \"{voice}\"\n")))
        };
        let c = Config::parse(&with("piper:joe", speech), &dir, &[]).unwrap();
        assert_eq!(c.stage.speech.voices, Some(dir.join("voices")));
        assert_eq!(c.stage.speech.cache, Some(c.state_dir.join("speech-cache")));
        for (voice, speech, why) in [
            ("piper:joe", "", "needs [speech] voices and onnxruntime"),
            ("piper:nobody", speech, "nobody.onnx is missing"),
            ("piper:bad", speech, "not a Piper voice config"),
            ("piper:../etc/x", speech, "is not a voice name"),
            (
                "piper:joe",
                "[speech]\nvoices = \"nowhere\"\nonnxruntime = \"libonnxruntime.so\"\n",
                "is not a directory",
            ),
            ("en-us", "[speech]\nespeak = \"voices\"\n", "has no libespeak-ng.so.1"),
        ] {
            let errors = Config::parse(&with(voice, speech), &dir, &[]).unwrap_err();
            assert!(errors.iter().any(|e| e.message.contains(why)), "{voice} {speech:?}: {errors:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn outputs_from_the_command_line_replace_the_file() {
        let c = Config::parse(GOOD, Path::new("."), &["rtmp://10.0.0.1/app/k".into()]).unwrap();
        assert_eq!(c.stage.outputs, vec![OutputConfig::new("rtmp://10.0.0.1/app/k")]);
    }

    #[test]
    fn a_typo_is_reported_at_its_line_and_column_with_a_hint() {
        let text = GOOD.replace("fps = 30", "fsp = 30");
        let errors = Config::parse(&text, Path::new("."), &[]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].column), (8, 1));
        assert!(errors[0].message.contains("`fsp`") && errors[0].message.contains("did you mean `fps`"));
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let text = r#"
[show]
[video]
width = 641
fps = "thirty"
bitrate_kbps = 5
[avatar]
background = "blue"
[[output]]
url = "http://x/live/k"
"#;
        let errors = Config::parse(text, Path::new("."), &[]).unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errors.len(), 6, "{messages:#?}");
        assert!(messages.iter().any(|m| m.contains("script is required")));
        assert!(messages.iter().any(|m| m.contains("multiple of 8")));
        assert!(messages.iter().any(|m| m.contains("fps must be an integer")));
        assert!(messages.iter().any(|m| m.contains("out of range")));
        assert!(messages.iter().any(|m| m.contains("\"blue\"")));
        assert!(messages.iter().any(|m| m.contains("http://x/live/k")));
        // Sorted by position.
        assert!(errors.windows(2).all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)));
    }

    #[test]
    fn outputs_rotate_by_platform_or_by_the_hour() {
        let two = GOOD.replace(
            "[[output]]\n",
            "[[output]]\nurl = \"rtmp://fb.example/rtmp/key\"\nplatform = \"facebook\"\n\n[[output]]\nrotate_after_h = 0.5\n",
        );
        assert!(two != GOOD, "GOOD has an [[output]] table");
        let c = Config::parse(&two, Path::new("."), &[]).unwrap();
        let rotations: Vec<u64> = c.stage.outputs.iter().map(|o| o.rotate_after_s).collect();
        assert_eq!(rotations, [27_000, 1_800]);
        let bad = GOOD.replace("[[output]]\n", "[[output]]\nplatform = \"myspace\"\nrotate_after_h = 100\n");
        let errors = Config::parse(&bad, Path::new("."), &[]).unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errors.len(), 2, "{messages:?}");
        assert!(messages[0].contains("myspace") && messages[1].contains("0.01 to 47"), "{messages:?}");
    }

    #[test]
    fn an_rtmps_output_may_name_a_ca_file_that_must_exist() {
        let dir = std::env::temp_dir().join(format!("emcee-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), "test CA").unwrap();
        let with = |ca: &str| GOOD.replace("[[output]]\n", &format!("[[output]]\nca = \"{ca}\"\n"));
        let c = Config::parse(&with("ca.pem"), &dir, &[]).unwrap();
        assert_eq!(c.stage.outputs[0].ca_file.as_deref(), Some(dir.join("ca.pem").as_path()));
        let errors = Config::parse(&with("missing.pem"), &dir, &[]).unwrap_err();
        assert!(errors.len() == 1 && errors[0].message.contains("missing.pem"), "{errors:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_recorder_is_off_unless_configured_and_checked_when_it_is() {
        assert_eq!(Config::parse(GOOD, Path::new("/etc/emcee"), &[]).unwrap().stage.recorder, None);
        let on = format!("{GOOD}\n[recorder]\nsegment_min = 30\n");
        let c = Config::parse(&on, Path::new("/etc/emcee"), &[]).unwrap();
        let r = c.stage.recorder.expect("on");
        assert_eq!((r.dir, r.segment_s, r.max_mb), (c.state_dir.join("recordings"), 1800, 4096));
        let bad = format!("{GOOD}\n[recorder]\nsegment_min = 0\nmax_mb = 1\nformat = \"ts\"\n");
        let errors = Config::parse(&bad, Path::new("."), &[]).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn the_video_encoder_is_auto_unless_chosen() {
        let c = Config::parse(GOOD, Path::new("."), &[]).unwrap();
        assert_eq!(c.stage.video.encoder, EncoderChoice::Auto);
        let chosen = GOOD.replace("[video]\n", "[video]\nencoder = \"openh264\"\n");
        assert!(chosen != GOOD, "GOOD has a [video] table");
        let c = Config::parse(&chosen, Path::new("."), &[]).unwrap();
        assert_eq!(c.stage.video.encoder, EncoderChoice::Openh264);
        let bad = GOOD.replace("[video]\n", "[video]\nencoder = \"x264\"\n");
        let errors = Config::parse(&bad, Path::new("."), &[]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("\"x264\"") && errors[0].message.contains("cuda-readback"), "{errors:?}");
    }

    #[test]
    fn broken_toml_points_at_the_problem() {
        let errors = Config::parse("[video]\nwidth = = 3\n", Path::new("."), &[]).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].message.starts_with("not valid TOML"));
    }

    #[test]
    fn schedule_windows_are_read_and_checked() {
        let text = format!("{GOOD}\n[[schedule]]\ndays = [\"weekdays\"]\nstart = \"09:00\"\nend = \"21:00\"\ntime_zone = \"Asia/Shanghai\"\n");
        let c = Config::parse(&text, Path::new("."), &[]).unwrap();
        assert_eq!(c.schedule.windows.len(), 1);
        assert_eq!(c.schedule.windows[0].days, [true, true, true, true, true, false, false]);
        let bad = format!(
            "{GOOD}\n[[schedule]]\ndays = [\"funday\"]\nstart = \"9am\"\nend = \"21:00\"\ntime_zone = \"Mars/Base\"\n"
        );
        let errors = Config::parse(&bad, Path::new("."), &[]).unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errors.len(), 3, "{messages:#?}");
        assert!(messages.iter().any(|m| m.contains("funday")));
        assert!(messages.iter().any(|m| m.contains("9am")));
        assert!(messages.iter().any(|m| m.contains("Mars/Base")));
    }

    #[test]
    fn no_outputs_is_an_error() {
        let text = "[show]\nscript = \"x\"\n";
        let errors = Config::parse(text, Path::new("."), &[]).unwrap_err();
        assert!(errors[0].message.contains("no outputs"));
    }

    #[test]
    fn keyframe_interval_must_be_whole_frames() {
        let text = GOOD.replace("keyframe_interval_s = 2.0", "keyframe_interval_s = 1.01");
        let errors = Config::parse(&text, Path::new("."), &[]).unwrap_err();
        assert!(errors[0].message.contains("whole number of frames"));
    }
}

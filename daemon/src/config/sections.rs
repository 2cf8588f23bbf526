//! One function per section of the configuration file, each returning its typed part with
//! defaults; problems are recorded in the [`Checker`] with their positions.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use emcee_protocol::{
    AudioConfig, AvatarConfig, EncoderChoice, OutputConfig, RecorderSettings, RtmpUrl, SpeechConfig, StopWhen,
    VideoConfig, Voice,
};
use toml_edit::{Item, Table};

use super::checker::Checker;
use super::fields::{avatar_file, piper_voice, scene_fields, voice_fields};
use super::schema::*;
use super::AuditRetention;
use crate::opening_hours::{self, OpeningHours, Window};
use crate::scheduler::WhenDone;
use crate::secrets::Secrets;

/// `[show]`: what is said, and how the show runs.
pub(super) struct Show {
    pub script: PathBuf,
    pub when_done: WhenDone,
    pub interrupt: StopWhen,
    pub autostart: bool,
}

pub(super) fn show(c: &mut Checker<'_>, show: Option<&Table>, base: &Path) -> Show {
    let script = match c.string(show, "show", "script") {
        Some((s, _)) => base.join(s),
        None => {
            if show.and_then(|t| t.get("script")).is_none() {
                c.error(show.and_then(|t| t.span()), "[show] script is required: the file with the sentences to say");
            }
            PathBuf::new()
        }
    };
    let autostart = c.boolean(show, "show", "autostart", DEFAULT_AUTOSTART);
    let when_done = match c.string(show, "show", "when_done") {
        None | Some(("end", _)) => WhenDone::End,
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
    Show { script, when_done, interrupt, autostart }
}

pub(super) fn video(c: &mut Checker<'_>, video: Option<&Table>) -> VideoConfig {
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
    let width = c.integer(video, "video", "width", DEFAULT_WIDTH, 16..3841) as u32;
    let height = c.integer(video, "video", "height", DEFAULT_HEIGHT, 16..2161) as u32;
    if !width.is_multiple_of(8) || !height.is_multiple_of(2) {
        let span = video.and_then(|t| t.get("width").or(t.get("height"))).and_then(|i| i.span());
        c.error(span, format!("[video] {width}x{height}: width must be a multiple of 8 and height even"));
    }
    let fps = c.integer(video, "video", "fps", DEFAULT_FPS, 1..121) as u32;
    let bitrate_kbps = c.integer(video, "video", "bitrate_kbps", DEFAULT_VIDEO_KBPS, 100..50_001) as u32;
    let default_interval = DEFAULT_KEYFRAME_INTERVAL_S * fps;
    let keyframe_interval_frames = match video.and_then(|t| t.get("keyframe_interval_s")) {
        None => default_interval,
        Some(item) => {
            let secs = item.as_float().or_else(|| item.as_integer().map(|i| i as f64));
            match secs {
                Some(s) if (0.5..=10.0).contains(&s) && ((s * f64::from(fps)).fract()).abs() < 1e-9 => {
                    (s * f64::from(fps)) as u32
                }
                Some(s) => {
                    c.error(item.span(), format!("[video] keyframe_interval_s = {s}: must be 0.5…10 s and a whole number of frames at {fps} fps"));
                    default_interval
                }
                None => {
                    c.error(item.span(), "[video] keyframe_interval_s must be a number of seconds");
                    default_interval
                }
            }
        }
    };
    VideoConfig { width, height, fps, bitrate_kbps, keyframe_interval_frames, encoder }
}

pub(super) fn audio(c: &mut Checker<'_>, audio: Option<&Table>) -> AudioConfig {
    let bitrate_kbps = c.integer(audio, "audio", "bitrate_kbps", DEFAULT_AUDIO_KBPS, 32..321) as u32;
    let channels = c.integer(audio, "audio", "channels", DEFAULT_CHANNELS, 1..3) as u8;
    AudioConfig { bitrate_kbps, channels }
}

pub(super) fn avatar(c: &mut Checker<'_>, avatar: Option<&Table>, base: &Path) -> AvatarConfig {
    let scene = scene_fields(c, avatar, "[avatar]");
    let voice = voice_fields(c, avatar, "[avatar]", "voice");
    let subtitles = c.boolean(avatar, "avatar", "subtitles", DEFAULT_SUBTITLES);
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
    AvatarConfig { scene, voice, model, subtitles, label, slate }
}

/// An address like `127.0.0.1:7611` under `[section] listen`, or `default`.
pub(super) fn listen(c: &mut Checker<'_>, table: Option<&Table>, section: &str, default: SocketAddr) -> SocketAddr {
    match c.string(table, section, "listen") {
        None => default,
        Some((s, item)) => s.parse().unwrap_or_else(|_| {
            c.error(item.span(), format!("[{section}] listen = \"{s}\" is not an address like \"{default}\""));
            default
        }),
    }
}

/// `[stage] socket`: where the stage's control socket is (the stage reads the same key).
pub(super) fn stage_socket(c: &mut Checker<'_>, stage: Option<&Table>, base: &Path) -> PathBuf {
    if let Some(item) = stage.and_then(|t| t.get("listen")) {
        c.error(
            item.span(),
            "[stage] listen: the stage takes its control plane on a Unix socket only; write socket = \"PATH\" (or leave it out)",
        );
    }
    let Some((s, item)) = c.string(stage, "stage", "socket") else {
        return PathBuf::from(emcee_protocol::stage_host::DEFAULT_STAGE_SOCKET);
    };
    let path = base.join(s);
    if let Err(why) = emcee_protocol::stage_host::check_socket_path(&path) {
        c.error(item.span(), why);
    }
    path
}

/// `[secrets] dir`: where named secrets are read from.
pub(super) fn secrets_dir(c: &mut Checker<'_>, secrets: Option<&Table>, base: &Path) -> PathBuf {
    c.string(secrets, "secrets", "dir").map_or_else(|| PathBuf::from(DEFAULT_SECRETS_DIR), |(s, _)| base.join(s))
}

/// `[state] dir`, and the directory the stage's files go in (see [`DEFAULT_STAGE_STATE_DIR`]).
pub(super) fn state_dirs(c: &mut Checker<'_>, state: Option<&Table>, base: &Path) -> (PathBuf, PathBuf) {
    match c.string(state, "state", "dir") {
        Some((s, _)) => (base.join(s), base.join(s)),
        None => (PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from(DEFAULT_STAGE_STATE_DIR)),
    }
}

/// `[state] audit_days` and `audit_max_mb`: how long and how large the audit log may grow.
pub(super) fn audit_retention(c: &mut Checker<'_>, state: Option<&Table>) -> AuditRetention {
    let days = c.integer(state, "state", "audit_days", DEFAULT_AUDIT_DAYS, 1..3651);
    let mb = c.integer(state, "state", "audit_max_mb", DEFAULT_AUDIT_MAX_MB, 1..65_537);
    AuditRetention { max_age: Duration::from_secs(days as u64 * 86_400), max_bytes: mb as u64 * 1_000_000 }
}

/// `[api] token_file`, by default in the state directory.
pub(super) fn token_file(c: &mut Checker<'_>, api: Option<&Table>, base: &Path, state_dir: &Path) -> PathBuf {
    match c.string(api, "api", "token_file") {
        Some((s, _)) => base.join(s),
        None => state_dir.join("api-token"),
    }
}

/// `[speech]`: where the voices, ONNX Runtime and espeak-ng are; checked against `voice`, the
/// show's voice (a Piper voice must be installed and runnable).
pub(super) fn speech(
    c: &mut Checker<'_>,
    (speech, avatar): (Option<&Table>, Option<&Table>),
    base: &Path,
    stage_dir: &Path,
    voice: &Voice,
) -> SpeechConfig {
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
    let config = SpeechConfig {
        voices: path_of("voices", true),
        onnxruntime: path_of("onnxruntime", false),
        espeak: path_of("espeak", true),
        cache: Some(
            c.string(speech, "speech", "cache").map_or_else(|| stage_dir.join("speech-cache"), |(s, _)| base.join(s)),
        ),
    };
    if let Some(dir) = &config.espeak {
        for need in ["libespeak-ng.so.1", "espeak-ng-data/phontab"] {
            if dir.is_dir() && !dir.join(need).is_file() {
                let span = speech.and_then(|t| t.get("espeak")).and_then(|i| i.span());
                c.error(span, format!("[speech] espeak: {} has no {need}", dir.display()));
            }
        }
    }
    if let Some(name) = voice.name.strip_prefix(emcee_voices::PREFIX) {
        if let Err(why) = piper_voice(name, &config) {
            let span = avatar.and_then(|t| t.get("voice")).and_then(|i| i.span());
            c.error(span, format!("[avatar] voice = \"{}\": {why}", voice.name));
        }
    }
    config
}

/// `[recorder]`: present means on.
pub(super) fn recorder(
    c: &mut Checker<'_>,
    recorder: Option<&Table>,
    base: &Path,
    stage_dir: &Path,
) -> Option<RecorderSettings> {
    recorder.map(|t| RecorderSettings {
        dir: c.string(Some(t), "recorder", "dir").map_or_else(|| stage_dir.join("recordings"), |(s, _)| base.join(s)),
        segment_s: c.integer(Some(t), "recorder", "segment_min", DEFAULT_SEGMENT_MIN, 1..1441) as u64 * 60,
        max_mb: c.integer(Some(t), "recorder", "max_mb", DEFAULT_RECORDER_MAX_MB, 16..10_000_001) as u64,
    })
}

/// `[[output]]` tables, or the `--output` URLs that replace them.
pub(super) fn outputs(
    c: &mut Checker<'_>,
    item: Option<&Item>,
    (base, secrets): (&Path, &Secrets),
    replaced_by: &[String],
) -> Vec<OutputConfig> {
    let mut urls = Vec::new();
    for table in c.tables(item, "outputs are written as [[output]] tables with a url and a stream_key") {
        c.unknown_keys(table, keys_of("output"), "[[output]]");
        urls.extend(output(c, table, base, secrets));
    }
    if !replaced_by.is_empty() {
        urls.clear();
        for url in replaced_by {
            match RtmpUrl::parse(url) {
                Ok(_) => urls.push(OutputConfig::new(url.clone())),
                Err(e) => c.error(None, format!("--output: {e}")),
            }
        }
    }
    urls
}

/// One `[[output]]` table: the ingest URL without its key, and the key by name.
fn output(c: &mut Checker<'_>, table: &Table, base: &Path, secrets: &Secrets) -> Option<OutputConfig> {
    let rotate_after_s = output_rotation(c, table);
    let ca_file = c.string(Some(table), "output", "ca").and_then(|(name, item)| {
        let path = base.join(name);
        if path.is_file() {
            Some(path)
        } else {
            c.error(item.span(), format!("[[output]] ca = \"{name}\": no such file"));
            None
        }
    });
    let key = stream_key(c, table, secrets);
    match c.string(Some(table), "output", "url") {
        Some((url, item)) => {
            let url = url.trim_end_matches('/');
            // Checked with a stand-in key when the real one is missing, so both are reported.
            let full = format!("{url}/{}", key.as_deref().unwrap_or("key"));
            match RtmpUrl::parse(&full) {
                Ok(_) => return key.map(|_| OutputConfig { url: full, rotate_after_s, ca_file }),
                Err(e) => c.error(item.span(), format!("[[output]] url: {}", e.reason)),
            }
        }
        None if table.get("url").is_none() => c.error(table.span(), "[[output]] needs a url"),
        None => {}
    }
    None
}

/// `[[output]] stream_key`: the name of the secret holding the stream key.
fn stream_key(c: &mut Checker<'_>, table: &Table, secrets: &Secrets) -> Option<String> {
    let Some((name, item)) = c.string(Some(table), "output", "stream_key") else {
        if table.get("stream_key").is_none() {
            let message = "[[output]] needs stream_key = \"NAME\": the stream key is a secret, kept in a file NAME (mode 0600) in [secrets] dir or in a systemd credential NAME, never in this file; the url ends at the application (rtmp://host/app)";
            c.error(table.get("url").and_then(|i| i.span()).or(table.span()), message);
        }
        return None;
    };
    match secrets.read(name) {
        Ok(key) => Some(key),
        Err(e) => {
            c.error(item.span(), format!("[[output]] stream_key = \"{name}\": {e}"));
            None
        }
    }
}

/// How long an output's sessions run before a planned reconnect: `rotate_after_h`, else the
/// `platform`'s preset (sessions end before the platform ends them), else 12 h.
fn output_rotation(c: &mut Checker, table: &Table) -> u64 {
    let preset_h = match c.string(Some(table), "output", "platform") {
        None | Some(("generic", _)) => DEFAULT_ROTATION_H,
        // Facebook Live ends a stream at 8 h.
        Some(("facebook", _)) => 7.5,
        Some(("youtube", _)) => DEFAULT_ROTATION_H,
        // Twitch and Amazon IVS end sessions at 48 h.
        Some(("twitch" | "aws-ivs", _)) => 23.0,
        Some((other, item)) => {
            let message = format!("[[output]] platform = \"{other}\": use \"generic\", \"youtube\", \"facebook\", \"twitch\" or \"aws-ivs\"");
            c.error(item.span(), message);
            DEFAULT_ROTATION_H
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

/// `[answers]`: how questions are answered.
pub(super) struct Answers {
    pub min_confidence: f64,
    pub holding_line: String,
    pub max_age: Duration,
}

pub(super) fn answers(c: &mut Checker<'_>, answers: Option<&Table>) -> Answers {
    let min_confidence = match answers.and_then(|t| t.get("min_confidence")) {
        None => DEFAULT_MIN_CONFIDENCE,
        Some(item) => match item.as_float() {
            Some(v) if (0.0..=1.0).contains(&v) => v,
            _ => {
                c.error(item.span(), "[answers] min_confidence must be a number from 0.0 to 1.0");
                DEFAULT_MIN_CONFIDENCE
            }
        },
    };
    let holding_line = match c.string(answers, "answers", "holding_line") {
        Some((s, _)) if !s.trim().is_empty() => s.trim().to_string(),
        Some((_, item)) => {
            c.error(item.span(), "[answers] holding_line is empty");
            String::new()
        }
        None => DEFAULT_HOLDING_LINE.to_string(),
    };
    let default_age = DEFAULT_ANSWER_MAX_AGE.as_secs() as i64;
    let max_age = Duration::from_secs(c.integer(answers, "answers", "max_age_s", default_age, 5..86_401) as u64);
    Answers { min_confidence, holding_line, max_age }
}

/// `[[schedule]]` tables: the windows in which the room opens by itself.
pub(super) fn schedule(c: &mut Checker<'_>, item: Option<&Item>) -> OpeningHours {
    let mut windows = Vec::new();
    for table in c.tables(item, "schedule windows are written as [[schedule]] tables") {
        c.unknown_keys(table, keys_of("schedule"), "[[schedule]]");
        windows.extend(schedule_window(c, table));
    }
    OpeningHours { windows }
}

/// One `[[schedule]]` table; errors are recorded in `c`.
fn schedule_window(c: &mut Checker<'_>, table: &Table) -> Option<Window> {
    let mut days = [false; 7];
    match table.get("days") {
        None => days = [true; 7],
        Some(item) => match item.as_array() {
            Some(list) if !list.is_empty() => {
                for day in list.iter() {
                    match day.as_str().map(|d| opening_hours::parse_day(d, &mut days)) {
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
        opening_hours::parse_time(text).map_err(|e| c.error(item.span(), format!("[[schedule]] {key}: {e}"))).ok()
    };
    let (start, end) = (time("start"), time("end"));
    let tz = match c.string(Some(table), "schedule", "time_zone") {
        None => Some(jiff::tz::TimeZone::system()),
        Some((name, item)) => opening_hours::parse_time_zone(name)
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

//! The shape of the configuration file: every section with its keys (unknown keys are
//! reported against these) and the defaults of the keys a file leaves out.

use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_AUTOSTART: bool = true;
pub const DEFAULT_WIDTH: i64 = 1280;
pub const DEFAULT_HEIGHT: i64 = 720;
pub const DEFAULT_FPS: i64 = 30;
pub const DEFAULT_VIDEO_KBPS: i64 = 2500;
/// A keyframe every 2 s: what streaming platforms ask for.
pub const DEFAULT_KEYFRAME_INTERVAL_S: u32 = 2;
pub const DEFAULT_AUDIO_KBPS: i64 = 128;
pub const DEFAULT_CHANNELS: i64 = 2;
pub const DEFAULT_BACKGROUND: [u8; 3] = [0x1f, 0x35, 0x50];
pub const DEFAULT_VOICE: &str = "en-us";
pub const DEFAULT_WORDS_PER_MINUTE: i64 = 165;
pub const DEFAULT_PITCH: i64 = 50;
pub const DEFAULT_SUBTITLES: bool = true;
pub const DEFAULT_STATE_DIR: &str = "/var/lib/emcee";
/// Where the stage keeps its files (speech cache, recordings) unless `[state] dir` is set: its
/// own state directory, since on the appliance it runs as its own user and cannot enter the
/// control plane's. A configured `[state] dir` (a developer's machine, one user) holds both.
pub const DEFAULT_STAGE_STATE_DIR: &str = "/var/lib/emcee-stage";
/// Where named secrets (stream keys) are, one file each, mode 0600.
pub const DEFAULT_SECRETS_DIR: &str = "/etc/emcee/secrets";
pub const DEFAULT_API_LISTEN: SocketAddr =
    SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 7610));
/// The audit log keeps 90 days of records…
pub const DEFAULT_AUDIT_DAYS: i64 = 90;
/// …in at most 256 MB of the state database: a full state disk stops nothing, but it loses
/// records, so the log is kept well inside the disk.
pub const DEFAULT_AUDIT_MAX_MB: i64 = 256;
pub const DEFAULT_SEGMENT_MIN: i64 = 60;
pub const DEFAULT_RECORDER_MAX_MB: i64 = 4096;
/// Sessions rotate well under the 24 h most platforms allow (Facebook: use 7.5 h).
pub const DEFAULT_ROTATION_H: f64 = 12.0;
pub const DEFAULT_MIN_CONFIDENCE: f64 = 0.5;
pub const DEFAULT_HOLDING_LINE: &str = "Great question! Let me check that and come back to you.";
pub const DEFAULT_ANSWER_MAX_AGE: Duration = Duration::from_secs(120);

/// Every section and its keys, written once: unknown keys are reported against these.
pub(super) const SECTIONS: &[(&str, &[&str])] = &[
    ("show", &["script", "when_done", "autostart", "interrupt"]),
    ("state", &["dir", "audit_days", "audit_max_mb"]),
    ("content", &["products"]),
    ("answers", &["min_confidence", "holding_line", "max_age_s"]),
    ("api", &["listen", "token_file"]),
    ("video", &["width", "height", "fps", "bitrate_kbps", "keyframe_interval_s", "encoder"]),
    ("audio", &["bitrate_kbps", "channels"]),
    ("avatar", &["model", "background", "camera", "voice", "words_per_minute", "pitch", "subtitles", "label", "slate"]),
    ("stage", &["socket"]),
    ("cloud", &["url", "ca", "enrol_code", "name"]),
    ("secrets", &["dir"]),
    ("speech", &["voices", "onnxruntime", "espeak", "cache"]),
    ("recorder", &["dir", "segment_min", "max_mb"]),
    ("output", &["url", "stream_key", "platform", "rotate_after_h", "ca"]),
    ("schedule", &["days", "start", "end", "time_zone"]),
];

/// The keys of `section`.
pub(super) fn keys_of(section: &str) -> &'static [&'static str] {
    SECTIONS.iter().find(|s| s.0 == section).map_or(&[], |s| s.1)
}

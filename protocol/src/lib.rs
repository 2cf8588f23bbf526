//! The local cue protocol between the control plane (`emceed`) and the stage (`emcee-stage`).
//!
//! # Layout
//! - [`StageConfig`]: everything the stage needs to produce media, sent by the control plane in
//!   [`ControlMessage::Hello`] so that the TOML is parsed and validated in exactly one place.
//! - [`ControlMessage`]: control plane → stage (hello, cues, end of show).
//! - [`StageEvent`]: stage → control plane (ready, cue lifecycle with media timestamps, health).
//! - [`shutdown`]: the stop signals every process answers alike; [`process`]: what every
//!   process sets up first (private files, file limit, death with its supervisor);
//!   [`notify`]: systemd's notify protocol (ready, watchdog).
//! - [`stage_host`]: what the stage reads from the installed file itself (its socket, the
//!   libraries it loads), never from the wire.
//! - [`tls`]: the TLS client configuration for everything the appliance dials out to.
//!
//! Messages are JSON text frames over a WebSocket on the stage's Unix socket, tagged by `type`. Media timestamps
//! travel as integer 48 kHz sample counts (`media_ts`), never as floating-point seconds.
#![forbid(unsafe_code)]

pub mod action;
pub mod notify;
pub mod process;
pub mod shutdown;
pub mod stage_host;
pub mod tls;

use serde::{Deserialize, Serialize};

/// Protocol version; the stage refuses a `hello` with another major version.
pub const PROTOCOL_VERSION: u32 = 1;

/// The media clock: audio samples per second. Every `media_ts` counts these.
pub const MEDIA_CLOCK_HZ: u64 = 48_000;

/// Exit status for a bad configuration (EX_CONFIG from sysexits.h), as systemd units expect:
/// both binaries exit with it, and the units do not restart into the same mistake.
pub const EXIT_CONFIG: i32 = 78;

/// Video settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoConfig {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// Keyframe interval in frames (the config states it in seconds; 2 s is what every CDN wants).
    pub keyframe_interval_frames: u32,
    #[serde(default)]
    pub encoder: EncoderChoice,
}

/// Which video encoder the stage opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderChoice {
    /// Zero-copy NVENC where the GPU has it, openh264 otherwise (the reason is reported).
    #[default]
    Auto,
    /// openh264 on the CPU, without trying NVENC.
    Openh264,
    /// The verification path: the frame is imported into CUDA like NVENC would read it, copied
    /// back and encoded by openh264. For proving the zero-copy plumbing on GPUs without NVENC.
    CudaReadback,
}

/// Audio settings (AAC-LC, 48 kHz).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioConfig {
    pub bitrate_kbps: u32,
    pub channels: u8,
}

/// What the avatar looks like and sounds like until a cue says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvatarConfig {
    /// The scene the show opens in.
    pub scene: Scene,
    /// The voice of lines that name none (answers, operator lines).
    pub voice: Voice,
    /// A glTF 2.0 / VRM 1.0 binary (`.glb`, `.vrm`) to draw; `None`: the built-in avatar.
    #[serde(default)]
    pub model: Option<std::path::PathBuf>,
    /// Burn in what the host says as subtitles.
    #[serde(default = "yes")]
    pub subtitles: bool,
    /// A label always shown in a corner (e.g. "AI-generated", where the law asks for one).
    #[serde(default)]
    pub label: Option<String>,
    /// The picture shown while the renderer is down (PNG or JPEG, scaled to fit); `None`: the
    /// scene's background with a "back in a moment" line.
    #[serde(default)]
    pub slate: Option<std::path::PathBuf>,
}

fn yes() -> bool {
    true
}

/// Where the speech engines find their data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeechConfig {
    /// Directory of Piper voices (`NAME.onnx` + `NAME.onnx.json`), named `piper:NAME`.
    #[serde(default)]
    pub voices: Option<std::path::PathBuf>,
    /// The ONNX Runtime shared library the Piper voices run on. Never on the wire: the stage
    /// takes it from the installed file ([`stage_host`]).
    #[serde(skip)]
    pub onnxruntime: Option<std::path::PathBuf>,
    /// A directory with the espeak-ng build to use (`libespeak-ng.so.1` + `espeak-ng-data/`);
    /// `None`: the system's. Never on the wire, like `onnxruntime`.
    #[serde(skip)]
    pub espeak: Option<std::path::PathBuf>,
    /// Where synthesized sentences are cached; `None`: no cache.
    #[serde(default)]
    pub cache: Option<std::path::PathBuf>,
}

/// Everything the stage needs to run the media pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageConfig {
    pub video: VideoConfig,
    pub audio: AudioConfig,
    pub avatar: AvatarConfig,
    #[serde(default)]
    pub speech: SpeechConfig,
    pub outputs: Vec<OutputConfig>,
    /// The show recorded to local disk besides the outputs.
    #[serde(default)]
    pub recorder: Option<RecorderSettings>,
}

/// Local recording: FLV files of `segment_s` of media each, the directory capped at `max_mb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecorderSettings {
    pub dir: std::path::PathBuf,
    pub segment_s: u64,
    pub max_mb: u64,
}

/// One publish destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputConfig {
    /// `rtmp://host[:port]/app/stream-key` (or `rtmps://`).
    pub url: String,
    /// For `rtmps`: a PEM file of CA certificates trusted besides the system's.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// A session this old (seconds) ends at a keyframe and a new one starts at once, before the
    /// platform ends it.
    pub rotate_after_s: u64,
}

impl OutputConfig {
    /// Every platform we know of allows at least this; Facebook ends sessions at 8 h.
    pub const DEFAULT_ROTATE_AFTER_S: u64 = 12 * 3600;

    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), rotate_after_s: Self::DEFAULT_ROTATE_AFTER_S, ca_file: None }
    }
}

/// Control plane → stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// First message on every connection. A stage that is already running with the same config
    /// keeps its media timeline; cues it has not finished are simply re-sent (ids are idempotent).
    Hello { protocol: u32, config: StageConfig },
    /// A cue to perform.
    Cue(Cue),
    /// Stop one cue (`id`) or every cue not yet finished (`id` absent): the one playing is cut
    /// as `when` says; queued ones are dropped. Each gets `finished {was_stopped: true}`.
    Stop {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default)]
        when: StopWhen,
    },
    /// End the show: cut what plays, fade picture and sound out over `fade_ms` (0: at once),
    /// flush the encoders, close the streams.
    End {
        #[serde(default)]
        fade_ms: u32,
    },
}

/// Where a stop cuts the speech that is playing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopWhen {
    /// At once (with a few milliseconds of fade so it does not click).
    Now,
    /// At the next phoneme boundary: the word is cut between two sounds, the mouth closes.
    #[default]
    Phoneme,
    /// When the sentence ends.
    SentenceEnd,
}

/// One unit of work for the stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cue {
    /// Unique and stable: re-sending a cue with a known id does not play it twice.
    pub id: String,
    #[serde(flatten)]
    pub action: CueAction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CueAction {
    /// Speak a sentence: `text` is SSML from the control plane's checked subset (plain text
    /// with `&` and `<` escaped is valid).
    Say {
        text: String,
        /// The voice to say it in; absent: the avatar's default voice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voice: Option<Voice>,
        /// The scene it is said in, taking effect when the sentence starts; absent: the scene
        /// stays as it is (an answer does not move the camera).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scene: Option<Scene>,
        /// The product cards its `card:show:SKU` marks put up.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cards: Vec<Card>,
    },
}

/// A product card as the viewer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub sku: String,
    pub name: String,
    /// The price as shown, e.g. `$29.00`.
    pub price: String,
    /// A PNG or JPEG of the product, on the appliance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<std::path::PathBuf>,
}

impl CueAction {
    /// A sentence in the default voice, in whatever scene is showing.
    pub fn say(text: impl Into<String>) -> Self {
        Self::Say { text: text.into(), voice: None, scene: None, cards: Vec::new() }
    }
}

/// A voice: which one and how it speaks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Voice {
    /// espeak-ng voice name, e.g. `en-us` or `en-gb+f3`, or a Piper voice: `piper:NAME`.
    pub name: String,
    /// Speaking rate in words per minute.
    pub words_per_minute: u32,
    /// Base pitch, 0 … 99 (espeak-ng's scale; 50 is the voice's own).
    pub pitch: u8,
}

/// Where the host is shown: the background and the camera's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scene {
    /// Background colour, display sRGB bytes.
    pub background_rgb: [u8; 3],
    pub camera: CameraPreset,
}

/// Camera framings every avatar supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraPreset {
    /// The face fills the picture.
    Close,
    /// Head and shoulders.
    #[default]
    Medium,
    /// Down to the chest, with room around the host (for product cards).
    Wide,
}

impl CameraPreset {
    pub const NAMES: [&'static str; 3] = ["close", "medium", "wide"];

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "close" => Some(Self::Close),
            "medium" => Some(Self::Medium),
            "wide" => Some(Self::Wide),
            _ => None,
        }
    }
}

/// Stage → control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StageEvent {
    /// Answer to `hello`: the pipeline is running and its clock is at `media_ts`.
    Ready { media_ts: u64 },
    /// The cue is queued; `duplicate` when the id was already known.
    Accepted { id: String, duplicate: bool },
    /// The cue's first sample reached the encoder input.
    Started { id: String, media_ts: u64 },
    /// Playback passed an SSML `<mark name="…"/>` (actions ride on these). `index`: which mark
    /// of the sentence (from 0), so marks of one name at one place are told apart.
    Mark {
        id: String,
        name: String,
        #[serde(default)]
        index: u32,
        media_ts: u64,
    },
    /// An action (see [`action::Action`]) that a mark of cue `id` triggered has begun.
    ActionStarted { id: String, action: String, media_ts: u64 },
    /// The action has ended: played out, or `was_stopped` (an expression replaced by the next,
    /// a gesture cut by the end of the show).
    ActionFinished { id: String, action: String, was_stopped: bool, media_ts: u64 },
    /// The cue's last sample reached the encoder input.
    Finished { id: String, was_stopped: bool, media_ts: u64 },
    /// The cue could not be performed (e.g. TTS failed); the show goes on.
    Failed { id: String, reason: String },
    /// Periodic pipeline health.
    Health(Health),
    /// The message from the control plane could not be understood; nothing was changed.
    Rejected { reason: String },
    /// The show has ended: streams are flushed and closed.
    Ended { media_ts: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub media_ts: u64,
    pub frames: u64,
    /// Ticks that started more than a frame after their time (the machine fell behind).
    pub late_frames: u64,
    /// Ticks that showed the previous picture again: catching up after falling behind, or the
    /// renderer failing. Every tick still leaves with a frame and exact timestamps.
    #[serde(default)]
    pub repeated_frames: u64,
    /// Ticks that showed the slate because the renderer was down.
    #[serde(default)]
    pub slate_frames: u64,
    /// Audio samples taken in by the AAC encoder less the video's media time, in samples: 0
    /// unless a tick's audio was lost or padded (then audio and video drift apart).
    #[serde(default)]
    pub av_drift_samples: i64,
    pub encoder: String,
    /// Why the zero-copy encoder is not the one running (`None` when it is): a stable code for
    /// alerts and the full reason for people.
    #[serde(default)]
    pub encoder_fallback: Option<EncoderFallback>,
    pub outputs: Vec<OutputHealth>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderFallback {
    pub code: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputHealth {
    pub url: String,
    pub state: String,
    pub bytes_sent: u64,
    /// Sessions opened so far (1 = never reconnected).
    pub connects: u64,
    /// Video packets this output dropped: its queue was congested, until the next keyframe.
    pub dropped_packets: u64,
    /// Bytes the server acknowledged: the output is alive while this grows.
    #[serde(default)]
    pub bytes_acked: u64,
    /// Media waiting in the output's queue.
    #[serde(default)]
    pub queue_ms: u64,
    /// Bytes written over the last report interval, in kbit/s.
    #[serde(default)]
    pub bitrate_kbps: u64,
    /// The output's last failure, kept after it recovers.
    #[serde(default)]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
// The URL itself is left out: it may hold a stream key.
#[error("not an RTMP publish URL: {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: String,
}

/// A parsed `rtmp[s]://host[:port]/app[/more]/stream-key[?query]` publish URL.
#[derive(Debug, Clone, PartialEq)]
pub struct RtmpUrl {
    pub host: String,
    pub port: u16,
    pub app: String,
    pub key: String,
    pub tc_url: String,
    /// `rtmps`: RTMP inside TLS (default port 443).
    pub tls: bool,
}

impl RtmpUrl {
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let bad = |reason: &str| UrlError { url: url.to_string(), reason: reason.to_string() };
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let tls = match parsed.scheme() {
            "rtmp" => false,
            "rtmps" => true,
            other => return Err(bad(&format!("scheme `{other}` is not rtmp or rtmps"))),
        };
        let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?.to_string();
        let port = parsed.port().unwrap_or(if tls { 443 } else { 1935 });
        let path = parsed.path().trim_start_matches('/');
        let (app, key) = path.rsplit_once('/').ok_or_else(|| bad("expected /app/stream-key after the host"))?;
        if app.is_empty() || key.is_empty() {
            return Err(bad("expected /app/stream-key after the host"));
        }
        // Keys may carry auth query strings (e.g. `?auth_key=`); keep them verbatim.
        let key = match parsed.query() {
            Some(q) => format!("{key}?{q}"),
            None => key.to_string(),
        };
        let tc_url = format!("{}://{host}:{port}/{app}", parsed.scheme());
        Ok(Self { host, port, app: app.to_string(), key, tc_url, tls })
    }
}

/// The URL with its stream key (a secret) replaced by `…`, for logs, health and status.
pub fn redact_stream_key(url: &str) -> String {
    if url.starts_with("file://") {
        return url.to_string(); // the recorder: a local path, no secret
    }
    match RtmpUrl::parse(url) {
        Ok(u) => format!("{}/…", u.tc_url),
        Err(_) => "(invalid url)".to_string(),
    }
}

/// `text` (an error, a log line) with every occurrence of each secret replaced by `…`.
pub fn redact_secrets<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = text.to_string();
    for secret in secrets {
        // A key shorter than this would blank ordinary words; no platform issues one.
        if secret.len() >= 4 {
            text = text.replace(secret, "…");
        }
    }
    text
}

/// The media time at which frame `index` starts, at `fps` frames a second.
pub fn media_ts_of_frame(index: u64, fps: u32) -> u64 {
    index * MEDIA_CLOCK_HZ / u64::from(fps)
}

/// Converts a media timestamp to milliseconds (for display and the wire edge only).
pub fn media_ts_to_ms(media_ts: u64) -> u64 {
    media_ts * 1000 / MEDIA_CLOCK_HZ
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cue_round_trips_with_flat_json() {
        let msg = ControlMessage::Cue(Cue { id: "s1".into(), action: CueAction::say("Hello") });
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(json, r#"{"type":"cue","id":"s1","kind":"say","text":"Hello"}"#);
        assert_eq!(serde_json::from_str::<ControlMessage>(&json).unwrap(), msg);
        let voice = Voice { name: "en-gb".into(), words_per_minute: 150, pitch: 40 };
        let scene = Scene { background_rgb: [1, 2, 3], camera: CameraPreset::Close };
        let card = Card { sku: "KET-100".into(), name: "Smart kettle".into(), price: "$29.00".into(), image: None };
        let action = CueAction::Say { text: "Hi".into(), voice: Some(voice), scene: Some(scene), cards: vec![card] };
        let msg = ControlMessage::Cue(Cue { id: "s2".into(), action });
        let json = serde_json::to_string(&msg).unwrap();
        assert!(json.contains(r#""scene":{"background_rgb":[1,2,3],"camera":"close"}"#), "{json}");
        assert_eq!(serde_json::from_str::<ControlMessage>(&json).unwrap(), msg);
    }

    #[test]
    fn stop_defaults_to_all_at_the_next_phoneme() {
        let msg: ControlMessage = serde_json::from_str(r#"{"type":"stop"}"#).unwrap();
        assert_eq!(msg, ControlMessage::Stop { id: None, when: StopWhen::Phoneme });
        let msg: ControlMessage = serde_json::from_str(r#"{"type":"stop","id":"a","when":"sentence_end"}"#).unwrap();
        assert_eq!(msg, ControlMessage::Stop { id: Some("a".into()), when: StopWhen::SentenceEnd });
    }

    #[test]
    fn end_fades_only_when_asked() {
        assert_eq!(
            serde_json::from_str::<ControlMessage>(r#"{"type":"end"}"#).unwrap(),
            ControlMessage::End { fade_ms: 0 }
        );
        let msg = serde_json::to_string(&ControlMessage::End { fade_ms: 1000 }).unwrap();
        assert_eq!(msg, r#"{"type":"end","fade_ms":1000}"#);
    }

    #[test]
    fn unknown_message_type_is_an_error_not_a_panic() {
        assert!(serde_json::from_str::<ControlMessage>(r#"{"type":"dance"}"#).is_err());
        assert!(serde_json::from_str::<ControlMessage>(r#"{"type":"cue","id":"x"}"#).is_err());
    }

    #[test]
    fn parses_publish_urls() {
        let u = RtmpUrl::parse("rtmp://127.0.0.1:1940/live/show").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.app.as_str(), u.key.as_str()), ("127.0.0.1", 1940, "live", "show"));
        assert_eq!(u.tc_url, "rtmp://127.0.0.1:1940/live");
        let u = RtmpUrl::parse("rtmp://ingest.example/app/inst/key?auth_key=abc").unwrap();
        assert_eq!((u.port, u.app.as_str(), u.key.as_str()), (1935, "app/inst", "key?auth_key=abc"));
        let u = RtmpUrl::parse("rtmps://live-api-s.facebook.com/rtmp/FB-1-2").unwrap();
        assert_eq!((u.tls, u.port, u.tc_url.as_str()), (true, 443, "rtmps://live-api-s.facebook.com:443/rtmp"));
        assert!(!RtmpUrl::parse("rtmp://x/live/k").unwrap().tls);
    }

    #[test]
    fn rejects_bad_urls_with_reasons() {
        for bad in ["http://x/live/k", "rtmp://x/live", "rtmp:///live/k", "rtmps://x/live", "not a url"] {
            let err = RtmpUrl::parse(bad).unwrap_err();
            assert_eq!(err.url, bad);
            assert!(err.to_string().starts_with("not an RTMP publish URL: "), "{err}");
        }
    }

    #[test]
    fn stream_keys_are_redacted() {
        assert_eq!(
            redact_stream_key("rtmp://ingest.example/app/secret-key?auth=1"),
            "rtmp://ingest.example:1935/app/…"
        );
        assert_eq!(redact_stream_key("nonsense"), "(invalid url)");
        let url = "rtmp://ingest.example/app/secret-key?auth=1";
        let key = RtmpUrl::parse(url).unwrap().key;
        let error = format!("connect to {url}: refused (stream secret-key?auth=1)");
        let redacted = redact_secrets(&error, [key.as_str(), "secret-key"]);
        assert_eq!(redacted, "connect to rtmp://ingest.example/app/…: refused (stream …)");
        assert!(!RtmpUrl::parse("rtmp://host/secret").unwrap_err().to_string().contains("secret"));
    }

    #[test]
    fn media_ts_converts_to_ms_only_here() {
        assert_eq!(media_ts_to_ms(48_000), 1000);
        assert_eq!(media_ts_to_ms(1_600), 33);
    }
}

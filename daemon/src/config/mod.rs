//! The technician's TOML configuration: parsed, typed and validated in one place, with every
//! error reported at once as `file:line:column: message`. Nothing binds or opens a device
//! until a configuration has passed.
//!
//! # Layout
//! - this file: the typed [`Config`] and [`Config::parse`], which reads each section in turn.
//! - `schema`: every section's keys, written once, and the defaults of what a file leaves out.
//! - `sections`: one function per section, returning its typed part.
//! - `fields`: values shared by several tables (colours, scenes, voices) and files checked for
//!   what they hold (avatars, Piper voices).
//! - `checker`: the TOML checker (every error with its position), shared with the content files.

mod checker;
mod cloud;
mod fields;
mod parts;
mod schema;
mod sections;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use emcee_protocol::{StageConfig, StopWhen};
use toml_edit::Table;

pub(crate) use checker::Checker;
pub use checker::{ConfigError, ConfigErrors};
pub use cloud::CloudConfig;
pub(crate) use fields::{scene_fields, voice_fields};
pub(crate) use parts::parts;
pub use schema::*;

use crate::opening_hours::OpeningHours;
use crate::scheduler::WhenDone;
use crate::secrets::Secrets;

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
    pub schedule: OpeningHours,
    /// The products file (materials with their FAQ), if any.
    pub products: Option<PathBuf>,
    /// Answers below this confidence (0…1) are replaced by the holding line.
    pub min_confidence: f64,
    /// Said when no answer is good enough.
    pub holding_line: String,
    /// An answer not yet said after this long is dropped (the chat has moved on).
    pub answer_max_age: Duration,
    /// Where the state database lives.
    pub state_dir: PathBuf,
    /// How long and how large the audit log may grow.
    pub audit_retention: AuditRetention,
    /// The local HTTP API.
    pub api_listen: SocketAddr,
    /// The API's bearer token; created (mode 0600) if missing. A systemd credential named
    /// `api-token` takes precedence.
    pub token_file: PathBuf,
    /// The stage's control socket (`[stage] socket`; the stage reads the same key).
    pub stage_socket: PathBuf,
    /// Where named secrets are read from (`[secrets] dir`, systemd credentials first).
    pub secrets: Secrets,
    /// The fleet this appliance joins, if any.
    pub cloud: Option<CloudConfig>,
    pub stage: StageConfig,
}

/// The audit log's retention: records older than `max_age` go, then the oldest while the state
/// database holds more than `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditRetention {
    pub max_age: Duration,
    pub max_bytes: u64,
}

impl Config {
    /// Reads and validates `path`. `outputs`, when not empty, replace the file's outputs.
    pub fn load(path: &Path, outputs: &[String]) -> Result<Self, ConfigErrors> {
        let text = crate::files::read_regular(path).map_err(|e| ConfigErrors {
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
            match item.as_table() {
                Some(t) => {
                    c.unknown_keys(t, keys_of(name), &format!("[{name}]"));
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
        let recorder = section("recorder");
        let secrets = section("secrets");
        let cloud = section("cloud");

        let show = sections::show(&mut c, show, base);
        let video = sections::video(&mut c, video);
        let audio = sections::audio(&mut c, audio);
        let avatar_config = sections::avatar(&mut c, avatar, base);
        let stage_socket = sections::stage_socket(&mut c, stage, base);
        let secrets = Secrets::new(sections::secrets_dir(&mut c, secrets, base));
        let (state_dir, stage_dir) = sections::state_dirs(&mut c, state, base);
        let audit_retention = sections::audit_retention(&mut c, state);
        let api_listen = sections::listen(&mut c, api, "api", DEFAULT_API_LISTEN);
        let recorder = sections::recorder(&mut c, recorder, base, &stage_dir);
        let speech = sections::speech(&mut c, (speech, avatar), base, &stage_dir, &avatar_config.voice);
        let token_file = sections::token_file(&mut c, api, base, &state_dir);
        let urls = sections::outputs(&mut c, root.get("output"), (base, &secrets), outputs);
        let products = c.string(content, "content", "products").map(|(s, _)| base.join(s));
        let answers = sections::answers(&mut c, answers);
        let schedule = sections::schedule(&mut c, root.get("schedule"));
        let cloud = cloud::cloud(&mut c, cloud, base);
        if urls.is_empty() && c.errors.is_empty() {
            c.error(None, "no outputs: add an [[output]] table with a url, or pass --output");
        }

        c.finish(Config {
            script: show.script,
            when_done: show.when_done,
            interrupt: show.interrupt,
            autostart: show.autostart,
            schedule,
            products,
            min_confidence: answers.min_confidence,
            holding_line: answers.holding_line,
            answer_max_age: answers.max_age,
            state_dir,
            audit_retention,
            api_listen,
            token_file,
            stage_socket,
            secrets,
            cloud,
            stage: StageConfig { video, audio, avatar: avatar_config, speech, recorder, outputs: urls },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emcee_protocol::{CameraPreset, EncoderChoice, OutputConfig};

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

[secrets]
dir = "/nonexistent"

[[output]]
url = "rtmp://127.0.0.1:1935/live"
stream_key = "demo"
"##;

    /// `GOOD` with its `[secrets] dir` made (once per test run) and holding the key `demo`.
    fn good() -> &'static str {
        static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        TEXT.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("emcee-config-secrets-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            crate::secrets::create_private(&dir.join("demo"), "demo").unwrap();
            crate::secrets::create_private(&dir.join("fb"), "FB-1-2").unwrap();
            GOOD.replace("/nonexistent", &dir.display().to_string())
        })
    }

    #[test]
    fn a_good_file_is_typed_with_defaults() {
        let c = Config::parse(good(), Path::new("/etc/emcee"), &[]).unwrap();
        assert_eq!(c.script, PathBuf::from("/etc/emcee/demo.txt"));
        assert_eq!((c.stage.video.width, c.stage.video.height, c.stage.video.keyframe_interval_frames), (640, 360, 60));
        assert_eq!(c.stage.avatar.scene.background_rgb, [0x10, 0x20, 0x30]);
        assert_eq!(c.stage.avatar.scene.camera, CameraPreset::Medium);
        assert_eq!(c.stage.avatar.voice.pitch, 50);
        assert_eq!(c.stage.audio.channels, 2);
        assert_eq!(c.stage.outputs, vec![OutputConfig::new("rtmp://127.0.0.1:1935/live/demo")]);
    }

    #[test]
    fn an_avatar_model_must_be_one_the_stage_can_draw() {
        let dir = std::env::temp_dir().join(format!("emcee-config-avatar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let glb = emcee_avatar_build::glb::triangle();
        std::fs::write(dir.join("host.vrm"), &glb).unwrap();
        // Only the magic right, cut short, or garbled past the header: the stage's loader says why.
        std::fs::write(dir.join("magic.vrm"), b"glTF\x02\0\0\0").unwrap();
        std::fs::write(dir.join("cut.vrm"), &glb[..glb.len() * 2 / 3]).unwrap();
        let garbled: Vec<u8> = glb.iter().enumerate().map(|(i, b)| if i > 20 { b ^ 0x5a } else { *b }).collect();
        std::fs::write(dir.join("garbled.vrm"), garbled).unwrap();
        std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
        let with = |model: &str| good().replace("[avatar]\n", &format!("[avatar]\nmodel = \"{model}\"\n"));
        let c = Config::parse(&with("host.vrm"), &dir, &[]).unwrap();
        assert_eq!(c.stage.avatar.model, Some(dir.join("host.vrm")));
        for (name, why) in [
            ("notes.txt", "is not an avatar the stage can draw: not a valid glTF binary"),
            ("magic.vrm", "is not an avatar the stage can draw"),
            ("cut.vrm", "is not an avatar the stage can draw"),
            ("garbled.vrm", "is not an avatar the stage can draw"),
            ("gone.vrm", "cannot read"),
            (".", "not a regular file"),
        ] {
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
            format!("{speech}{}", good().replace("[avatar]\n", &format!("[avatar]\nvoice = \"{voice}\"\n")))
        };
        let c = Config::parse(&with("piper:joe", speech), &dir, &[]).unwrap();
        assert_eq!(c.stage.speech.voices, Some(dir.join("voices")));
        assert_eq!(c.stage.speech.cache, Some(PathBuf::from("/var/lib/emcee-stage/speech-cache")));
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
        let c = Config::parse(good(), Path::new("."), &["rtmp://10.0.0.1/app/k".into()]).unwrap();
        assert_eq!(c.stage.outputs, vec![OutputConfig::new("rtmp://10.0.0.1/app/k")]);
    }

    #[test]
    fn a_typo_is_reported_at_its_line_and_column_with_a_hint() {
        let text = good().replace("fps = 30", "fsp = 30");
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
        assert_eq!(errors.len(), 7, "{messages:#?}");
        assert!(messages.iter().any(|m| m.contains("script is required")));
        assert!(messages.iter().any(|m| m.contains("multiple of 8")));
        assert!(messages.iter().any(|m| m.contains("fps must be an integer")));
        assert!(messages.iter().any(|m| m.contains("out of range")));
        assert!(messages.iter().any(|m| m.contains("\"blue\"")));
        assert!(messages.iter().any(|m| m.contains("scheme `http` is not rtmp")));
        assert!(messages.iter().any(|m| m.contains("needs stream_key")));
        // Sorted by position.
        assert!(errors.windows(2).all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)));
    }

    #[test]
    fn outputs_rotate_by_platform_or_by_the_hour() {
        let two = good().replace(
            "[[output]]\n",
            "[[output]]\nurl = \"rtmp://fb.example/rtmp\"\nstream_key = \"fb\"\nplatform = \"facebook\"\n\n[[output]]\nrotate_after_h = 0.5\n",
        );
        assert!(two != good(), "GOOD has an [[output]] table");
        let c = Config::parse(&two, Path::new("."), &[]).unwrap();
        let rotations: Vec<u64> = c.stage.outputs.iter().map(|o| o.rotate_after_s).collect();
        assert_eq!(rotations, [27_000, 1_800]);
        let bad = good().replace("[[output]]\n", "[[output]]\nplatform = \"myspace\"\nrotate_after_h = 100\n");
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
        let with = |ca: &str| good().replace("[[output]]\n", &format!("[[output]]\nca = \"{ca}\"\n"));
        let c = Config::parse(&with("ca.pem"), &dir, &[]).unwrap();
        assert_eq!(c.stage.outputs[0].ca_file.as_deref(), Some(dir.join("ca.pem").as_path()));
        let errors = Config::parse(&with("missing.pem"), &dir, &[]).unwrap_err();
        assert!(errors.len() == 1 && errors[0].message.contains("missing.pem"), "{errors:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_fleet_is_joined_over_wss_only_ws_to_loopback_for_tests() {
        let with = |table: &str| Config::parse(&format!("{}\n[cloud]\n{table}", good()), Path::new("/etc/emcee"), &[]);
        assert_eq!(Config::parse(good(), Path::new("/etc/emcee"), &[]).unwrap().cloud, None);
        let c =
            with("url = \"wss://fleet.example.com/v1/device\"\nca = \"fleet-ca.pem\"\nenrol_code = \"abc\"").unwrap();
        let cloud = c.cloud.expect("joins a fleet");
        assert_eq!(cloud.url.as_str(), "wss://fleet.example.com/v1/device");
        assert_eq!(cloud.ca_file.as_deref(), Some(Path::new("/etc/emcee/fleet-ca.pem")));
        assert_eq!(cloud.enrol_code.as_deref(), Some("abc"));
        assert!(with("url = \"ws://127.0.0.1:7700/\"").is_ok(), "loopback, for tests");
        for (table, says) in [
            ("url = \"ws://fleet.example.com/\"", "only to a loopback address"),
            ("url = \"https://fleet.example.com/\"", "is not a wss:// URL"),
            ("url = \"not a url\"", "is not a wss:// URL"),
            ("ca = \"x.pem\"", "[cloud] needs url"),
            ("url = \"wss://f/\"\ntoken = \"x\"", "`token`"),
        ] {
            let errors = with(table).unwrap_err();
            assert!(errors.iter().any(|e| e.message.contains(says)), "{table}: {errors:?}");
        }
    }

    #[test]
    fn the_recorder_is_off_unless_configured_and_checked_when_it_is() {
        assert_eq!(Config::parse(good(), Path::new("/etc/emcee"), &[]).unwrap().stage.recorder, None);
        let on = format!("{}\n[recorder]\nsegment_min = 30\n", good());
        let c = Config::parse(&on, Path::new("/etc/emcee"), &[]).unwrap();
        let r = c.stage.recorder.expect("on");
        assert_eq!((r.dir, r.segment_s, r.max_mb), (PathBuf::from("/var/lib/emcee-stage/recordings"), 1800, 4096));
        let bad = format!("{}\n[recorder]\nsegment_min = 0\nmax_mb = 1\nformat = \"ts\"\n", good());
        let errors = Config::parse(&bad, Path::new("."), &[]).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn the_video_encoder_is_auto_unless_chosen() {
        let c = Config::parse(good(), Path::new("."), &[]).unwrap();
        assert_eq!(c.stage.video.encoder, EncoderChoice::Auto);
        let chosen = good().replace("[video]\n", "[video]\nencoder = \"openh264\"\n");
        assert!(chosen != good(), "GOOD has a [video] table");
        let c = Config::parse(&chosen, Path::new("."), &[]).unwrap();
        assert_eq!(c.stage.video.encoder, EncoderChoice::Openh264);
        let bad = good().replace("[video]\n", "[video]\nencoder = \"x264\"\n");
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
        let text = format!("{}\n[[schedule]]\ndays = [\"weekdays\"]\nstart = \"09:00\"\nend = \"21:00\"\ntime_zone = \"Asia/Shanghai\"\n", good());
        let c = Config::parse(&text, Path::new("."), &[]).unwrap();
        assert_eq!(c.schedule.windows.len(), 1);
        assert_eq!(c.schedule.windows[0].days, [true, true, true, true, true, false, false]);
        let bad = format!(
            "{}\n[[schedule]]\ndays = [\"funday\"]\nstart = \"9am\"\nend = \"21:00\"\ntime_zone = \"Mars/Base\"\n",
            good()
        );
        let errors = Config::parse(&bad, Path::new("."), &[]).unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errors.len(), 3, "{messages:#?}");
        assert!(messages.iter().any(|m| m.contains("funday")));
        assert!(messages.iter().any(|m| m.contains("9am")));
        assert!(messages.iter().any(|m| m.contains("Mars/Base")));
    }

    #[test]
    fn stream_keys_come_from_private_secrets_never_from_the_file() {
        let c = Config::parse(good(), Path::new("."), &[]).unwrap();
        assert_eq!(c.stage.outputs[0].url, "rtmp://127.0.0.1:1935/live/demo", "the key joins the url");
        // A key left in the url (no stream_key): refused, and the message does not repeat it.
        let inline = good().replace(
            "url = \"rtmp://127.0.0.1:1935/live\"\nstream_key = \"demo\"\n",
            "url = \"rtmp://x/live/sk-live-1234\"\n",
        );
        assert!(inline != good());
        let errors = Config::parse(&inline, Path::new("."), &[]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("needs stream_key") && !errors[0].message.contains("sk-live-1234"));
        // A secret others can read is refused with the fix.
        let dir = std::env::temp_dir().join(format!("emcee-config-open-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::secrets::create_private(&dir.join("demo"), "demo").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("demo"), std::fs::Permissions::from_mode(0o640)).unwrap();
        let open = GOOD.replace("/nonexistent", &dir.display().to_string());
        let errors = Config::parse(&open, Path::new("."), &[]).unwrap_err();
        assert!(errors.len() == 1 && errors[0].message.contains("readable by others (mode 0640)"), "{errors:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_stage_socket_has_a_default_and_no_tcp_address_is_accepted() {
        let c = Config::parse(good(), Path::new("/etc/emcee"), &[]).unwrap();
        assert_eq!(c.stage_socket, PathBuf::from(emcee_protocol::stage_host::DEFAULT_STAGE_SOCKET));
        let text = format!("{}\n[stage]\nsocket = \"run/stage.sock\"\n", good());
        assert_eq!(
            Config::parse(&text, Path::new("/srv"), &[]).unwrap().stage_socket,
            PathBuf::from("/srv/run/stage.sock")
        );
        let tcp = format!("{}\n[stage]\nlisten = \"0.0.0.0:7611\"\n", good());
        let errors = Config::parse(&tcp, Path::new("."), &[]).unwrap_err();
        assert!(errors.iter().any(|e| e.message.contains("Unix socket only")), "{errors:?}");
        // The stage reads the same key of the same text to the same path.
        let host = emcee_protocol::stage_host::StageHost::parse(&text, Path::new("/srv")).unwrap();
        assert_eq!(host.socket, PathBuf::from("/srv/run/stage.sock"));
    }

    #[test]
    fn no_outputs_is_an_error() {
        let text = "[show]\nscript = \"x\"\n";
        let errors = Config::parse(text, Path::new("."), &[]).unwrap_err();
        assert!(errors[0].message.contains("no outputs"));
    }

    #[test]
    fn keyframe_interval_must_be_whole_frames() {
        let text = good().replace("keyframe_interval_s = 2.0", "keyframe_interval_s = 1.01");
        let errors = Config::parse(&text, Path::new("."), &[]).unwrap_err();
        assert!(errors[0].message.contains("whole number of frames"));
    }
}

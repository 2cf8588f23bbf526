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
mod fields;
mod schema;
mod sections;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use emcee_protocol::{StageConfig, StopWhen, DEFAULT_STAGE_LISTEN};
use toml_edit::Table;

pub(crate) use checker::Checker;
pub use checker::{ConfigError, ConfigErrors};
pub(crate) use fields::{scene_fields, voice_fields};
pub use schema::*;

use crate::opening_hours::OpeningHours;
use crate::scheduler::WhenDone;

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
    /// The local HTTP API.
    pub api_listen: SocketAddr,
    /// The API's bearer token; created (mode 0600) if missing. A systemd credential named
    /// `api-token` takes precedence.
    pub token_file: PathBuf,
    /// Where the stage accepts the control plane.
    pub stage_listen: SocketAddr,
    pub stage: StageConfig,
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

        let show = sections::show(&mut c, show, base);
        let video = sections::video(&mut c, video);
        let audio = sections::audio(&mut c, audio);
        let avatar_config = sections::avatar(&mut c, avatar, base);
        let stage_listen = sections::listen(&mut c, stage, "stage", DEFAULT_STAGE_LISTEN);
        let state_dir = sections::state_dir(&mut c, state, base);
        let api_listen = sections::listen(&mut c, api, "api", DEFAULT_API_LISTEN);
        let recorder = sections::recorder(&mut c, recorder, base, &state_dir);
        let speech = sections::speech(&mut c, (speech, avatar), base, &state_dir, &avatar_config.voice);
        let token_file = sections::token_file(&mut c, api, base, &state_dir);
        if api_listen == stage_listen {
            let span = api.and_then(|t| t.get("listen")).and_then(|i| i.span());
            c.error(span, format!("[api] listen and [stage] listen are both {api_listen}"));
        }
        let urls = sections::outputs(&mut c, root.get("output"), base, outputs);
        let products = c.string(content, "content", "products").map(|(s, _)| base.join(s));
        let answers = sections::answers(&mut c, answers);
        let schedule = sections::schedule(&mut c, root.get("schedule"));
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
            api_listen,
            token_file,
            stage_listen,
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

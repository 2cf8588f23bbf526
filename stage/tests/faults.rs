//! Faults inside the stage, on a real pipeline recording to disk: the timeline never stops.
//!
//! - A GPU fault, on whichever video path this machine has: zero-copy where CUDA imports the
//!   ring (the lent NVIDIA GPU, with the CUDA-readback encoder since it has no NVENC), the host
//!   path elsewhere (CI). The stage shows the slate, rebuilds renderer and encoder, and comes
//!   back on the same path; the recording has a picture for every tick and a keyframe at each
//!   switch of encoder, so a player can decode across it.
//! - Speech that fails: the cue is reported failed and the show goes on in silence, with audio
//!   for every tick.

use std::path::{Path, PathBuf};
use std::time::Duration;

use emcee_protocol::{
    AudioConfig, AvatarConfig, CameraPreset, Cue, CueAction, EncoderChoice, Health, RecorderSettings, Scene,
    SpeechConfig, StageConfig, StageEvent, VideoConfig, Voice,
};
use emcee_stage::pipeline::{Command, Pipeline, RenderFault};

const FPS: u32 = 30;

fn config(recordings: &Path) -> StageConfig {
    StageConfig {
        video: VideoConfig {
            width: 320,
            height: 180,
            fps: FPS,
            bitrate_kbps: 600,
            // Longer than the test: every keyframe in the recording comes from a new encoder.
            keyframe_interval_frames: 30 * FPS,
            encoder: EncoderChoice::CudaReadback,
        },
        audio: AudioConfig { bitrate_kbps: 64, channels: 1 },
        avatar: AvatarConfig {
            scene: Scene { background_rgb: [40, 50, 60], camera: CameraPreset::default() },
            voice: Voice { name: "en-us".into(), words_per_minute: 160, pitch: 50 },
            model: None,
            subtitles: false,
            label: Some("fault drill".into()),
            slate: None,
        },
        speech: SpeechConfig::default(),
        outputs: Vec::new(),
        recorder: Some(RecorderSettings { dir: recordings.to_path_buf(), segment_s: 600, max_mb: 100 }),
    }
}

/// What the recorder wrote: video frames (AVC NAL unit tags), keyframes among them, and the
/// timestamp (ms) of every audio frame, over every FLV file in `dir`.
struct Recorded {
    frames: usize,
    keyframes: usize,
    audio_ms: Vec<u32>,
}

fn recorded(dir: &Path) -> Recorded {
    let mut r = Recorded { frames: 0, keyframes: 0, audio_ms: Vec::new() };
    for entry in std::fs::read_dir(dir).unwrap() {
        let flv = std::fs::read(entry.unwrap().path()).unwrap();
        assert_eq!(&flv[..3], b"FLV");
        let mut at = 9 + 4;
        while at + 11 <= flv.len() {
            let kind = flv[at];
            let size = u32::from_be_bytes([0, flv[at + 1], flv[at + 2], flv[at + 3]]) as usize;
            let ms = u32::from_be_bytes([flv[at + 7], flv[at + 4], flv[at + 5], flv[at + 6]]);
            let body = &flv[at + 11..(at + 11 + size).min(flv.len())];
            // Video tag, AVC, NAL units (not the sequence header).
            if kind == 9 && body.len() > 1 && body[0] & 0x0f == 7 && body[1] == 1 {
                r.frames += 1;
                r.keyframes += usize::from(body[0] >> 4 == 1);
            }
            // Audio tag, AAC, raw frame (not the sequence header).
            if kind == 8 && body.len() > 1 && body[0] >> 4 == 10 && body[1] == 1 {
                r.audio_ms.push(ms);
            }
            at += 11 + size + 4;
        }
    }
    r
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("emcee-stage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a pipeline recording into `dir`: `during` gets its command channel once it runs; then
/// the show ends. Every event it sent, in order.
fn run_show(dir: &Path, during: impl FnOnce(&std::sync::mpsc::Sender<Command>)) -> Vec<StageEvent> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (events_tx, mut events) = tokio::sync::mpsc::channel(4096);
    let mut pipeline =
        Pipeline::start(config(dir), events_tx, rt.handle().clone(), Default::default()).expect("the stage starts");
    during(&pipeline.commands);
    pipeline.commands.send(Command::End { fade_frames: 0 }).unwrap();
    pipeline.join();
    let mut all = Vec::new();
    while let Ok(event) = events.try_recv() {
        all.push(event);
    }
    all
}

#[test]
fn a_gpu_fault_shows_the_slate_and_the_show_comes_back_on_the_same_video_path() {
    let recordings = scratch("render-fault");
    let events = run_show(&recordings, |commands| {
        std::thread::sleep(Duration::from_millis(1500));
        commands.send(Command::Drill(RenderFault::DeviceLost)).unwrap();
        std::thread::sleep(Duration::from_millis(4500));
    });
    let health: Vec<Health> = events
        .into_iter()
        .filter_map(|e| match e {
            StageEvent::Health(h) => Some(h),
            _ => None,
        })
        .collect();
    let (first, last) = (health.first().expect("health reports"), health.last().unwrap());
    eprintln!(
        "encoder {} → {} ({:?}); {} frames, {} slate frames, {} repeated",
        first.encoder, last.encoder, last.encoder_fallback, last.frames, last.slate_frames, last.repeated_frames
    );
    assert!(last.slate_frames > 0, "the slate went up");
    assert!(last.slate_frames < 3 * u64::from(FPS), "and came down again: {} slate frames", last.slate_frames);
    assert_eq!(last.encoder, first.encoder, "back on the same video path");
    assert_eq!(last.encoder_fallback, first.encoder_fallback);

    let Recorded { frames, keyframes, .. } = recorded(&recordings);
    let _ = std::fs::remove_dir_all(&recordings);
    // Every tick left with a picture (the show ran about 6 s at 30 fps).
    assert!(frames as u64 >= last.frames, "{frames} frames recorded, {} ticks reported", last.frames);
    // The first frame, and the rebuilt encoder's first; on the zero-copy path the slate's own
    // encoder starts with one too.
    let zero_copy = first.encoder != "openh264";
    let expected = if zero_copy { 3 } else { 2 };
    assert!(keyframes >= expected, "{keyframes} keyframes; {expected} expected (zero-copy: {zero_copy})");
}

#[test]
fn speech_that_fails_is_reported_and_the_show_goes_on_in_silence() {
    let recordings = scratch("speech-fault");
    let events = run_show(&recordings, |commands| {
        std::thread::sleep(Duration::from_millis(1000));
        let voice = Voice { name: "piper:no-such-voice".into(), words_per_minute: 160, pitch: 50 };
        let say = CueAction::Say {
            text: "Nobody will hear this.".into(),
            voice: Some(voice),
            scene: None,
            cards: Vec::new(),
        };
        commands.send(Command::Cue(Cue { id: "doomed".into(), action: say })).unwrap();
        std::thread::sleep(Duration::from_millis(3000));
    });
    let failed = events.iter().find_map(|e| match e {
        StageEvent::Failed { id, reason } if id == "doomed" => Some(reason.clone()),
        _ => None,
    });
    let reason = failed.expect("the cue is reported failed");
    assert!(reason.contains("no-such-voice"), "the reason names the voice: {reason}");
    assert!(!events.iter().any(|e| matches!(e, StageEvent::Started { id, .. } if id == "doomed")));
    let last_health = events.iter().rev().find_map(|e| match e {
        StageEvent::Health(h) => Some(h.frames),
        _ => None,
    });

    let Recorded { frames, audio_ms, .. } = recorded(&recordings);
    let _ = std::fs::remove_dir_all(&recordings);
    // The timeline went on: a picture for every tick, and audio without a gap (AAC frames of
    // 1024 samples at 48 kHz are 21.3 ms apart; FLV keeps whole milliseconds).
    assert!(frames as u64 >= last_health.unwrap_or(u64::MAX), "{frames} frames");
    assert!(audio_ms.len() > 150, "{} audio frames in about 4 s", audio_ms.len());
    let widest = audio_ms.windows(2).map(|w| w[1].wrapping_sub(w[0])).max().unwrap_or(0);
    assert!(widest <= 22, "audio gap of {widest} ms");
}

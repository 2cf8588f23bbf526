//! A GPU fault during the show, on whichever video path this machine has: zero-copy where CUDA
//! imports the ring (the lent NVIDIA GPU, with the CUDA-readback encoder since it has no NVENC),
//! the host path elsewhere (CI). The stage shows the slate, rebuilds renderer and encoder, and
//! comes back on the same path; the recording has a picture for every tick and a keyframe at
//! each switch of encoder, so a player can decode across it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use emcee_protocol::{
    AudioConfig, AvatarConfig, CameraPreset, EncoderChoice, Health, RecorderSettings, Scene, SpeechConfig, StageConfig,
    StageEvent, VideoConfig, Voice,
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

/// (video frames, keyframes) of every FLV file in `dir`, AVC NAL unit tags only.
fn recorded_video(dir: &Path) -> (usize, usize) {
    let (mut frames, mut keyframes) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let flv = std::fs::read(entry.unwrap().path()).unwrap();
        assert_eq!(&flv[..3], b"FLV");
        let mut at = 9 + 4;
        while at + 11 <= flv.len() {
            let kind = flv[at];
            let size = u32::from_be_bytes([0, flv[at + 1], flv[at + 2], flv[at + 3]]) as usize;
            let body = &flv[at + 11..(at + 11 + size).min(flv.len())];
            // Video tag, AVC, NAL units (not the sequence header).
            if kind == 9 && body.len() > 1 && body[0] & 0x0f == 7 && body[1] == 1 {
                frames += 1;
                keyframes += usize::from(body[0] >> 4 == 1);
            }
            at += 11 + size + 4;
        }
    }
    (frames, keyframes)
}

#[test]
fn a_gpu_fault_shows_the_slate_and_the_show_comes_back_on_the_same_video_path() {
    let recordings: PathBuf = std::env::temp_dir().join(format!("emcee-render-fault-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&recordings);
    std::fs::create_dir_all(&recordings).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (events_tx, mut events) = tokio::sync::mpsc::channel(4096);
    let mut pipeline = Pipeline::start(config(&recordings), events_tx, rt.handle().clone()).expect("the stage starts");

    std::thread::sleep(Duration::from_millis(1500));
    pipeline.commands.send(Command::Drill(RenderFault::DeviceLost)).unwrap();
    std::thread::sleep(Duration::from_millis(4500));
    pipeline.commands.send(Command::End { fade_frames: 0 }).unwrap();
    pipeline.join();

    let mut health: Vec<Health> = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let StageEvent::Health(h) = event {
            health.push(h);
        }
    }
    let (first, last) = (health.first().expect("health reports"), health.last().unwrap());
    eprintln!(
        "encoder {} → {} ({:?}); {} frames, {} slate frames, {} repeated",
        first.encoder, last.encoder, last.encoder_fallback, last.frames, last.slate_frames, last.repeated_frames
    );
    assert!(last.slate_frames > 0, "the slate went up");
    assert!(last.slate_frames < 3 * u64::from(FPS), "and came down again: {} slate frames", last.slate_frames);
    assert_eq!(last.encoder, first.encoder, "back on the same video path");
    assert_eq!(last.encoder_fallback, first.encoder_fallback);

    let (frames, keyframes) = recorded_video(&recordings);
    let _ = std::fs::remove_dir_all(&recordings);
    // Every tick left with a picture (the show ran about 6 s at 30 fps).
    assert!(frames as u64 >= last.frames, "{frames} frames recorded, {} ticks reported", last.frames);
    // The first frame, and the rebuilt encoder's first; on the zero-copy path the slate's own
    // encoder starts with one too.
    let zero_copy = first.encoder != "openh264";
    let expected = if zero_copy { 3 } else { 2 };
    assert!(keyframes >= expected, "{keyframes} keyframes; {expected} expected (zero-copy: {zero_copy})");
}

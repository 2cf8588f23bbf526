//! The whole stage's CPU use while it runs a show at real time: media clock, renderer, overlay,
//! silence through AAC, video encoder, FLV — everything but speech synthesis (no cues) and the
//! network (no outputs). One row per encoder choice; prints a Markdown table.
//!
//! `cargo bench -p emcee-stage --bench stage_cpu -- [WxH] [--seconds N] [--avatar FILE.glb]
//! [--encoder auto|openh264|cuda-readback ...]` (default 1920x1080, 20 s, the built-in avatar,
//! openh264 and auto).

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;
use common::process_cpu;

use emcee_protocol::{
    AudioConfig, AvatarConfig, CameraPreset, EncoderChoice, Scene, SpeechConfig, StageConfig, StageEvent, VideoConfig,
    Voice,
};
use emcee_stage::pipeline::{Command, Pipeline};

const FPS: u32 = 30;

fn config(width: u32, height: u32, encoder: EncoderChoice, avatar: Option<PathBuf>) -> StageConfig {
    StageConfig {
        video: VideoConfig { width, height, fps: FPS, bitrate_kbps: 4500, keyframe_interval_frames: 2 * FPS, encoder },
        audio: AudioConfig { bitrate_kbps: 128, channels: 2 },
        avatar: AvatarConfig {
            scene: Scene { background_rgb: [31, 53, 80], camera: CameraPreset::default() },
            voice: Voice { name: "en-us".into(), words_per_minute: 160, pitch: 50 },
            model: avatar,
            subtitles: true,
            label: Some("LIVE".into()),
            slate: None,
        },
        speech: SpeechConfig::default(),
        outputs: Vec::new(),
        recorder: None,
    }
}

fn row(width: u32, height: u32, seconds: u64, choice: EncoderChoice, avatar: Option<PathBuf>) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (events_tx, mut events) = tokio::sync::mpsc::channel(4096);
    let mut pipeline =
        Pipeline::start(config(width, height, choice, avatar), events_tx, rt.handle().clone(), Default::default())
            .expect("the stage starts");
    // The first second warms up (shader variants, encoder start); then measured.
    std::thread::sleep(Duration::from_secs(1));
    let (cpu_start, wall_start) = (process_cpu(), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let cores = process_cpu().saturating_sub(cpu_start).as_secs_f64() / wall_start.elapsed().as_secs_f64();
    let _ = pipeline.commands.send(Command::End { fade_frames: 0 });
    pipeline.join();
    let mut last = None;
    while let Ok(event) = events.try_recv() {
        if let StageEvent::Health(h) = event {
            last = Some(h);
        }
    }
    let Some(h) = last else {
        println!("| {width}x{height} | {choice:?} | – | no health report | | | |");
        return;
    };
    let fallback = h.encoder_fallback.map(|f| f.code).unwrap_or_default();
    println!(
        "| {width}x{height} | {choice:?} | {} | {fallback} | {} | {} | {cores:.2} |",
        h.encoder, h.frames, h.late_frames
    );
}

fn main() {
    let (mut size, mut seconds, mut avatar, mut choices) = ((1920, 1080), 20, None, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().and_then(|n| n.parse().ok()).unwrap_or(seconds),
            "--avatar" => avatar = args.next().map(PathBuf::from),
            "--encoder" => match args.next().as_deref() {
                Some("auto") => choices.push(EncoderChoice::Auto),
                Some("openh264") => choices.push(EncoderChoice::Openh264),
                Some("cuda-readback") => choices.push(EncoderChoice::CudaReadback),
                other => eprintln!("unknown encoder {other:?}"),
            },
            other => {
                if let Some((w, h)) = other.split_once('x').and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                {
                    size = (w, h);
                }
            }
        }
    }
    if choices.is_empty() {
        choices = vec![EncoderChoice::Openh264, EncoderChoice::Auto];
    }
    println!(
        "{seconds} s measured per row after 1 s warm-up; avatar: {}\n",
        avatar.as_ref().map_or("built-in".into(), |p: &PathBuf| p.display().to_string())
    );
    println!("| size | [video] encoder | encoder running | fallback | frames | late frames | stage CPU cores |");
    println!("|---|---|---|---|---|---|---|");
    for choice in choices {
        row(size.0, size.1, seconds, choice, avatar.clone());
    }
}

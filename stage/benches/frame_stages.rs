//! Per-stage cost of one frame on the CPU path (lavapipe → openh264 → FLV), and the CPU the
//! stage needs at 30 fps. Prints a Markdown table; `cargo bench -p emcee-stage`.
//!
//! Usage: `cargo bench -p emcee-stage --bench frame_stages -- [WIDTHxHEIGHT ...] [--frames N]
//! [--avatar FILE.vrm] [--camera close|medium|wide]` (default 1280x720 and 640x360, 150 frames
//! each after 15 warm-up frames, the built-in avatar, medium shot).

use std::time::{Duration, Instant};

mod common;
use common::process_cpu;

use emcee_nvenc::{EncoderSettings, I420Frame, OpenH264Encoder, Picture, VideoEncoder};
use emcee_protocol::{media_ts_of_frame, CameraPreset, Scene};
use emcee_renderer::{Pose, Renderer};
use emcee_stream::aac::AacEncoder;
use emcee_stream::mux::Packager;

const FPS: u32 = 30;
const WARM_UP: usize = 15;

#[derive(Default)]
struct Totals {
    gpu_render: f64,
    gpu_convert: f64,
    render_call: f64,
    encode: f64,
    mux: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The renderer for `avatar` (a .glb/.vrm), or the built-in avatar.
fn renderer(width: u32, height: u32, avatar: Option<&[u8]>) -> Renderer {
    let background = [0x1f, 0x35, 0x50];
    match avatar {
        Some(bytes) => {
            let model = emcee_renderer::model::Model::from_glb(bytes).expect("a valid avatar");
            Renderer::with_model(width, height, background, model).expect("a Vulkan device")
        }
        None => Renderer::new(width, height, background).expect("a Vulkan device"),
    }
}

fn bench(width: u32, height: u32, frames: usize, avatar: Option<&[u8]>, camera: CameraPreset) -> String {
    let mut renderer = renderer(width, height, avatar);
    renderer.set_scene(&Scene { background_rgb: [0x1f, 0x35, 0x50], camera });
    let mut encoder = OpenH264Encoder::new(EncoderSettings {
        width,
        height,
        fps: FPS,
        bitrate_bps: 2_500_000,
        keyframe_interval: 2 * FPS,
    })
    .expect("openh264");
    let mut aac = AacEncoder::new(128_000, 2).expect("fdk-aac");
    let mut packager = Packager::default();
    let tone: Vec<i16> = (0..1600 * 2).map(|i| ((i as f32 * 0.05).sin() * 6000.0) as i16).collect();

    let mut t = Totals::default();
    let mut cpu_start = Duration::ZERO;
    let mut wall_start = Instant::now();
    for i in 0..WARM_UP + frames {
        if i == WARM_UP {
            t = Totals::default();
            cpu_start = process_cpu();
            wall_start = Instant::now();
        }
        let phase = i as f32 / FPS as f32;
        let pose = Pose {
            jaw_open: (phase * 9.0).sin().abs(),
            mouth_spread: (phase * 5.0).sin() * 0.3,
            head_yaw: (phase * 0.7).sin() * 0.05,
            blink: if i % 90 < 6 { 1.0 } else { 0.0 },
            smile: 0.5,
            ..Pose::default()
        };
        let start = Instant::now();
        let frame = renderer.render(&pose).expect("render").to_vec();
        let rendered = Instant::now();
        if let Some(g) = renderer.last_timings() {
            t.gpu_render += g.render_ms;
            t.gpu_convert += g.convert_ms;
        }
        let i420 = I420Frame::new(width, height, &frame).expect("frame");
        let encoded = encoder.encode(Picture::Host(i420), i as u64).expect("encode");
        let encoded_at = Instant::now();
        let _video =
            packager.video(media_ts_of_frame(i as u64, FPS), &encoded.annex_b, encoded.keyframe).expect("avcc");
        let mut audio = Vec::new();
        aac.push(&tone, &mut audio).expect("aac");
        for a in &audio {
            let _ = Packager::audio(a);
        }
        let done = Instant::now();
        t.render_call += ms(rendered - start);
        t.encode += ms(encoded_at - rendered);
        t.mux += ms(done - encoded_at);
    }
    let wall = wall_start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_start);
    let n = frames as f64;

    // The same poses with one frame in flight (as the stage renders): wall time per frame of
    // rendering alone, submit to read-back.
    let pipelined_start = Instant::now();
    for i in 0..frames {
        let pose = Pose { jaw_open: (i as f32 * 0.3).sin().abs(), ..Pose::default() };
        let _ = renderer.render_next(&pose).expect("render").map(<[u8]>::to_vec);
    }
    let _ = renderer.flush().expect("render");
    let pipelined = ms(pipelined_start.elapsed()) / n;
    let per_frame_cpu_ms = ms(cpu) / n;
    let total = (t.render_call + t.encode + t.mux) / n;
    format!(
        "| {width}x{height} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} |",
        t.gpu_render / n,
        t.gpu_convert / n,
        t.render_call / n,
        pipelined,
        t.encode / n,
        t.mux / n,
        total,
        1000.0 * n / ms(wall),
        per_frame_cpu_ms * f64::from(FPS) / 1000.0,
    )
}

fn main() {
    let mut sizes = Vec::new();
    let mut frames = 150;
    let mut avatar: Option<(String, Vec<u8>)> = None;
    let mut camera = CameraPreset::Medium;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--frames" {
            frames = args.next().and_then(|f| f.parse().ok()).unwrap_or(frames);
        } else if a == "--camera" {
            camera = args.next().and_then(|c| CameraPreset::from_name(&c)).expect("--camera close|medium|wide");
        } else if a == "--avatar" {
            let path = args.next().expect("--avatar FILE");
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            avatar = Some((path, bytes));
        } else if let Some((w, h)) = a.split_once('x') {
            if let (Ok(w), Ok(h)) = (w.parse(), h.parse()) {
                sizes.push((w, h));
            }
        }
    }
    if sizes.is_empty() {
        sizes = vec![(1280, 720), (640, 360)];
    }
    let probe = Renderer::new(64, 64, [0; 3]).expect("a Vulkan device");
    let avatar_name = avatar.as_ref().map_or("built-in", |a| a.0.as_str());
    println!("device: {}, avatar: {avatar_name}, camera: {camera:?}, {frames} frames per size\n", probe.device_name());
    drop(probe);
    println!("| size | GPU render ms | GPU convert ms | render call ms (incl. sync + readback) | render ms/frame, one in flight | encode ms | mux ms (AVCC+FLV+AAC) | total ms/frame | max fps (serial) | CPU cores at 30 fps |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (w, h) in sizes {
        println!("{}", bench(w, h, frames, avatar.as_ref().map(|a| a.1.as_slice()), camera));
    }
}

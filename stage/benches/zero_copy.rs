//! The zero-copy path against the host path, per frame: render + convert time, host bytes read
//! back, CPU per frame, and on an NVIDIA GPU the CUDA import's byte comparison and what NVENC
//! says. Prints a Markdown table; `cargo bench -p emcee-stage --bench zero_copy -- [WxH ...]
//! [--frames N]` (default 1920x1080, 150 frames after 15 warm-up frames, the built-in avatar).

use std::time::Instant;

mod common;
use common::process_cpu;

use emcee_nvenc::cuda::CudaRing;
use emcee_nvenc::nvenc::NvencEncoder;
use emcee_nvenc::{EncoderSettings, Picture, VideoEncoder};
use emcee_renderer::{FrameOutput, Pose, Renderer};
use emcee_stage::video_path::nv12_ring;

const WARM_UP: usize = 15;
const FPS: u32 = 30;

fn pose(i: usize) -> Pose {
    let phase = i as f32 / FPS as f32;
    Pose { jaw_open: (phase * 9.0).sin().abs(), head_yaw: (phase * 0.7).sin() * 0.05, ..Pose::default() }
}

struct Row {
    gpu_ms: f64,
    call_ms: f64,
    host_bytes: usize,
    cpu_cores_at_30: f64,
}

/// Renders `frames` frames one at a time; `each` sees every frame's read-back bytes.
fn run(renderer: &mut Renderer, frames: usize, mut each: impl FnMut(usize, &[u8], usize)) -> Row {
    let (mut gpu, mut call, mut host_bytes) = (0.0, 0.0, 0);
    let mut cpu_start = process_cpu();
    for i in 0..WARM_UP + frames {
        if i == WARM_UP {
            (gpu, call, host_bytes) = (0.0, 0.0, 0);
            cpu_start = process_cpu();
        }
        let start = Instant::now();
        let bytes = renderer.render(&pose(i)).expect("render").to_vec();
        call += start.elapsed().as_secs_f64() * 1000.0;
        if let Some(t) = renderer.last_timings() {
            gpu += t.render_ms + t.convert_ms;
        }
        host_bytes += bytes.len();
        each(i, &bytes, renderer.last_slot().unwrap_or(0));
    }
    let n = frames as f64;
    let cpu_ms = process_cpu().saturating_sub(cpu_start).as_secs_f64() * 1000.0 / n;
    Row { gpu_ms: gpu / n, call_ms: call / n, host_bytes: host_bytes / frames, cpu_cores_at_30: cpu_ms * 30.0 / 1000.0 }
}

fn renderer(width: u32, height: u32, output: FrameOutput) -> Renderer {
    Renderer::builtin_with_output(width, height, [0x1f, 0x35, 0x50], output).expect("a Vulkan device")
}

fn bench(width: u32, height: u32, frames: usize) {
    let mut host = renderer(width, height, FrameOutput::HostI420);
    let row = run(&mut host, frames, |_, _, _| {});
    drop(host);
    let print = |path: &str, r: &Row, note: &str| {
        println!(
            "| {width}x{height} | {path} | {:.2} | {:.2} | {} | {:.2} | {note} |",
            r.gpu_ms, r.call_ms, r.host_bytes, r.cpu_cores_at_30
        );
    };
    print("host I420 (openh264 input)", &row, "");

    let mut zero = renderer(width, height, FrameOutput::ExportedNv12);
    let row = run(&mut zero, frames, |_, _, _| {});
    print("exported NV12 (NVENC input)", &row, "");

    // The import, proven against the Vulkan readback of the same frames.
    let mut checked = renderer(width, height, FrameOutput::ExportedNv12WithReadback);
    let ring = nv12_ring(checked.export_ring().expect("export"));
    let cuda = match CudaRing::import(ring) {
        Ok(cuda) => cuda,
        Err(reason) => {
            println!("\nCUDA import: unavailable ({}): {reason}", reason.code());
            return;
        }
    };
    let mut from_cuda = Vec::new();
    let (mut differing, mut copy_ms) = (0usize, 0.0);
    let row = run(&mut checked, frames, |_, vulkan, slot| {
        let start = Instant::now();
        cuda.copy_to_host(slot, &mut from_cuda).expect("cuMemcpyDtoH");
        copy_ms += start.elapsed().as_secs_f64() * 1000.0;
        differing += vulkan.iter().zip(&from_cuda).filter(|(a, b)| a != b).count();
    });
    let note = format!(
        "CUDA copy {:.2} ms/frame; {differing} bytes differ over all frames",
        copy_ms / (WARM_UP + frames) as f64
    );
    print("exported NV12, CUDA readback check", &row, &note);

    timeline_row(width, height, frames);

    let settings = EncoderSettings { width, height, fps: FPS, bitrate_bps: 4_500_000, keyframe_interval: 2 * FPS };
    drop(cuda);
    let ring = CudaRing::import(nv12_ring(zero.export_ring().expect("export"))).expect("imported once already");
    let mut nvenc = match NvencEncoder::open(ring, settings) {
        Ok(e) => e,
        Err((reason, _)) => {
            println!("\nNVENC: unavailable ({}): {reason}", reason.code());
            return;
        }
    };
    let mut encode_ms = 0.0;
    let row = run(&mut zero, frames, |i, _, slot| {
        let start = Instant::now();
        // `run` renders with `render`, which waits for each frame: nothing to wait for here.
        nvenc.encode(Picture::Ring { slot, written_at: None }, i as u64).expect("nvenc");
        encode_ms += start.elapsed().as_secs_f64() * 1000.0;
    });
    print("zero-copy NVENC", &row, &format!("encode {:.2} ms/frame", encode_ms / (WARM_UP + frames) as f64));
}

/// Frames handed over before the GPU is done (`render_next` with an exported timeline
/// semaphore): the render call no longer waits, CUDA waits for the timeline value instead. Then
/// 30 more frames are compared with a reference renderer's readback of the same pose.
fn timeline_row(width: u32, height: u32, frames: usize) {
    let mut early = renderer(width, height, FrameOutput::ExportedNv12);
    let cuda = CudaRing::import(nv12_ring(early.export_ring().expect("export"))).expect("imported once already");
    if !cuda.has_timeline() {
        println!("\nno exported timeline semaphore on this device: frames are handed over after their fence");
        return;
    }
    let mut hand_over = |i: usize| -> Option<(f64, f64, usize)> {
        let start = Instant::now();
        let handed = early.render_next(&pose(i)).expect("render").is_some();
        let call = start.elapsed().as_secs_f64() * 1000.0;
        let slot = early.last_slot()?;
        let value = early.last_timeline_value().filter(|_| handed)?;
        let start = Instant::now();
        cuda.wait_written(value).expect("timeline wait");
        Some((call, start.elapsed().as_secs_f64() * 1000.0, slot))
    };
    let (mut call_ms, mut wait_ms, mut timed) = (0.0, 0.0, 0);
    let mut cpu_start = process_cpu();
    for i in 0..WARM_UP + frames {
        if i == WARM_UP {
            cpu_start = process_cpu();
        }
        if let (Some((call, wait, _)), true) = (hand_over(i), i >= WARM_UP) {
            (call_ms, wait_ms, timed) = (call_ms + call, wait_ms + wait, timed + 1);
        }
    }
    let cpu_ms = process_cpu().saturating_sub(cpu_start).as_secs_f64() * 1000.0 / frames as f64;
    let mut reference = renderer(width, height, FrameOutput::ExportedNv12WithReadback);
    let (mut from_cuda, mut differing) = (Vec::new(), 0);
    let first = WARM_UP + frames;
    for i in first..first + 30 {
        let Some((_, _, slot)) = hand_over(i) else { continue };
        cuda.copy_to_host(slot, &mut from_cuda).expect("cuMemcpyDtoH");
        let expected = reference.render(&pose(i - 1)).expect("render");
        differing += expected.iter().zip(&from_cuda).filter(|(a, b)| a != b).count();
    }
    let n = f64::from(timed.max(1));
    println!(
        "| {width}x{height} | exported NV12 handed over early (timeline) | – | {:.2} | 0 | {:.2} | CUDA wait {:.2} ms/frame; 30 frames checked, {differing} bytes differ |",
        call_ms / n,
        cpu_ms * 30.0 / 1000.0,
        wait_ms / n
    );
}

fn main() {
    let mut sizes = Vec::new();
    let mut frames = 150;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--frames" {
            frames = args.next().and_then(|n| n.parse().ok()).unwrap_or(frames);
        } else if let Some((w, h)) = arg.split_once('x') {
            if let (Ok(w), Ok(h)) = (w.parse(), h.parse()) {
                sizes.push((w, h));
            }
        }
    }
    if sizes.is_empty() {
        sizes.push((1920, 1080));
    }
    let device = renderer(64, 64, FrameOutput::HostI420).device_name().to_string();
    println!("device: {device}; {frames} frames per row after {WARM_UP} warm-up frames\n");
    println!("| size | path | GPU render+convert ms | render call ms (incl. sync + readback) | host bytes read back per frame | CPU cores at 30 fps (render only) | notes |");
    println!("|---|---|---|---|---|---|---|");
    for (w, h) in sizes {
        bench(w, h, frames);
    }
}

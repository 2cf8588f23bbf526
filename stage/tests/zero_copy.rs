//! The zero-copy path from the renderer's exported ring into CUDA and NVENC, and the automatic
//! fallback to openh264.
//!
//! Without an NVIDIA driver (CI) the CUDA tests print why they skip and the fallback test checks
//! the reason. On an NVIDIA GPU the import is proven byte for byte against the Vulkan readback
//! of the same frames; NVENC encodes where the GPU has the engine and otherwise reports a clean
//! reason (H100/H200/A100 have none).

use emcee_nvenc::cuda::CudaRing;
use emcee_nvenc::nvenc::NvencEncoder;
use emcee_nvenc::{
    CudaReadbackEncoder, EncoderSettings, I420Frame, OpenH264Encoder, Picture, Unavailable, VideoEncoder,
};
use emcee_protocol::EncoderChoice;
use emcee_renderer::{FrameOutput, Pose, Renderer};
use emcee_stage::video_path;

const W: u32 = 320;
const H: u32 = 180;

fn settings() -> EncoderSettings {
    EncoderSettings { width: W, height: H, fps: 30, bitrate_bps: 600_000, keyframe_interval: 10 }
}

fn renderer(output: FrameOutput) -> Result<Renderer, emcee_stage::error::PipelineError> {
    Ok(Renderer::builtin_with_output(W, H, [40, 50, 60], output)?)
}

fn pose(i: usize) -> Pose {
    Pose { jaw_open: (i % 7) as f32 / 7.0, head_yaw: (i as f32 * 0.1).sin() * 0.2, ..Pose::default() }
}

/// The ring imported into CUDA, or None (with the reason printed) where that cannot be done.
fn imported(renderer: &Renderer) -> Option<CudaRing> {
    let ring = video_path::nv12_ring(renderer.export_ring().expect("the renderer exports its ring"));
    match CudaRing::import(ring) {
        Ok(cuda) => Some(cuda),
        Err(reason @ (Unavailable::NoCudaDriver | Unavailable::NoMatchingCudaDevice { .. })) => {
            eprintln!("skipped: {reason}");
            None
        }
        Err(other) => panic!("a CUDA driver is here but the import failed: {other}"),
    }
}

#[test]
fn cuda_sees_exactly_the_bytes_vulkan_wrote() {
    let mut renderer = renderer(FrameOutput::ExportedNv12WithReadback).unwrap();
    let Some(cuda) = imported(&renderer) else { return };
    let mut from_cuda = Vec::new();
    let mut slots_seen = std::collections::BTreeSet::new();
    for i in 0..8 {
        let vulkan = renderer.render(&pose(i)).unwrap().to_vec();
        let slot = renderer.last_slot().unwrap();
        slots_seen.insert(slot);
        cuda.copy_to_host(slot, &mut from_cuda).unwrap();
        let frame_bytes = cuda.layout().frame_bytes as usize;
        assert_eq!(vulkan.len(), frame_bytes);
        let differing = vulkan.iter().zip(&from_cuda).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "frame {i}, slot {slot}: {differing} of {frame_bytes} bytes differ");
    }
    // Pipelined frames use both slots.
    for i in 8..12 {
        let Some(vulkan) = renderer.render_next(&pose(i)).unwrap().map(<[u8]>::to_vec) else { continue };
        let slot = renderer.last_slot().unwrap();
        slots_seen.insert(slot);
        cuda.copy_to_host(slot, &mut from_cuda).unwrap();
        assert!(vulkan == from_cuda, "pipelined frame {i}, slot {slot}");
    }
    assert!(slots_seen.len() >= 2, "slots used: {slots_seen:?}");
    eprintln!("CUDA import byte-exact: 12 frames of {W}x{H} over slots {slots_seen:?}");
}

#[test]
fn frames_handed_over_before_the_gpu_is_done_are_read_after_the_timeline_says_so() {
    let mut renderer = renderer(FrameOutput::ExportedNv12).unwrap();
    let Some(cuda) = imported(&renderer) else { return };
    if !cuda.has_timeline() {
        eprintln!("skipped: this Vulkan device exports no timeline semaphore (frames wait for their fence)");
        return;
    }
    // The same poses on a renderer that reads every frame back after its fence: the reference.
    let mut reference = renderer_with_readback();
    let (mut from_cuda, mut read_early) = (Vec::new(), Vec::new());
    let (mut handed_over, mut early_differed, mut values) = (0, 0, Vec::new());
    for i in 0..24 {
        let Some(_) = renderer.render_next(&pose(i)).unwrap() else { continue };
        let (slot, value) = (renderer.last_slot().unwrap(), renderer.last_timeline_value().unwrap());
        // Read at once, without waiting: what a reader would see without the semaphore (not
        // asserted; it shows whether the GPU was still drawing when the frame was handed over).
        cuda.copy_to_host(slot, &mut read_early).unwrap();
        cuda.wait_written(value).unwrap();
        cuda.copy_to_host(slot, &mut from_cuda).unwrap();
        let expected = reference.render(&pose(i - 1)).unwrap();
        assert!(from_cuda == expected, "frame {} (slot {slot}, value {value}) differs after the wait", i - 1);
        early_differed += usize::from(read_early != expected);
        handed_over += 1;
        values.push(value);
    }
    assert!(handed_over >= 20, "{handed_over} frames handed over");
    assert!(values.windows(2).all(|w| w[1] == w[0] + 1), "one timeline value per frame: {values:?}");
    eprintln!(
        "timeline: {handed_over} frames handed over before their fence, byte-exact after the wait; \
         {early_differed} of them differed when read without waiting"
    );
}

fn renderer_with_readback() -> Renderer {
    renderer(FrameOutput::ExportedNv12WithReadback).unwrap()
}

#[test]
fn the_verification_encoder_encodes_what_openh264_encodes_from_the_vulkan_readback() {
    let mut renderer = renderer(FrameOutput::ExportedNv12WithReadback).unwrap();
    let Some(cuda) = imported(&renderer) else { return };
    let layout = cuda.layout();
    let mut verifying = CudaReadbackEncoder::new(cuda, settings()).unwrap();
    let mut reference = OpenH264Encoder::new(settings()).unwrap();
    let mut i420 = Vec::new();
    for i in 0..20u64 {
        let nv12 = renderer.render(&pose(i as usize)).unwrap().to_vec();
        let slot = renderer.last_slot().unwrap();
        let written_at = renderer.last_timeline_value();
        let from_gpu = verifying.encode(Picture::Ring { slot, written_at }, i).unwrap();
        layout.to_i420(&nv12, &mut i420);
        let expected = reference.encode(Picture::Host(I420Frame::new(W, H, &i420).unwrap()), i).unwrap();
        assert_eq!(from_gpu.keyframe, i % 10 == 0, "frame {i}");
        assert!(from_gpu.annex_b == expected.annex_b, "frame {i}: the bitstreams differ");
    }
}

#[test]
fn nvenc_encodes_where_the_gpu_has_the_engine_and_says_why_not_elsewhere() {
    let mut renderer = renderer(FrameOutput::ExportedNv12).unwrap();
    let Some(cuda) = imported(&renderer) else { return };
    let mut nvenc = match NvencEncoder::open(cuda, settings()) {
        Ok(e) => e,
        Err((reason, _ring)) => {
            // The reasons a healthy NVIDIA machine can give; anything else is a bug.
            assert!(
                matches!(
                    reason,
                    Unavailable::NoEncodeLibrary(_)
                        | Unavailable::NoEncodeEngine(_)
                        | Unavailable::SessionLimit(_)
                        | Unavailable::ApiTooOld { .. }
                ),
                "{reason}"
            );
            eprintln!("NVENC unavailable ({}): {reason}", reason.code());
            return;
        }
    };
    for i in 0..30u64 {
        renderer.render(&pose(i as usize)).unwrap();
        let slot = renderer.last_slot().unwrap();
        let out = nvenc.encode(Picture::Ring { slot, written_at: renderer.last_timeline_value() }, i).unwrap();
        assert_eq!(out.keyframe, i % 10 == 0, "frame {i}");
        let has_sps = out.annex_b.windows(4).any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 7);
        assert_eq!(has_sps, out.keyframe, "frame {i}: SPS exactly on keyframes");
    }
}

#[test]
fn auto_falls_back_to_openh264_with_the_reason() {
    let path = video_path::open(EncoderChoice::Auto, settings(), renderer).unwrap();
    if path.zero_copy {
        eprintln!("this machine encodes zero-copy with {}", path.encoder.name());
        assert!(path.fallback.is_none());
        return;
    }
    assert_eq!(path.encoder.name(), "openh264");
    let report = path.fallback_report().expect("a fallback has a reason");
    let reason = path.fallback.unwrap();
    if !emcee_nvenc::cuda::driver_present() {
        assert_eq!(reason, Unavailable::NoCudaDriver);
    }
    assert_eq!(report.code, reason.code());
    assert!(!report.reason.is_empty());
    eprintln!("fallback: {} ({})", report.reason, report.code);

    let chosen = video_path::open(EncoderChoice::Openh264, settings(), renderer).unwrap();
    assert_eq!((chosen.encoder.name(), chosen.zero_copy), ("openh264", false));
    assert_eq!(chosen.fallback, Some(Unavailable::NotWanted));
}

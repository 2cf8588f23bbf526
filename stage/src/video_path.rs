//! Which way frames take from the renderer to H.264, chosen once when the pipeline opens.
//!
//! - **Zero-copy**: the renderer writes NV12 into its exported ring, CUDA imports the ring once
//!   and NVENC encodes each slot on the GPU (or, with `encoder = "cuda-readback"`, the slot is
//!   copied from CUDA memory and encoded by openh264: the proof of the import on GPUs without
//!   NVENC). No frame byte crosses to the host before the encoder.
//! - **Host**: the renderer reads I420 back and openh264 encodes it on the CPU.
//!
//! `auto` tries the zero-copy path and falls back to the host path on its own; the reason is a
//! typed [`Unavailable`], logged once and reported in every health message.

use emcee_nvenc::cuda::{CudaRing, ExportedBuffer, Nv12Layout, Nv12Ring};
use emcee_nvenc::nvenc::NvencEncoder;
use emcee_nvenc::{CudaReadbackEncoder, EncoderSettings, OpenH264Encoder, Unavailable, VideoEncoder};
use emcee_protocol::{EncoderChoice, EncoderFallback, StageConfig};
use emcee_renderer::{ExportedRing, FrameOutput, RenderError, Renderer};

use crate::error::PipelineError;

/// The renderer and the encoder that reads its frames.
pub struct VideoPath {
    pub renderer: Renderer,
    pub encoder: Box<dyn VideoEncoder>,
    /// The encoder reads ring slots on the GPU (else I420 bytes).
    pub zero_copy: bool,
    /// Why the zero-copy NVENC encoder is not the one running.
    pub fallback: Option<Unavailable>,
}

impl VideoPath {
    pub fn fallback_report(&self) -> Option<EncoderFallback> {
        self.fallback.as_ref().map(|r| EncoderFallback { code: r.code().into(), reason: r.to_string() })
    }
}

/// Opens the renderer and the encoder `choice` asks for, falling back to the host path.
/// `make_renderer` opens a renderer writing the given output.
pub fn open(
    choice: EncoderChoice,
    settings: EncoderSettings,
    make_renderer: impl Fn(FrameOutput) -> Result<Renderer, PipelineError>,
) -> Result<VideoPath, PipelineError> {
    let reason = match choice {
        EncoderChoice::Openh264 => Unavailable::NotWanted,
        EncoderChoice::Auto | EncoderChoice::CudaReadback => match open_zero_copy(choice, &settings, &make_renderer)? {
            Ok(path) => return Ok(path),
            Err(reason) => reason,
        },
    };
    if reason != Unavailable::NotWanted {
        tracing::warn!(reason = %reason, code = reason.code(), "zero-copy encoding unavailable; encoding on the CPU with openh264");
    }
    Ok(VideoPath {
        renderer: make_renderer(FrameOutput::HostI420)?,
        encoder: Box::new(OpenH264Encoder::new(settings)?),
        zero_copy: false,
        fallback: Some(reason),
    })
}

/// The zero-copy path, or why not. Only a broken renderer is an error: every other failure is
/// a reason to fall back.
fn open_zero_copy(
    choice: EncoderChoice,
    settings: &EncoderSettings,
    make_renderer: &impl Fn(FrameOutput) -> Result<Renderer, PipelineError>,
) -> Result<Result<VideoPath, Unavailable>, PipelineError> {
    // Checked before the renderer opens with exported memory, so that a machine without CUDA
    // (CI, lavapipe) does not build its renderer twice.
    if !emcee_nvenc::cuda::driver_present() {
        return Ok(Err(Unavailable::NoCudaDriver));
    }
    let renderer = match make_renderer(FrameOutput::ExportedNv12) {
        Ok(r) => r,
        Err(PipelineError::Render(RenderError::NoExport(why))) => return Ok(Err(Unavailable::NoExport(why))),
        Err(other) => return Err(other),
    };
    let ring = match renderer.export_ring() {
        Ok(ring) => nv12_ring(ring),
        Err(e) => return Ok(Err(Unavailable::NoExport(e.to_string()))),
    };
    let cuda = match CudaRing::import(ring) {
        Ok(cuda) => cuda,
        Err(reason) => return Ok(Err(reason)),
    };
    let opened: Result<Box<dyn VideoEncoder>, Unavailable> = match choice {
        EncoderChoice::CudaReadback => CudaReadbackEncoder::new(cuda, settings.clone())
            .map(|e| Box::new(e) as Box<dyn VideoEncoder>)
            .map_err(|e| Unavailable::Settings(e.to_string())),
        _ => {
            NvencEncoder::open(cuda, settings.clone()).map(|e| Box::new(e) as Box<dyn VideoEncoder>).map_err(|(r, _)| r)
        }
    };
    Ok(opened.map(|encoder| {
        let fallback = (choice == EncoderChoice::CudaReadback).then_some(Unavailable::NotWanted);
        tracing::info!(encoder = encoder.name(), "zero-copy encoding: frames stay on the GPU");
        VideoPath { renderer, encoder, zero_copy: true, fallback }
    }))
}

pub fn encoder_settings(config: &StageConfig) -> EncoderSettings {
    let v = &config.video;
    EncoderSettings {
        width: v.width,
        height: v.height,
        fps: v.fps,
        bitrate_bps: v.bitrate_kbps * 1000,
        keyframe_interval: v.keyframe_interval_frames,
    }
}

/// The renderer's exported ring, as the CUDA importer takes it.
pub fn nv12_ring(ring: ExportedRing) -> Nv12Ring {
    Nv12Ring {
        device_uuid: ring.device_uuid,
        layout: Nv12Layout {
            width: ring.width,
            height: ring.height,
            pitch: ring.pitch,
            uv_offset: ring.uv_offset,
            frame_bytes: ring.frame_bytes,
        },
        slots: ring
            .slots
            .into_iter()
            .map(|s| ExportedBuffer { fd: s.fd, allocation_size: s.allocation_size, dedicated: s.dedicated })
            .collect(),
        timeline: ring.timeline,
    }
}

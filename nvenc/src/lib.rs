//! Video encoders: frames in, H.264 Annex-B access units out.
//!
//! # Layout
//! - [`I420Frame`]: the planar frame the renderer's convert pass writes (BT.709, limited range).
//! - [`Picture`]: what an encoder is handed each tick: an I420 frame in host memory, or the
//!   index of a ring slot that holds the frame as NV12 on the GPU.
//! - [`VideoEncoder`]: what the stage drives, one picture per tick, never skipping one.
//! - [`OpenH264Encoder`]: the CPU encoder used on machines without NVENC (and on CI).
//! - [`cuda`]: the renderer's exported NV12 ring imported into CUDA once (no host copy).
//! - [`nvenc`]: the zero-copy NVENC encoder reading those CUDA buffers, loaded at run time.
//! - [`CudaReadbackEncoder`]: reads exactly the CUDA memory NVENC would, copies it to the host
//!   and feeds openh264: proof of the import on GPUs without an encode engine.
//! - [`Unavailable`]: why the zero-copy path cannot run here; the stage reports it and falls
//!   back to openh264.
//!
//! Unsafe code lives only in the two FFI modules, each block with its `SAFETY` note.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cuda;
pub mod nvenc;

use cuda::CudaRing;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
    SpsPpsStrategy, UsageType, VuiConfig,
};
use openh264::formats::YUVSlices;
use openh264::OpenH264API;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("frame size {width}x{height} is not supported: both must be even and between 16 and 3840x2160")]
    BadSize { width: u32, height: u32 },
    #[error("frame buffer is {got} bytes, an I420 {width}x{height} frame needs {need}")]
    BadBuffer { width: u32, height: u32, got: usize, need: usize },
    #[error("openh264 failed to {action}: {detail}")]
    OpenH264 { action: &'static str, detail: String },
    #[error("{call} failed: {status}")]
    Nvenc { call: &'static str, status: String },
    #[error("CUDA: {0}")]
    Cuda(String),
    #[error("there is no ring slot {0}")]
    NoSuchSlot(usize),
    #[error("the {encoder} encoder takes {wants}")]
    WrongInput { encoder: &'static str, wants: &'static str },
}

/// Why the zero-copy path (Vulkan → CUDA → NVENC) cannot run on this machine. Each is a normal
/// condition on some appliance or CI host, reported in health and metrics, never a crash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("[video] encoder chose another encoder")]
    NotWanted,
    #[error("the renderer cannot export its frames: {0}")]
    NoExport(String),
    #[error("no CUDA driver (libcuda.so.1 not found)")]
    NoCudaDriver,
    #[error("CUDA {call} failed: {error}")]
    Cuda { call: &'static str, error: String },
    #[error("no CUDA device is the renderer's GPU (Vulkan UUID {vulkan_uuid}; {cuda_devices} CUDA devices)")]
    NoMatchingCudaDevice { vulkan_uuid: String, cuda_devices: u32 },
    #[error("importing ring slot {slot} into CUDA failed: {error}")]
    Import { slot: usize, error: String },
    #[error("importing the renderer's timeline semaphore into CUDA failed: {0}")]
    ImportTimeline(String),
    #[error("no NVENC library: {0}")]
    NoEncodeLibrary(String),
    #[error("the driver's NVENC API is {}.{}, {}.{} is needed", driver.0, driver.1, needed.0, needed.1)]
    ApiTooOld { driver: (u32, u32), needed: (u32, u32) },
    #[error("this GPU has no NVENC engine: {0}")]
    NoEncodeEngine(String),
    #[error("NVENC session limit reached: {0}")]
    SessionLimit(String),
    #[error("NVENC on this GPU does not encode H.264")]
    NoH264,
    #[error("NVENC {call} failed: {status}")]
    Nvenc { call: &'static str, status: String },
    #[error("NVENC cannot encode these frames: {0}")]
    Settings(String),
}

impl Unavailable {
    /// A stable short name for metrics labels and alerts.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotWanted => "not_wanted",
            Self::NoExport(_) => "no_export",
            Self::NoCudaDriver => "no_cuda_driver",
            Self::Cuda { .. } => "cuda_error",
            Self::NoMatchingCudaDevice { .. } => "no_matching_cuda_device",
            Self::Import { .. } | Self::ImportTimeline(_) => "import_failed",
            Self::NoEncodeLibrary(_) => "no_encode_library",
            Self::ApiTooOld { .. } => "driver_too_old",
            Self::NoEncodeEngine(_) => "no_encode_engine",
            Self::SessionLimit(_) => "session_limit",
            Self::NoH264 => "no_h264",
            Self::Nvenc { .. } => "nvenc_error",
            Self::Settings(_) => "unsupported_settings",
        }
    }
}

/// Encoder settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_bps: u32,
    /// An IDR frame (with SPS/PPS) starts every this many frames.
    pub keyframe_interval: u32,
}

impl EncoderSettings {
    pub fn validate(&self) -> Result<(), EncodeError> {
        let (w, h) = (self.width, self.height);
        let ok = w % 2 == 0 && h % 2 == 0 && w >= 16 && h >= 16 && w.max(h) <= 3840 && w.min(h) <= 2160;
        if ok {
            Ok(())
        } else {
            Err(EncodeError::BadSize { width: w, height: h })
        }
    }
}

/// A borrowed I420 frame: full-resolution Y, then quarter-resolution U and V, tightly packed.
#[derive(Debug, Clone, Copy)]
pub struct I420Frame<'a> {
    pub width: u32,
    pub height: u32,
    pub data: &'a [u8],
}

impl<'a> I420Frame<'a> {
    pub fn byte_len(width: u32, height: u32) -> usize {
        let luma = width as usize * height as usize;
        luma + luma / 2
    }

    pub fn new(width: u32, height: u32, data: &'a [u8]) -> Result<Self, EncodeError> {
        let need = Self::byte_len(width, height);
        if data.len() < need {
            return Err(EncodeError::BadBuffer { width, height, got: data.len(), need });
        }
        Ok(Self { width, height, data: &data[..need] })
    }

    fn planes(&self) -> (&'a [u8], &'a [u8], &'a [u8]) {
        let luma = self.width as usize * self.height as usize;
        let chroma = luma / 4;
        (&self.data[..luma], &self.data[luma..luma + chroma], &self.data[luma + chroma..luma + 2 * chroma])
    }
}

/// One encoded access unit in Annex-B form.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub frame_index: u64,
    pub keyframe: bool,
    pub annex_b: Vec<u8>,
}

/// One tick's picture, as the renderer produced it.
#[derive(Debug, Clone, Copy)]
pub enum Picture<'a> {
    /// Read back to host memory.
    Host(I420Frame<'a>),
    /// Left on the GPU in this slot of the exported ring. `written_at`: the renderer's timeline
    /// value that signals once the frame is written (the encoder waits for it on the GPU);
    /// None when the renderer waited for the frame before handing it over.
    Ring { slot: usize, written_at: Option<u64> },
}

pub trait VideoEncoder: Send {
    /// Short name for health and metrics ("openh264", "nvenc", "cuda-readback").
    fn name(&self) -> &'static str;
    /// Encodes frame `frame_index`; always returns exactly one access unit.
    fn encode(&mut self, picture: Picture<'_>, frame_index: u64) -> Result<EncodedFrame, EncodeError>;
}

pub struct OpenH264Encoder {
    encoder: Encoder,
    settings: EncoderSettings,
}

impl OpenH264Encoder {
    pub fn new(settings: EncoderSettings) -> Result<Self, EncodeError> {
        settings.validate()?;
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(settings.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(settings.fps as f32))
            // Frames must leave at the configured rate: the encoder may never drop one.
            .skip_frames(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(settings.keyframe_interval))
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .scene_change_detect(false)
            .complexity(Complexity::Low)
            .num_threads(1)
            .vui(VuiConfig::bt709());
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| EncodeError::OpenH264 { action: "open", detail: e.to_string() })?;
        Ok(Self { encoder, settings })
    }
}

impl VideoEncoder for OpenH264Encoder {
    fn name(&self) -> &'static str {
        "openh264"
    }

    fn encode(&mut self, picture: Picture<'_>, frame_index: u64) -> Result<EncodedFrame, EncodeError> {
        let Picture::Host(frame) = picture else {
            return Err(EncodeError::WrongInput { encoder: "openh264", wants: "an I420 frame in host memory" });
        };
        if (frame.width, frame.height) != (self.settings.width, self.settings.height) {
            return Err(EncodeError::BadSize { width: frame.width, height: frame.height });
        }
        // The GOP is exactly `keyframe_interval` frames whatever openh264's own counter thinks.
        let want_key = frame_index.is_multiple_of(u64::from(self.settings.keyframe_interval));
        if want_key {
            self.encoder.force_intra_frame();
        }
        let (y, u, v) = frame.planes();
        let (w, h) = (frame.width as usize, frame.height as usize);
        let yuv = YUVSlices::new((y, u, v), (w, h), (w, w / 2, w / 2));
        let bitstream =
            self.encoder.encode(&yuv).map_err(|e| EncodeError::OpenH264 { action: "encode", detail: e.to_string() })?;
        let keyframe = matches!(bitstream.frame_type(), FrameType::IDR | FrameType::I);
        let annex_b = bitstream.to_vec();
        if annex_b.is_empty() {
            return Err(EncodeError::OpenH264 { action: "encode", detail: "empty access unit (frame skipped)".into() });
        }
        Ok(EncodedFrame { frame_index, keyframe, annex_b })
    }
}

/// The verification encoder: copies exactly the CUDA memory NVENC would read to the host and
/// encodes it with openh264. Slow (a device-to-host copy and a CPU encode per frame); it exists
/// to prove the zero-copy plumbing on GPUs without an encode engine.
pub struct CudaReadbackEncoder {
    ring: CudaRing,
    openh264: OpenH264Encoder,
    nv12: Vec<u8>,
    i420: Vec<u8>,
}

impl CudaReadbackEncoder {
    pub fn new(ring: CudaRing, settings: EncoderSettings) -> Result<Self, EncodeError> {
        let layout = ring.layout();
        if (layout.width, layout.height) != (settings.width, settings.height) {
            return Err(EncodeError::BadSize { width: layout.width, height: layout.height });
        }
        Ok(Self { ring, openh264: OpenH264Encoder::new(settings)?, nv12: Vec::new(), i420: Vec::new() })
    }

    /// The NV12 bytes of `slot` as CUDA sees them, once its frame is written.
    pub fn read_slot(&mut self, slot: usize, written_at: Option<u64>) -> Result<&[u8], EncodeError> {
        if let Some(value) = written_at {
            self.ring.wait_written(value).map_err(EncodeError::Cuda)?;
        }
        self.ring.copy_to_host(slot, &mut self.nv12).map_err(EncodeError::Cuda)?;
        Ok(&self.nv12)
    }
}

impl VideoEncoder for CudaReadbackEncoder {
    fn name(&self) -> &'static str {
        "cuda-readback"
    }

    fn encode(&mut self, picture: Picture<'_>, frame_index: u64) -> Result<EncodedFrame, EncodeError> {
        let Picture::Ring { slot, written_at } = picture else {
            return Err(EncodeError::WrongInput { encoder: "cuda-readback", wants: "a ring slot" });
        };
        self.read_slot(slot, written_at)?;
        let layout = self.ring.layout();
        layout.to_i420(&self.nv12, &mut self.i420);
        let frame = I420Frame::new(layout.width, layout.height, &self.i420)?;
        self.openh264.encode(Picture::Host(frame), frame_index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EncoderSettings {
        EncoderSettings { width: 64, height: 48, fps: 30, bitrate_bps: 300_000, keyframe_interval: 10 }
    }

    #[test]
    fn keyframes_exactly_on_the_interval_with_parameter_sets() {
        let mut enc = OpenH264Encoder::new(settings()).unwrap();
        let mut buf = vec![128u8; I420Frame::byte_len(64, 48)];
        for i in 0..25u64 {
            // A moving gradient so the encoder has real work.
            for (p, b) in buf.iter_mut().enumerate().take(64 * 48) {
                *b = ((p as u64 + i * 3) % 220 + 16) as u8;
            }
            let frame = I420Frame::new(64, 48, &buf).unwrap();
            let out = enc.encode(Picture::Host(frame), i).unwrap();
            assert_eq!(out.keyframe, i % 10 == 0, "frame {i}");
            // SPS (type 7) present exactly on keyframes.
            let has_sps = out.annex_b.windows(5).any(|w| w[..4] == [0, 0, 0, 1] && w[4] & 0x1f == 7);
            assert_eq!(has_sps, out.keyframe, "frame {i}");
        }
    }

    #[test]
    fn rejects_odd_sizes_and_short_buffers() {
        let bad = EncoderSettings { width: 63, ..settings() };
        assert!(matches!(OpenH264Encoder::new(bad), Err(EncodeError::BadSize { .. })));
        assert!(matches!(I420Frame::new(64, 48, &[0; 10]), Err(EncodeError::BadBuffer { .. })));
    }
}

//! Video encoders: I420 frames in, H.264 Annex-B access units out.
//!
//! # Layout
//! - [`I420Frame`]: the planar frame the renderer's convert pass writes (BT.709, limited range).
//! - [`VideoEncoder`]: what the stage drives, one frame per tick, never skipping a frame.
//! - [`OpenH264Encoder`]: the CPU encoder used on machines without NVENC (and on CI).
//!
//! The zero-copy NVENC encoder (Vulkan → CUDA → NVENC) joins here behind the same trait; the
//! stage picks it when it opens and falls back to openh264 otherwise.
#![forbid(unsafe_code)]

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

pub trait VideoEncoder: Send {
    /// Short name for health and metrics ("openh264", "nvenc").
    fn name(&self) -> &'static str;
    /// Encodes frame `frame_index`; always returns exactly one access unit.
    fn encode(&mut self, frame: &I420Frame<'_>, frame_index: u64) -> Result<EncodedFrame, EncodeError>;
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

    fn encode(&mut self, frame: &I420Frame<'_>, frame_index: u64) -> Result<EncodedFrame, EncodeError> {
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
            let out = enc.encode(&frame, i).unwrap();
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

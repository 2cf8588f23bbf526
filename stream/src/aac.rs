//! AAC-LC encoding of 48 kHz PCM with fdk-aac, stamped in media samples.
//!
//! The encoder has a priming delay (`nDelay`, 2048 samples for LC at 48 kHz): output frame `j`
//! holds input samples starting at `j·1024 − delay`. We stamp frames that way and drop those that
//! would start before zero, so audio and video share one timeline without an offset.

use bytes::Bytes;
use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

use crate::flv::aac_lc_audio_specific_config;

/// Samples per channel in one AAC-LC frame.
pub const AAC_FRAME_SAMPLES: u64 = 1024;
/// The media clock's rate: AAC frames are stamped in its samples.
pub const SAMPLE_RATE: u32 = emcee_protocol::MEDIA_CLOCK_HZ as u32;

#[derive(Debug, thiserror::Error)]
pub enum AacError {
    #[error("AAC encoder rejected its parameters ({channels} channels, {bitrate} bit/s): {detail}")]
    Open { channels: u8, bitrate: u32, detail: String },
    #[error("AAC encoding failed: {0}")]
    Encode(String),
    #[error("AAC-LC supports 1 or 2 channels here, not {0}")]
    Channels(u8),
}

/// One encoded AAC frame. `media_ts` is the first sample it decodes to, at 48 kHz.
#[derive(Debug, Clone)]
pub struct AacFrame {
    pub media_ts: u64,
    pub data: Bytes,
}

pub struct AacEncoder {
    encoder: Encoder,
    channels: u8,
    delay: u64,
    /// Interleaved samples not yet forming a whole frame.
    pending: Vec<i16>,
    frames_out: u64,
    /// Samples (per channel) taken in so far: the audio clock, which must stay equal to the
    /// video's media time (see [`AacEncoder::samples_in`]).
    samples_in: u64,
    scratch: Vec<u8>,
}

impl AacEncoder {
    pub fn new(bitrate: u32, channels: u8) -> Result<Self, AacError> {
        let mode = match channels {
            1 => ChannelMode::Mono,
            2 => ChannelMode::Stereo,
            n => return Err(AacError::Channels(n)),
        };
        let encoder = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(bitrate),
            sample_rate: SAMPLE_RATE,
            transport: Transport::Raw,
            channels: mode,
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(|e| AacError::Open { channels, bitrate, detail: e.to_string() })?;
        let info = encoder.info().map_err(|e| AacError::Open { channels, bitrate, detail: e.to_string() })?;
        Ok(Self {
            encoder,
            channels,
            delay: u64::from(info.nDelay),
            pending: Vec::with_capacity(AAC_FRAME_SAMPLES as usize * 2 * usize::from(channels)),
            frames_out: 0,
            samples_in: 0,
            scratch: vec![0; 8192],
        })
    }

    /// The AudioSpecificConfig for the FLV sequence header.
    pub fn audio_specific_config(&self) -> [u8; 2] {
        // Both inputs were accepted by the encoder, so they are valid for the table.
        aac_lc_audio_specific_config(SAMPLE_RATE, self.channels).unwrap_or([0x11, 0x90])
    }

    /// Encoder priming delay in samples.
    pub fn delay(&self) -> u64 {
        self.delay
    }

    /// Samples per channel taken in so far (held back ones included). The media loop compares
    /// it with the video's media time: any difference is A/V drift.
    pub fn samples_in(&self) -> u64 {
        self.samples_in
    }

    /// Encodes interleaved PCM; appends every complete frame to `out`.
    pub fn push(&mut self, interleaved: &[i16], out: &mut Vec<AacFrame>) -> Result<(), AacError> {
        self.pending.extend_from_slice(interleaved);
        self.samples_in += (interleaved.len() / usize::from(self.channels)) as u64;
        let frame_len = AAC_FRAME_SAMPLES as usize * usize::from(self.channels);
        let whole = self.pending.len() / frame_len * frame_len;
        let mut offset = 0;
        while offset < whole {
            let input = &self.pending[offset..offset + frame_len];
            let info = self.encoder.encode(input, &mut self.scratch).map_err(|e| AacError::Encode(e.to_string()))?;
            // fdk consumes whole frames in raw mode; anything else is a bug worth surfacing.
            if info.input_consumed != frame_len {
                return Err(AacError::Encode(format!("consumed {} of {frame_len} samples", info.input_consumed)));
            }
            offset += frame_len;
            if info.output_size > 0 {
                self.emit(info.output_size, out);
            }
        }
        self.pending.drain(..whole);
        Ok(())
    }

    fn emit(&mut self, size: usize, out: &mut Vec<AacFrame>) {
        let start = self.frames_out * AAC_FRAME_SAMPLES;
        self.frames_out += 1;
        if start >= self.delay {
            out.push(AacFrame { media_ts: start - self.delay, data: Bytes::copy_from_slice(&self.scratch[..size]) });
        }
    }

    /// Pushes silence until every sample before `end_ts` has left the encoder; frames that start
    /// at or after `end_ts` are not emitted, so audio ends with the video.
    pub fn finish(&mut self, end_ts: u64, out: &mut Vec<AacFrame>) -> Result<(), AacError> {
        let silence = vec![0i16; AAC_FRAME_SAMPLES as usize * usize::from(self.channels)];
        let mut produced = Vec::new();
        // Bounded: the delay is a few frames; the extra margin covers the partial pending frame.
        for _ in 0..(self.delay / AAC_FRAME_SAMPLES + 4) {
            if self.frames_out * AAC_FRAME_SAMPLES >= end_ts + self.delay {
                break;
            }
            self.push(&silence, &mut produced)?;
        }
        out.extend(produced.into_iter().filter(|f| f.media_ts < end_ts));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_stamped_contiguously_from_zero() {
        let mut enc = AacEncoder::new(128_000, 2).unwrap();
        assert!(enc.delay() > 0);
        let mut out = Vec::new();
        // One second of a 440 Hz tone, pushed in video-frame-sized pieces (1600 samples).
        let tone: Vec<i16> = (0..48_000)
            .flat_map(|i| {
                let s = ((i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * 8000.0) as i16;
                [s, s]
            })
            .collect();
        for chunk in tone.chunks(1600 * 2) {
            enc.push(chunk, &mut out).unwrap();
        }
        enc.finish(48_000, &mut out).unwrap();
        assert_eq!(out[0].media_ts, 0);
        for pair in out.windows(2) {
            assert_eq!(pair[1].media_ts - pair[0].media_ts, AAC_FRAME_SAMPLES);
        }
        let last = out.last().unwrap().media_ts;
        assert!(last < 48_000 && last + AAC_FRAME_SAMPLES >= 48_000, "last frame at {last}");
        assert!(out.iter().all(|f| !f.data.is_empty()));
        assert_eq!(enc.audio_specific_config(), [0x11, 0x90]);
    }

    #[test]
    fn rejects_unsupported_channel_counts() {
        assert!(matches!(AacEncoder::new(128_000, 6), Err(AacError::Channels(6))));
    }
}

//! What flows from the encoders to the destinations: media packets stamped in media samples,
//! the stream's description sent before them, and the conversion to RTMP milliseconds.

use std::sync::Arc;

use bytes::Bytes;
use emcee_protocol::MEDIA_CLOCK_HZ;

/// Media for the sinks. Timestamps are 48 kHz media samples; bodies are FLV tag bodies.
#[derive(Debug, Clone)]
pub enum MediaPacket {
    Video { media_ts: u64, keyframe: bool, body: Bytes },
    Audio { media_ts: u64, body: Bytes },
}

/// The stream as its destinations announce it (RTMP metadata).
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamDescription {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub video_kbps: u32,
    pub audio_kbps: u32,
    pub audio_channels: u8,
}

/// What every (re)connection sends before media: the description and the codec headers.
#[derive(Debug, Clone, Default)]
pub struct StreamHeaders {
    pub description: StreamDescription,
    /// FLV video body with the AVC decoder configuration record.
    pub video: Option<Bytes>,
    /// FLV audio body with the AudioSpecificConfig.
    pub audio: Option<Bytes>,
}

impl MediaPacket {
    pub fn media_ts(&self) -> u64 {
        match self {
            Self::Video { media_ts, .. } | Self::Audio { media_ts, .. } => *media_ts,
        }
    }
}

/// What a destination's queue carries.
pub(crate) enum SinkItem {
    Media(Arc<MediaPacket>),
    End,
}

/// 48 kHz media samples → RTMP milliseconds (32-bit, wrapping as the protocol does).
pub fn media_to_ms(media_ts: u64) -> u32 {
    (media_ts * 1000 / MEDIA_CLOCK_HZ) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_time_converts_to_ms_at_the_edge() {
        assert_eq!(media_to_ms(1600), 33);
        assert_eq!(media_to_ms(48_000 * 3600), 3_600_000);
    }
}

//! Encoded media in, FLV out: the one place that packages the encoders' output for the
//! destinations. H.264 access units arrive in Annex-B and leave as AVCC FLV bodies; the
//! parameter sets are tracked so that the decoder configuration (the video sequence header every
//! new session starts with) is replaced only when they change. AAC frames leave as FLV audio
//! bodies; the AudioSpecificConfig becomes the audio sequence header at start.

use std::time::Duration;

use bytes::Bytes;

use crate::aac::AacFrame;
use crate::distributor::Distributor;
use crate::flv::{self, FlvError};
pub use crate::packet::StreamDescription;
use crate::packet::{MediaPacket, StreamHeaders};
use crate::record::RecorderConfig;
use crate::rtmp::{Output, RtmpError};
use crate::stats::SinkStats;

/// Packages encoded units as FLV bodies and hands them to the [`Distributor`].
pub struct Muxer {
    distributor: Distributor,
    packager: Packager,
}

impl Muxer {
    /// Starts one publishing task per output; `audio_config`: the AAC AudioSpecificConfig.
    pub fn start(
        outputs: &[Output],
        description: StreamDescription,
        audio_config: &[u8],
        rt: &tokio::runtime::Handle,
    ) -> Result<Self, RtmpError> {
        let headers = StreamHeaders { description, video: None, audio: Some(flv::audio_sequence_header(audio_config)) };
        let distributor = Distributor::start(outputs, headers, rt)?;
        Ok(Self { distributor, packager: Packager::default() })
    }

    /// Adds the recorder as one more destination.
    pub fn add_recorder(&mut self, config: RecorderConfig, rt: &tokio::runtime::Handle) {
        self.distributor.add_recorder(config, rt);
    }

    /// Every destination's URL and stats, for health reports.
    pub fn stats(&self) -> Vec<(String, std::sync::Arc<SinkStats>)> {
        self.distributor.stats()
    }

    /// Sends one H.264 access unit (Annex-B) stamped at `media_ts`; a new decoder configuration
    /// first when its parameter sets changed. Err: the unit could not be packaged (nothing sent).
    pub fn video(&mut self, media_ts: u64, annex_b: &[u8], keyframe: bool) -> Result<(), FlvError> {
        let (config, packet) = self.packager.video(media_ts, annex_b, keyframe)?;
        if let Some(config) = config {
            self.distributor.set_codec_headers(Some(config), None);
        }
        self.distributor.send(packet);
        Ok(())
    }

    /// Sends AAC frames, in order.
    pub fn audio(&mut self, frames: impl IntoIterator<Item = AacFrame>) {
        for frame in frames {
            self.distributor.send(Packager::audio(&frame));
        }
    }

    /// Ends every stream cleanly (queued media is sent first), waiting at most `timeout`.
    pub async fn finish(self, timeout: Duration) {
        self.distributor.finish(timeout).await;
    }
}

/// The FLV packaging itself, without destinations (what the [`Muxer`] runs on every unit; the
/// stage's benchmark measures it alone).
#[derive(Debug, Default)]
pub struct Packager {
    /// The SPS and PPS of the decoder configuration last announced.
    parameter_sets: Option<(Vec<u8>, Vec<u8>)>,
}

impl Packager {
    /// The video packet, and the new video sequence header when the unit's parameter sets
    /// differ from the last ones. Parameter sets that make no valid configuration are reported
    /// and the frame still goes (the last good configuration stays).
    pub fn video(
        &mut self,
        media_ts: u64,
        annex_b: &[u8],
        keyframe: bool,
    ) -> Result<(Option<Bytes>, MediaPacket), FlvError> {
        let au = flv::annex_b_to_avcc(annex_b, keyframe)?;
        let mut config = None;
        if let (Some(sps), Some(pps)) = (&au.sps, &au.pps) {
            let changed = self.parameter_sets.as_ref().is_none_or(|(s, p)| s != sps || p != pps);
            if changed {
                match flv::avc_decoder_configuration_record(sps, pps) {
                    Ok(record) => {
                        config = Some(flv::video_sequence_header(&record));
                        self.parameter_sets = Some((sps.clone(), pps.clone()));
                    }
                    Err(e) => tracing::error!(error = %e, "bad parameter sets"),
                }
            }
        }
        Ok((config, MediaPacket::Video { media_ts, keyframe: au.keyframe, body: flv::video_frame(&au) }))
    }

    /// One AAC frame as an FLV audio packet.
    pub fn audio(frame: &AacFrame) -> MediaPacket {
        MediaPacket::Audio { media_ts: frame.media_ts, body: flv::audio_frame(&frame.data) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(sps_level: u8) -> Vec<u8> {
        vec![0, 0, 0, 1, 0x67, 100, 0, sps_level, 0xAC, 0, 0, 1, 0x68, 0xEE, 0x3C, 0, 0, 1, 0x65, 0xAA]
    }

    #[test]
    fn the_decoder_configuration_is_announced_only_when_the_parameter_sets_change() {
        let mut p = Packager::default();
        let (first, packet) = p.video(0, &unit(31), true).unwrap();
        assert!(first.is_some(), "the first parameter sets are announced");
        assert!(matches!(packet, MediaPacket::Video { media_ts: 0, keyframe: true, .. }));
        assert!(p.video(1600, &unit(31), true).unwrap().0.is_none(), "the same sets again: nothing new");
        let plain = [0, 0, 0, 1, 0x41, 0x9A];
        let (none, packet) = p.video(3200, &plain, false).unwrap();
        assert!(none.is_none());
        let MediaPacket::Video { body, .. } = packet else { panic!("video") };
        assert_eq!(&body[..], &[0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0x9A]);
        assert!(p.video(4800, &unit(40), true).unwrap().0.is_some(), "new sets are announced");
    }

    #[test]
    fn bad_parameter_sets_keep_the_frame_and_the_last_configuration() {
        let mut p = Packager::default();
        p.video(0, &unit(31), true).unwrap();
        let short_sps = [0, 0, 0, 1, 0x67, 0, 0, 1, 0x68, 0xEE, 0, 0, 1, 0x65, 0xAA];
        let (config, packet) = p.video(1600, &short_sps, true).unwrap();
        assert!(config.is_none());
        assert!(matches!(packet, MediaPacket::Video { keyframe: true, .. }));
        assert!(p.video(3200, &unit(31), true).unwrap().0.is_none(), "the last good sets still stand");
    }

    #[test]
    fn audio_frames_keep_their_media_time() {
        let frame = AacFrame { media_ts: 1024, data: Bytes::from_static(&[9]) };
        let MediaPacket::Audio { media_ts, body } = Packager::audio(&frame) else { panic!("audio") };
        assert_eq!((media_ts, &body[..]), (1024, &[0xAF, 1, 9][..]));
    }
}

//! The fan-out: every encoded packet to every destination (RTMP sessions and the recorder),
//! each behind its own bounded queue measured in media time, so that a slow destination never
//! blocks the encoder or the others.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use emcee_protocol::RtmpUrl;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::packet::{MediaPacket, SinkItem, StreamHeaders};
use crate::record::{Recorder, RecorderConfig};
use crate::rtmp::sink::Sink;
use crate::rtmp::{Output, RtmpError};
use crate::stats::SinkStats;

/// Packets a destination may hold at all (≈ 13 s at 30 fps with audio): the hard cap behind the
/// duration policy, reached only by a destination that has stopped taking media.
const QUEUE_PACKETS: usize = 1024;
/// Queued media beyond which video is dropped until the next keyframe.
pub const CONGESTION_MS: u64 = 700;
struct Destination {
    url: String,
    tx: mpsc::Sender<SinkItem>,
    stats: Arc<SinkStats>,
    /// After a queue overflow, video waits for the next keyframe (audio keeps flowing).
    waiting_for_keyframe: bool,
    task: JoinHandle<()>,
}

/// Fans encoded packets out to every destination without ever blocking the encoder.
pub struct Distributor {
    headers: Arc<Mutex<StreamHeaders>>,
    destinations: Vec<Destination>,
}

impl Distributor {
    /// Spawns one publishing task per URL on the current tokio runtime. URLs are validated first.
    pub fn start(outputs: &[Output], headers: StreamHeaders, rt: &tokio::runtime::Handle) -> Result<Self, RtmpError> {
        let mut sinks = Vec::with_capacity(outputs.len());
        for output in outputs {
            let target = RtmpUrl::parse(&output.url)?;
            let tls = match target.tls {
                true => Some(
                    emcee_protocol::tls::client_config(output.ca_file.as_deref())
                        .map_err(|detail| RtmpError::Tls { host: target.host.clone(), detail })?,
                ),
                false => None,
            };
            sinks.push((output, target, tls));
        }
        let headers = Arc::new(Mutex::new(headers));
        let destinations = sinks
            .into_iter()
            .map(|(output, target, tls)| {
                let (tx, rx) = mpsc::channel(QUEUE_PACKETS);
                let stats = Arc::new(SinkStats::default());
                stats.set_state("connecting");
                let sink = Sink { target, tls, output: output.clone(), headers: headers.clone(), stats: stats.clone() };
                let task = rt.spawn(sink.run(rx));
                Destination { url: output.url.clone(), tx, stats, waiting_for_keyframe: false, task }
            })
            .collect();
        Ok(Self { headers, destinations })
    }

    /// Adds the recorder as one more destination, with its own queue and thread.
    pub fn add_recorder(&mut self, config: RecorderConfig, rt: &tokio::runtime::Handle) {
        let (tx, rx) = mpsc::channel(QUEUE_PACKETS);
        let stats = Arc::new(SinkStats::default());
        let url = format!("file://{}", config.dir.display());
        let recorder = Recorder { config, headers: self.headers.clone(), stats: stats.clone() };
        let task = rt.spawn_blocking(move || recorder.run(rx));
        self.destinations.push(Destination { url, tx, stats, waiting_for_keyframe: false, task });
    }

    /// Sets the codec headers (sent at the start of every connection).
    pub fn set_codec_headers(&self, video: Option<Bytes>, audio: Option<Bytes>) {
        if let Ok(mut h) = self.headers.lock() {
            if video.is_some() {
                h.video = video;
            }
            if audio.is_some() {
                h.audio = audio;
            }
        }
    }

    /// Queues `packet` for every destination; never waits. A destination with more than
    /// [`CONGESTION_MS`] queued loses video up to the next keyframe (audio always goes).
    pub fn send(&mut self, packet: MediaPacket) {
        let packet = Arc::new(packet);
        for dest in &mut self.destinations {
            if let MediaPacket::Video { keyframe, .. } = *packet {
                if !keyframe && (dest.waiting_for_keyframe || dest.stats.queued_ms() > CONGESTION_MS) {
                    dest.waiting_for_keyframe = true;
                    dest.stats.dropped_packets.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                dest.waiting_for_keyframe = false;
            }
            match dest.tx.try_send(SinkItem::Media(packet.clone())) {
                Ok(()) => dest.stats.enqueued(packet.media_ts()),
                Err(_) => {
                    dest.stats.dropped_packets.fetch_add(1, Ordering::Relaxed);
                    if matches!(*packet, MediaPacket::Video { .. }) {
                        dest.waiting_for_keyframe = true;
                    }
                }
            }
        }
    }

    pub fn stats(&self) -> Vec<(String, Arc<SinkStats>)> {
        self.destinations.iter().map(|d| (d.url.clone(), d.stats.clone())).collect()
    }

    /// Ends every stream cleanly (queued media is sent first), waiting at most `timeout`.
    pub async fn finish(self, timeout: Duration) {
        for dest in &self.destinations {
            // `send` waits for room: at the end of the show there is no encoder left to block.
            let _ = dest.tx.send(SinkItem::End).await;
        }
        for dest in self.destinations {
            let abort = dest.task.abort_handle();
            if tokio::time::timeout(timeout, dest.task).await.is_err() {
                tracing::warn!(url = %emcee_protocol::redact_stream_key(&dest.url), "output did not close in time; aborting it");
                abort.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congested_destinations_lose_video_to_the_next_keyframe_never_audio() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // The runtime is not running while media is sent, so the sink task never takes
        // anything off its queue: the queue only grows.
        let url = "rtmp://127.0.0.1:9/live/k".to_string();
        let mut d = rt
            .block_on(async {
                Distributor::start(&[Output::new(url)], StreamHeaders::default(), &tokio::runtime::Handle::current())
            })
            .unwrap();
        let stats = d.stats()[0].1.clone();
        let frame = 1600; // one 30 fps frame in 48 kHz samples
        let mut sent_video = Vec::new();
        for i in 0..60u64 {
            let key = i % 30 == 0;
            let before = stats.dropped_packets.load(Ordering::Relaxed);
            d.send(MediaPacket::Video { media_ts: i * frame, keyframe: key, body: Bytes::from_static(b"v") });
            d.send(MediaPacket::Audio { media_ts: i * frame, body: Bytes::from_static(b"a") });
            if stats.dropped_packets.load(Ordering::Relaxed) == before {
                sent_video.push(i);
            }
        }
        // Frames 0..=22 queue; with frame 22 the queue spans 22 frames (733 ms > 700), so video
        // waits for the keyframe at 30, which goes (keyframes always do), and the frames after
        // it are dropped again.
        let expected: Vec<u64> = (0..=22).chain([30]).collect();
        assert_eq!(sent_video, expected);
        assert_eq!(stats.dropped_packets.load(Ordering::Relaxed), 60 - expected.len() as u64, "no audio dropped");
        assert!(stats.queued_ms() >= 1900, "queued {} ms", stats.queued_ms());
        drop(d);
    }
}

//! RTMP publishing: one task per destination, fed by the [`Distributor`] through a bounded queue.
//!
//! The protocol layer (handshake, chunking, AMF0 commands) is `rml_rtmp`'s sans-IO session; the
//! socket, timing, reconnects and back-pressure are ours. Each (re)connection starts its
//! timestamps at 0 from a keyframe, preceded by metadata and both sequence headers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use emcee_protocol::RtmpUrl;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const MEDIA_CLOCK_HZ: u64 = 48_000;
/// Packets a destination may queue before it starts losing video (≈ 4 s at 30 fps + audio).
const QUEUE_PACKETS: usize = 320;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RECONNECT_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    #[error(transparent)]
    BadUrl(#[from] emcee_protocol::UrlError),
    #[error("network error talking to {host}: {source}")]
    Io { host: String, source: std::io::Error },
    #[error("RTMP handshake with {host} failed: {detail}")]
    Handshake { host: String, detail: String },
    #[error("RTMP protocol error with {host}: {detail}")]
    Protocol { host: String, detail: String },
    #[error("{host} rejected the connection to app `{app}`: {description}")]
    Rejected { host: String, app: String, description: String },
    #[error("{host} did not answer within {0:?}", CONNECT_TIMEOUT)]
    Timeout { host: String },
    #[error("{host} closed the connection")]
    Closed { host: String },
}

/// Media for the sinks. Timestamps are 48 kHz media samples; bodies are FLV tag bodies.
#[derive(Debug, Clone)]
pub enum MediaPacket {
    Video { media_ts: u64, keyframe: bool, body: Bytes },
    Audio { media_ts: u64, body: Bytes },
}

/// Stream description sent before media on every (re)connection.
#[derive(Debug, Clone, Default)]
pub struct StreamHeaders {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub video_kbps: u32,
    pub audio_kbps: u32,
    pub audio_channels: u8,
    /// FLV video body with the AVC decoder configuration record.
    pub video: Option<Bytes>,
    /// FLV audio body with the AudioSpecificConfig.
    pub audio: Option<Bytes>,
}

enum SinkItem {
    Media(Arc<MediaPacket>),
    End,
}

/// What a destination is doing, for health reports.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub bytes_sent: AtomicU64,
    pub dropped_packets: AtomicU64,
    pub connects: AtomicU64,
    state: Mutex<String>,
}

impl SinkStats {
    pub fn state(&self) -> String {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }
    fn set_state(&self, state: impl Into<String>) {
        if let Ok(mut s) = self.state.lock() {
            *s = state.into();
        }
    }
}

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
    pub fn start(urls: &[String], headers: StreamHeaders, rt: &tokio::runtime::Handle) -> Result<Self, RtmpError> {
        let parsed = urls.iter().map(|u| RtmpUrl::parse(u)).collect::<Result<Vec<_>, _>>()?;
        let headers = Arc::new(Mutex::new(headers));
        let destinations = urls
            .iter()
            .zip(parsed)
            .map(|(url, target)| {
                let (tx, rx) = mpsc::channel(QUEUE_PACKETS);
                let stats = Arc::new(SinkStats::default());
                stats.set_state("connecting");
                let task = rt.spawn(run_sink(target, rx, headers.clone(), stats.clone()));
                Destination { url: url.clone(), tx, stats, waiting_for_keyframe: false, task }
            })
            .collect();
        Ok(Self { headers, destinations })
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

    pub fn send(&mut self, packet: MediaPacket) {
        let packet = Arc::new(packet);
        for dest in &mut self.destinations {
            if let MediaPacket::Video { keyframe, .. } = *packet {
                if dest.waiting_for_keyframe && !keyframe {
                    dest.stats.dropped_packets.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                dest.waiting_for_keyframe = false;
            }
            if dest.tx.try_send(SinkItem::Media(packet.clone())).is_err() {
                dest.stats.dropped_packets.fetch_add(1, Ordering::Relaxed);
                if matches!(*packet, MediaPacket::Video { .. }) {
                    dest.waiting_for_keyframe = true;
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
                tracing::warn!(url = %dest.url, "output did not close in time; aborting it");
                abort.abort();
            }
        }
    }
}

async fn run_sink(
    target: RtmpUrl,
    mut rx: mpsc::Receiver<SinkItem>,
    headers: Arc<Mutex<StreamHeaders>>,
    stats: Arc<SinkStats>,
) {
    loop {
        stats.set_state("connecting");
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, Connection::open(&target))
            .await
            .unwrap_or_else(|_| Err(RtmpError::Timeout { host: target.host.clone() }));
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(host = %target.host, error = %e, "RTMP connect failed; retrying");
                stats.set_state(format!("retrying: {e}"));
                if wait_or_end(&mut rx, RECONNECT_DELAY).await {
                    return;
                }
                continue;
            }
        };
        stats.connects.fetch_add(1, Ordering::Relaxed);
        stats.set_state("publishing");
        tracing::info!(host = %target.host, app = %target.app, "RTMP publishing");
        match conn.publish(&mut rx, &headers, &stats).await {
            Ok(()) => {
                stats.set_state("closed");
                return;
            }
            Err(e) => {
                tracing::warn!(host = %target.host, error = %e, "RTMP session lost; reconnecting");
                stats.set_state(format!("retrying: {e}"));
                if wait_or_end(&mut rx, RECONNECT_DELAY).await {
                    return;
                }
            }
        }
    }
}

/// Waits before a reconnect while draining the queue (stale media is useless); true on `End`.
async fn wait_or_end(rx: &mut mpsc::Receiver<SinkItem>, delay: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(SinkItem::End)) => return true,
            Ok(Some(SinkItem::Media(_))) => {}
        }
    }
}

struct Connection {
    host: String,
    socket: TcpStream,
    session: ClientSession,
    read_buf: Vec<u8>,
}

impl Connection {
    async fn open(target: &RtmpUrl) -> Result<Self, RtmpError> {
        let host = target.host.clone();
        let io = |source| RtmpError::Io { host: host.clone(), source };
        let proto = |detail: String| RtmpError::Protocol { host: host.clone(), detail };
        let mut socket = TcpStream::connect((target.host.as_str(), target.port)).await.map_err(io)?;
        socket.set_nodelay(true).map_err(io)?;

        let mut handshake = Handshake::new(PeerType::Client);
        let hs_err = |e: rml_rtmp::handshake::HandshakeError| RtmpError::Handshake {
            host: host.clone(),
            detail: format!("{e:?}"),
        };
        let p0p1 = handshake.generate_outbound_p0_and_p1().map_err(hs_err)?;
        socket.write_all(&p0p1).await.map_err(io)?;
        let mut buf = vec![0u8; 8192];
        let leftover = loop {
            let n = socket.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                return Err(RtmpError::Closed { host });
            }
            match handshake.process_bytes(&buf[..n]).map_err(hs_err)? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    socket.write_all(&response_bytes).await.map_err(io)?;
                }
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    socket.write_all(&response_bytes).await.map_err(io)?;
                    break remaining_bytes;
                }
            }
        };

        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(target.tc_url.clone());
        config.flash_version = "FMLE/3.0 (compatible; emcee)".to_string();
        let (session, initial) = ClientSession::new(config).map_err(|e| proto(format!("{e:?}")))?;
        let mut conn = Self { host: host.clone(), socket, session, read_buf: buf };
        conn.write_results(initial).await?;
        if !leftover.is_empty() {
            let results = conn.session.handle_input(&leftover).map_err(|e| proto(format!("{e:?}")))?;
            conn.write_results(results).await?;
        }

        let request = conn.session.request_connection(target.app.clone()).map_err(|e| proto(format!("{e:?}")))?;
        conn.write_results(vec![request]).await?;
        conn.wait_for(|event| match event {
            ClientSessionEvent::ConnectionRequestAccepted => Some(Ok(())),
            ClientSessionEvent::ConnectionRequestRejected { description } => Some(Err(RtmpError::Rejected {
                host: host.clone(),
                app: target.app.clone(),
                description: description.clone(),
            })),
            _ => None,
        })
        .await?;

        let request = conn
            .session
            .request_publishing(target.key.clone(), PublishRequestType::Live)
            .map_err(|e| proto(format!("{e:?}")))?;
        conn.write_results(vec![request]).await?;
        conn.wait_for(|event| matches!(event, ClientSessionEvent::PublishRequestAccepted).then_some(Ok(()))).await?;
        Ok(conn)
    }

    fn proto_err(&self, detail: String) -> RtmpError {
        RtmpError::Protocol { host: self.host.clone(), detail }
    }

    fn io_err(&self, source: std::io::Error) -> RtmpError {
        RtmpError::Io { host: self.host.clone(), source }
    }

    /// Reads until `accept` returns a verdict for one of the session's events.
    async fn wait_for(
        &mut self,
        mut accept: impl FnMut(&ClientSessionEvent) -> Option<Result<(), RtmpError>>,
    ) -> Result<(), RtmpError> {
        loop {
            let results = self.read_once().await?;
            let mut verdict = None;
            let mut outbound = Vec::new();
            for result in results {
                match result {
                    ClientSessionResult::RaisedEvent(ref event) => {
                        if let ClientSessionEvent::UnhandleableAmf0Command { command_name, additional_values, .. } =
                            event
                        {
                            // Rejections such as NetStream.Publish.BadName arrive this way.
                            if command_name == "onStatus" || command_name == "_error" {
                                return Err(self.proto_err(format!("{command_name}: {additional_values:?}")));
                            }
                        }
                        verdict = verdict.or_else(|| accept(event));
                    }
                    other => outbound.push(other),
                }
            }
            self.write_results(outbound).await?;
            if let Some(v) = verdict {
                return v;
            }
        }
    }

    async fn read_once(&mut self) -> Result<Vec<ClientSessionResult>, RtmpError> {
        let n = self.socket.read(&mut self.read_buf).await.map_err(|e| self.io_err(e))?;
        if n == 0 {
            return Err(RtmpError::Closed { host: self.host.clone() });
        }
        let input = self.read_buf[..n].to_vec();
        self.session.handle_input(&input).map_err(|e| self.proto_err(format!("{e:?}")))
    }

    async fn write_results(&mut self, results: Vec<ClientSessionResult>) -> Result<(), RtmpError> {
        for result in results {
            if let ClientSessionResult::OutboundResponse(packet) = result {
                self.socket.write_all(&packet.bytes).await.map_err(|e| self.io_err(e))?;
            }
        }
        Ok(())
    }

    async fn send_result(
        &mut self,
        result: Result<ClientSessionResult, rml_rtmp::sessions::ClientSessionError>,
        stats: &SinkStats,
    ) -> Result<(), RtmpError> {
        let result = result.map_err(|e| self.proto_err(format!("{e:?}")))?;
        if let ClientSessionResult::OutboundResponse(packet) = &result {
            stats.bytes_sent.fetch_add(packet.bytes.len() as u64, Ordering::Relaxed);
        }
        self.write_results(vec![result]).await
    }

    /// Publishes until `End` (Ok) or a failure (Err, the caller reconnects).
    async fn publish(
        &mut self,
        rx: &mut mpsc::Receiver<SinkItem>,
        shared_headers: &Mutex<StreamHeaders>,
        stats: &SinkStats,
    ) -> Result<(), RtmpError> {
        // Codec headers may arrive after we connect (the first keyframe brings SPS/PPS), so they
        // are read again when the first keyframe is sent.
        let snapshot = || shared_headers.lock().map(|h| h.clone()).unwrap_or_default();
        let headers = snapshot();
        let metadata = StreamMetadata {
            video_width: Some(headers.width),
            video_height: Some(headers.height),
            video_codec_id: Some(7),
            video_frame_rate: Some(headers.fps as f32),
            video_bitrate_kbps: Some(headers.video_kbps),
            audio_codec_id: Some(10),
            audio_bitrate_kbps: Some(headers.audio_kbps),
            audio_sample_rate: Some(48_000),
            audio_channels: Some(u32::from(headers.audio_channels)),
            audio_is_stereo: Some(headers.audio_channels == 2),
            encoder: Some(concat!("emcee ", env!("CARGO_PKG_VERSION")).to_string()),
        };
        let r = self.session.publish_metadata(&metadata);
        self.send_result(r, stats).await?;

        // The session's clock starts at the first keyframe; nothing before it is sent.
        let mut base: Option<u64> = None;
        let mut sent_headers = false;
        loop {
            tokio::select! {
                item = rx.recv() => {
                    let packet = match item {
                        None | Some(SinkItem::End) => return self.close(base.is_some(), stats).await,
                        Some(SinkItem::Media(p)) => p,
                    };
                    let (ts, is_video, keyframe, body) = match &*packet {
                        MediaPacket::Video { media_ts, keyframe, body } => (*media_ts, true, *keyframe, body.clone()),
                        MediaPacket::Audio { media_ts, body } => (*media_ts, false, false, body.clone()),
                    };
                    if base.is_none() {
                        if !(is_video && keyframe) {
                            continue;
                        }
                        base = Some(ts);
                    }
                    let Some(start) = base else { continue };
                    if ts < start {
                        continue; // audio from before this session's first keyframe
                    }
                    let rtmp_ts = RtmpTimestamp::new(media_to_ms(ts - start));
                    if !sent_headers {
                        sent_headers = true;
                        let headers = snapshot();
                        if let Some(v) = headers.video.clone() {
                            let r = self.session.publish_video_data(v, rtmp_ts, false);
                            self.send_result(r, stats).await?;
                        }
                        if let Some(a) = headers.audio.clone() {
                            let r = self.session.publish_audio_data(a, rtmp_ts, false);
                            self.send_result(r, stats).await?;
                        }
                    }
                    let r = if is_video {
                        self.session.publish_video_data(body, rtmp_ts, !keyframe)
                    } else {
                        self.session.publish_audio_data(body, rtmp_ts, false)
                    };
                    self.send_result(r, stats).await?;
                }
                read = self.socket.read(&mut self.read_buf) => {
                    let n = read.map_err(|e| self.io_err(e))?;
                    if n == 0 {
                        return Err(RtmpError::Closed { host: self.host.clone() });
                    }
                    let input = self.read_buf[..n].to_vec();
                    let results = self.session.handle_input(&input).map_err(|e| self.proto_err(format!("{e:?}")))?;
                    self.write_results(results).await?;
                }
            }
        }
    }

    async fn close(&mut self, started: bool, stats: &SinkStats) -> Result<(), RtmpError> {
        if started {
            let r = self.session.publish_video_data(crate::flv::video_end_of_sequence(), RtmpTimestamp::new(0), false);
            // The end-of-sequence tag's timestamp is not used by players; failure here is harmless.
            let _ = self.send_result(r, stats).await;
        }
        if let Ok(results) = self.session.stop_publishing() {
            let _ = self.write_results(results).await;
        }
        let _ = self.socket.flush().await;
        let _ = self.socket.shutdown().await;
        Ok(())
    }
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

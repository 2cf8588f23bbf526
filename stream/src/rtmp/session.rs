//! One RTMP connection: TCP (and TLS), the handshake, the publish sequence, then media until
//! the end, a rotation or a failure — with liveness from the server's answers.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use emcee_protocol::{RtmpUrl, MEDIA_CLOCK_HZ};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{Output, RtmpError, PING_EVERY, SILENT_LIMIT, TCP_GIVE_UP};
use crate::packet::{media_to_ms, MediaPacket, SinkItem, StreamHeaders};
use crate::publish::{Answer, ProtocolError, Publisher};
use crate::stats::SinkStats;

/// How a session ended when it did not fail.
pub(crate) enum SessionEnd {
    /// The show ended; the stream is closed.
    Finished,
    /// Rotation: this keyframe starts the next session.
    Rotate(Arc<MediaPacket>),
}

pub(crate) struct Connection {
    host: String,
    /// The stream key, for `FCUnpublish`.
    key: String,
    socket: Box<dyn Transport>,
    protocol: Publisher,
    read_buf: Vec<u8>,
}

/// A byte stream to the server: TCP, or TLS over TCP.
trait Transport: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Transport for T {}

impl Connection {
    pub(crate) async fn open(
        target: &RtmpUrl,
        tls: Option<Arc<rustls::ClientConfig>>,
        ack_window: u32,
    ) -> Result<Self, RtmpError> {
        let host = target.host.clone();
        let io = |source| RtmpError::Io { host: host.clone(), source };
        // Resolved on every attempt: an ingest's address may move while we retry.
        let tcp = TcpStream::connect((target.host.as_str(), target.port)).await.map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        socket2::SockRef::from(&tcp).set_tcp_user_timeout(Some(TCP_GIVE_UP)).map_err(io)?;
        // Half a second of media in the kernel, not the megabytes autotuning allows: what a slow
        // link cannot take must show in our queue (measured in media time, where the congestion
        // policy acts), not hide in the socket for many seconds. Enough for round trips to 500 ms.
        let send_buffer = (ack_window / 2).max(16 * 1024);
        socket2::SockRef::from(&tcp).set_send_buffer_size(send_buffer as usize).map_err(io)?;
        let mut socket: Box<dyn Transport> = match tls {
            None => Box::new(tcp),
            Some(config) => {
                let tls_err = |detail: String| RtmpError::Tls { host: host.clone(), detail };
                let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                    .map_err(|e| tls_err(format!("`{}` is not a server name: {e}", target.host)))?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| tls_err(e.to_string()))?;
                Box::new(stream)
            }
        };

        let leftover = handshake(socket.as_mut(), &host).await?;
        let buf = vec![0u8; 8192];
        let mut conn =
            Self { host: host.clone(), key: target.key.clone(), socket, protocol: Publisher::new(), read_buf: buf };
        let connect = conn.protocol.connect(&target.app, &target.tc_url, "FMLE/3.0 (compatible; emcee)");
        conn.write(connect).await?;
        let mut pending = leftover;
        let connected = conn
            .wait_for(&mut pending, |answer| match answer {
                Answer::Connected => Some(Ok(())),
                Answer::ConnectRefused { description } => Some(Err(RtmpError::Rejected {
                    host: host.clone(),
                    app: target.app.clone(),
                    description: description.clone(),
                })),
                _ => None,
            })
            .await;
        match connected {
            Err(RtmpError::Closed { host }) => return Err(RtmpError::UnknownApp { host, app: target.app.clone() }),
            other => other?,
        }

        let prepare = conn.protocol.prepare(ack_window, &target.key);
        conn.write(prepare).await?;
        conn.wait_for(&mut pending, |answer| match answer {
            Answer::StreamCreated => Some(Ok(())),
            Answer::CreateStreamRefused { description } => Some(Err(RtmpError::PublishRefused {
                host: host.clone(),
                code: format!("createStream: {description}"),
            })),
            _ => None,
        })
        .await?;
        let publish = conn.protocol.publish(&target.key);
        conn.write(publish).await?;
        let published = conn
            .wait_for(&mut pending, |answer| match answer {
                Answer::Status { code, .. } if code == "NetStream.Publish.Start" => Some(Ok(())),
                Answer::Status { level, code, description } if level == "error" => {
                    Some(Err(refusal(&host, code, description)))
                }
                _ => None,
            })
            .await;
        match published {
            Err(RtmpError::Closed { host }) => {
                Err(RtmpError::Unauthorized { host, detail: "it closed the connection in answer to publish".into() })
            }
            Err(e) => Err(e),
            Ok(()) => Ok(conn),
        }
    }

    fn proto_err(&self, detail: String) -> RtmpError {
        RtmpError::Protocol { host: self.host.clone(), detail }
    }

    fn io_err(&self, source: std::io::Error) -> RtmpError {
        RtmpError::Io { host: self.host.clone(), source }
    }

    /// Reads until `accept` returns a verdict for one of the server's answers; `pending`: bytes
    /// already read and not yet parsed (after the handshake), consumed first.
    async fn wait_for(
        &mut self,
        pending: &mut Vec<u8>,
        mut accept: impl FnMut(&Answer) -> Option<Result<(), RtmpError>>,
    ) -> Result<(), RtmpError> {
        loop {
            let input = if pending.is_empty() { self.read_once().await? } else { std::mem::take(pending) };
            let (replies, answers) = self.protocol.read(&input).map_err(|e| self.proto_err(e.to_string()))?;
            self.write_bytes(&replies).await?;
            if let Some(verdict) = answers.iter().find_map(&mut accept) {
                return verdict;
            }
        }
    }

    async fn read_once(&mut self) -> Result<Vec<u8>, RtmpError> {
        let n = self.socket.read(&mut self.read_buf).await.map_err(|e| self.io_err(e))?;
        if n == 0 {
            return Err(RtmpError::Closed { host: self.host.clone() });
        }
        Ok(self.read_buf[..n].to_vec())
    }

    /// Writes what the protocol made; a write that blocks for [`SILENT_LIMIT`] means the path is
    /// dead (or too slow to carry the stream at all).
    async fn write(&mut self, made: Result<Vec<u8>, ProtocolError>) -> Result<(), RtmpError> {
        let bytes = made.map_err(|e| self.proto_err(e.to_string()))?;
        self.write_bytes(&bytes).await
    }

    async fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), RtmpError> {
        if bytes.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(SILENT_LIMIT, self.socket.write_all(bytes)).await {
            Ok(written) => written.map_err(|e| self.io_err(e)),
            Err(_) => Err(RtmpError::WriteStalled { host: self.host.clone() }),
        }
    }

    /// Writes media (counted as sent).
    async fn send(&mut self, made: Result<Vec<u8>, ProtocolError>, stats: &SinkStats) -> Result<(), RtmpError> {
        let bytes = made.map_err(|e| self.proto_err(e.to_string()))?;
        stats.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.write_bytes(&bytes).await
    }

    /// Publishes until `End`, a rotation, or a failure (Err: the caller reconnects). `first`:
    /// the keyframe a rotation carried over, sent before anything from the queue.
    pub(crate) async fn publish(
        &mut self,
        rx: &mut mpsc::Receiver<SinkItem>,
        shared_headers: &Mutex<StreamHeaders>,
        stats: &SinkStats,
        output: &Output,
        mut first: Option<Arc<MediaPacket>>,
    ) -> Result<SessionEnd, RtmpError> {
        self.send_metadata(&snapshot(shared_headers), stats).await?;
        let mut session = SessionMedia { started: Instant::now(), base: None, sent_headers: false };
        let mut last_heard = Instant::now();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut acked = AckCounter::default();
        loop {
            tokio::select! {
                _ = ping.tick() => self.ping(last_heard).await?,
                item = next_item(&mut first, rx) => {
                    let packet = match item {
                        None | Some(SinkItem::End) => {
                            self.close(session.base.is_some(), stats).await?;
                            return Ok(SessionEnd::Finished);
                        }
                        Some(SinkItem::Media(p)) => p,
                    };
                    stats.dequeued(&packet);
                    if let Some(end) = self.send_media(packet, &mut session, shared_headers, stats, output).await? {
                        return Ok(end);
                    }
                }
                read = self.socket.read(&mut self.read_buf) => {
                    let n = read.map_err(|e| self.io_err(e))?;
                    if n == 0 {
                        return Err(RtmpError::Closed { host: self.host.clone() });
                    }
                    last_heard = Instant::now();
                    self.on_answers(n, &mut acked, stats).await?;
                }
            }
        }
    }

    /// `@setDataFrame onMetaData`: what the stream is, before any media.
    async fn send_metadata(&mut self, headers: &StreamHeaders, stats: &SinkStats) -> Result<(), RtmpError> {
        let d = &headers.description;
        let number = |n: f64| Amf0Value::Number(n);
        let metadata = HashMap::from([
            ("width".to_string(), number(d.width.into())),
            ("height".to_string(), number(d.height.into())),
            ("videocodecid".to_string(), number(7.0)),
            ("framerate".to_string(), number(d.fps.into())),
            ("videodatarate".to_string(), number(d.video_kbps.into())),
            ("audiocodecid".to_string(), number(10.0)),
            ("audiodatarate".to_string(), number(d.audio_kbps.into())),
            ("audiosamplerate".to_string(), number(MEDIA_CLOCK_HZ as f64)),
            ("audiochannels".to_string(), number(d.audio_channels.into())),
            ("stereo".to_string(), Amf0Value::Boolean(d.audio_channels == 2)),
            ("encoder".to_string(), Amf0Value::Utf8String(concat!("emcee ", env!("CARGO_PKG_VERSION")).into())),
        ]);
        let made = self.protocol.metadata(metadata);
        self.send(made, stats).await
    }

    /// Pings the server, unless it has been silent for [`SILENT_LIMIT`]: then the session is dead.
    async fn ping(&mut self, last_heard: Instant) -> Result<(), RtmpError> {
        let silent = last_heard.elapsed();
        if silent >= SILENT_LIMIT {
            return Err(RtmpError::Silent { host: self.host.clone(), silent_ms: silent.as_millis() as u64 });
        }
        let made = self.protocol.ping();
        self.write(made).await
    }

    /// Sends one packet on the session's clock (which starts at its first keyframe; nothing
    /// before it is sent), the codec headers before the first. Some: the session ends here — a
    /// rotation, at a keyframe once the session is old enough.
    async fn send_media(
        &mut self,
        packet: Arc<MediaPacket>,
        session: &mut SessionMedia,
        shared_headers: &Mutex<StreamHeaders>,
        stats: &SinkStats,
        output: &Output,
    ) -> Result<Option<SessionEnd>, RtmpError> {
        let (ts, is_video, keyframe, body) = match &*packet {
            MediaPacket::Video { media_ts, keyframe, body } => (*media_ts, true, *keyframe, body.clone()),
            MediaPacket::Audio { media_ts, body } => (*media_ts, false, false, body.clone()),
        };
        let start = match session.base {
            Some(start) => start,
            None if is_video && keyframe => *session.base.insert(ts),
            None => return Ok(None),
        };
        if ts < start {
            return Ok(None); // audio from before this session's first keyframe
        }
        if keyframe && ts > start && session.started.elapsed() >= output.rotate_after {
            self.close(true, stats).await?;
            return Ok(Some(SessionEnd::Rotate(packet)));
        }
        let rtmp_ts = RtmpTimestamp::new(media_to_ms(ts - start).wrapping_add(output.first_timestamp_ms));
        if !session.sent_headers {
            session.sent_headers = true;
            // Codec headers may arrive after we connect (the first keyframe brings SPS/PPS), so
            // they are read again now.
            let headers = snapshot(shared_headers);
            if let Some(v) = headers.video.clone() {
                let made = self.protocol.video(v, rtmp_ts);
                self.send(made, stats).await?;
            }
            if let Some(a) = headers.audio.clone() {
                let made = self.protocol.audio(a, rtmp_ts);
                self.send(made, stats).await?;
            }
        }
        let made = if is_video { self.protocol.video(body, rtmp_ts) } else { self.protocol.audio(body, rtmp_ts) };
        self.send(made, stats).await?;
        Ok(None)
    }

    /// Reads the server's answers in the `n` bytes just received: acknowledgements are counted,
    /// an error status ends the session.
    async fn on_answers(&mut self, n: usize, acked: &mut AckCounter, stats: &SinkStats) -> Result<(), RtmpError> {
        let input = self.read_buf[..n].to_vec();
        let (replies, answers) = self.protocol.read(&input).map_err(|e| self.proto_err(e.to_string()))?;
        self.write_bytes(&replies).await?;
        for answer in answers {
            match answer {
                Answer::Acknowledged { sequence } => {
                    stats.bytes_acked.fetch_add(acked.advance(sequence), Ordering::Relaxed);
                }
                Answer::Status { level, code, description } if level == "error" => {
                    return Err(refusal(&self.host, &code, &description));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Ends the stream politely: end of sequence, `FCUnpublish` and `deleteStream`, then the
    /// socket.
    pub(crate) async fn close(&mut self, started: bool, stats: &SinkStats) -> Result<(), RtmpError> {
        if started {
            let made = self.protocol.video(crate::flv::video_end_of_sequence(), RtmpTimestamp::new(0));
            // The end-of-sequence tag's timestamp is not used by players; failure here is harmless.
            let _ = self.send(made, stats).await;
        }
        let key = self.key.clone();
        let made = self.protocol.unpublish(&key);
        let _ = self.write(made).await;
        let _ = self.socket.flush().await;
        let _ = self.socket.shutdown().await;
        Ok(())
    }
}

/// The RTMP handshake as the client; returns what the server sent after it (already the start
/// of its first messages).
async fn handshake(socket: &mut dyn Transport, host: &str) -> Result<Vec<u8>, RtmpError> {
    let io = |source| RtmpError::Io { host: host.to_string(), source };
    let mut handshake = Handshake::new(PeerType::Client);
    let hs_err = |e: rml_rtmp::handshake::HandshakeError| RtmpError::Handshake {
        host: host.to_string(),
        detail: format!("{e:?}"),
    };
    let p0p1 = handshake.generate_outbound_p0_and_p1().map_err(hs_err)?;
    socket.write_all(&p0p1).await.map_err(io)?;
    let mut buf = vec![0u8; 8192];
    let leftover = loop {
        let n = socket.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            return Err(RtmpError::Closed { host: host.to_string() });
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

    Ok(leftover)
}

/// One session's media clock: when it started, and the media time of its first keyframe
/// (its timestamp 0).
struct SessionMedia {
    started: Instant,
    base: Option<u64>,
    sent_headers: bool,
}

/// The stream's headers as they are now.
fn snapshot(shared: &Mutex<StreamHeaders>) -> StreamHeaders {
    shared.lock().map(|h| h.clone()).unwrap_or_default()
}

/// The carried-over keyframe first, then the queue.
async fn next_item(first: &mut Option<Arc<MediaPacket>>, rx: &mut mpsc::Receiver<SinkItem>) -> Option<SinkItem> {
    match first.take() {
        Some(packet) => Some(SinkItem::Media(packet)),
        None => rx.recv().await,
    }
}

/// A refusal in an `onStatus`, typed.
fn refusal(host: &str, code: &str, description: &str) -> RtmpError {
    let host = host.to_string();
    match code {
        "NetStream.Publish.BadName" => RtmpError::BadName { host },
        "NetStream.Publish.Unauthorized" | "NetStream.Publish.Rejected" => {
            RtmpError::Unauthorized { host, detail: format!("{code}: {description}") }
        }
        _ => RtmpError::PublishRefused { host, code: format!("{code}: {description}") },
    }
}

/// The server's acknowledged byte count is a 32-bit sequence number that wraps (every 4 GiB,
/// about five days at 8 Mb/s): this turns it into increments.
#[derive(Debug, Default)]
struct AckCounter {
    last: u32,
}

impl AckCounter {
    fn advance(&mut self, sequence: u32) -> u64 {
        let delta = sequence.wrapping_sub(self.last);
        self.last = sequence;
        u64::from(delta)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult};

    /// A loopback ingest on rml_rtmp's server session (its own parser, not ours), answering over
    /// a real socket and noting every command it is sent, in order.
    async fn ingest_noting_commands(listener: tokio::net::TcpListener) -> Vec<String> {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut handshake = Handshake::new(PeerType::Server);
        let mut buf = vec![0u8; 65536];
        let leftover = loop {
            let n = socket.read(&mut buf).await.unwrap();
            match handshake.process_bytes(&buf[..n]).unwrap() {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    socket.write_all(&response_bytes).await.unwrap()
                }
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    socket.write_all(&response_bytes).await.unwrap();
                    break remaining_bytes;
                }
            }
        };
        let (mut session, initial) = ServerSession::new(ServerSessionConfig::new()).unwrap();
        for result in initial {
            if let ServerSessionResult::OutboundResponse(packet) = result {
                socket.write_all(&packet.bytes).await.unwrap();
            }
        }
        let mut noted = Vec::new();
        let mut input = leftover;
        loop {
            let results = session.handle_input(&input).unwrap();
            let mut out = Vec::new();
            for result in results {
                match result {
                    ServerSessionResult::OutboundResponse(packet) => out.push(packet.bytes),
                    ServerSessionResult::RaisedEvent(event) => match event {
                        ServerSessionEvent::ConnectionRequested { request_id, app_name } => {
                            noted.push(format!("connect {app_name}"));
                            for r in session.accept_request(request_id).unwrap() {
                                if let ServerSessionResult::OutboundResponse(p) = r {
                                    out.push(p.bytes);
                                }
                            }
                        }
                        ServerSessionEvent::PublishStreamRequested { request_id, stream_key, .. } => {
                            noted.push(format!("publish {stream_key}"));
                            for r in session.accept_request(request_id).unwrap() {
                                if let ServerSessionResult::OutboundResponse(p) = r {
                                    out.push(p.bytes);
                                }
                            }
                        }
                        ServerSessionEvent::ReleaseStreamRequested { stream_key, .. } => {
                            noted.push(format!("releaseStream {stream_key}"))
                        }
                        ServerSessionEvent::UnhandleableAmf0Command { command_name, additional_values, .. } => {
                            let key = match additional_values.first() {
                                Some(rml_rtmp::rml_amf0::Amf0Value::Utf8String(k)) => k.clone(),
                                _ => String::new(),
                            };
                            noted.push(format!("{command_name} {key}"));
                        }
                        ServerSessionEvent::StreamMetadataChanged { .. } => noted.push("onMetaData".into()),
                        ServerSessionEvent::PublishStreamFinished { stream_key, .. } => {
                            noted.push(format!("deleteStream {stream_key}"))
                        }
                        _ => {}
                    },
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
            for bytes in &out {
                socket.write_all(bytes).await.unwrap();
            }
            let n = socket.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return noted;
            }
            input = buf[..n].to_vec();
        }
    }

    #[tokio::test]
    async fn the_publish_sequence_is_the_one_encoders_send_and_an_independent_parser_reads_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ingest = tokio::spawn(ingest_noting_commands(listener));
        let target = RtmpUrl::parse(&format!("rtmp://127.0.0.1:{port}/live/the-key")).unwrap();
        let mut conn = tokio::time::timeout(Duration::from_secs(10), Connection::open(&target, None, 48_000))
            .await
            .expect("connected in time")
            .expect("the ingest accepts");
        conn.close(false, &SinkStats::default()).await.unwrap();
        drop(conn);
        let noted = tokio::time::timeout(Duration::from_secs(10), ingest).await.unwrap().unwrap();
        assert_eq!(
            noted,
            [
                "connect live",
                "releaseStream the-key",
                "FCPublish the-key",
                "publish the-key",
                "FCUnpublish the-key",
                "deleteStream the-key"
            ],
        );
    }

    #[test]
    fn acknowledged_bytes_survive_the_32_bit_wrap() {
        let mut acks = AckCounter::default();
        assert_eq!(acks.advance(1_000), 1_000);
        assert_eq!(acks.advance(u32::MAX - 10), u64::from(u32::MAX) - 1_010);
        assert_eq!(acks.advance(20), 31);
    }
}

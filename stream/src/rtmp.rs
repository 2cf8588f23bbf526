//! RTMP publishing: one task per destination, fed by the [`Distributor`] through a bounded queue.
//!
//! The publish protocol (what is sent, what the answers mean) is [`crate::publish`], without
//! I/O; the socket, timing, reconnects and back-pressure are here. Each (re)connection starts
//! its timestamps at 0 from a keyframe, preceded by metadata and both sequence headers.
//! Refusals are typed: an explicit `_error`/`onStatus` (`BadName`, unauthorised), and — as
//! nginx-rtmp does it — the server closing the connection in answer to `connect` (no such app)
//! or `publish` (a refused key).
//!
//! What keeps a 24/7 stream alive:
//! - **Liveness from the server's answers**, not from writes succeeding: the server is asked to
//!   acknowledge about every second of media (window acknowledgement size) and pinged every
//!   [`PING_EVERY`]; a session that hears nothing for [`SILENT_LIMIT`], or whose write blocks for
//!   as long, is dead. `TCP_USER_TIMEOUT` ([`TCP_GIVE_UP`]) ends a socket whose data goes
//!   unacknowledged.
//! - **Queues measured in media time**: above [`CONGESTION_MS`] queued, video is dropped (never
//!   audio, never a keyframe) until the next keyframe; a slow destination never slows the
//!   encoder or the others. The socket's send buffer holds about half a second of media, so
//!   that a slow link shows in that queue within a second instead of hiding in the kernel.
//! - **Reconnecting forever** with a capped, jittered exponential backoff, longer after a
//!   `BadName` (the server still holds the old session); the host is resolved on every attempt.
//! - **Planned rotation**: a session older than its output's `rotate_after` ends at a keyframe
//!   and a new one starts with that keyframe at timestamp 0, before a platform ends it (and
//!   long before 32-bit millisecond timestamps wrap).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use bytes::Bytes;
use emcee_protocol::RtmpUrl;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::publish::{Answer, ProtocolError, Publisher};

const MEDIA_CLOCK_HZ: u64 = 48_000;
/// Packets a destination may hold at all (≈ 13 s at 30 fps with audio): the hard cap behind the
/// duration policy, reached only by a destination that has stopped taking media.
const QUEUE_PACKETS: usize = 1024;
/// Queued media beyond which video is dropped until the next keyframe.
pub const CONGESTION_MS: u64 = 700;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a publishing session pings the server.
pub const PING_EVERY: Duration = Duration::from_secs(2);
/// A session that hears nothing from the server for this long is dead (detected within
/// `SILENT_LIMIT + PING_EVERY`, under the 10 s a viewer-facing stream can afford).
pub const SILENT_LIMIT: Duration = Duration::from_secs(7);
/// `TCP_USER_TIMEOUT`: the kernel gives up on data unacknowledged this long instead of after
/// ~15 minutes of retransmissions. A backstop behind [`SILENT_LIMIT`], not a twin of it: the
/// kernel also counts zero-window probing against it, and a slow but alive link keeps the
/// server's window shut for seconds at a time (a 7 s limit cut such a link in the throttle test).
const TCP_GIVE_UP: Duration = Duration::from_secs(20);
/// The first reconnect waits this long; each further one 1.5× longer, up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// After `BadName` the server still holds the old session until it times it out; after any
/// other refusal nothing changes by asking again at once.
const REFUSED_WAIT: Duration = Duration::from_secs(10);
/// A session publishing this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

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
    #[error(
        "{host} refused the stream name (NetStream.Publish.BadName): the key is in use or the old session lingers"
    )]
    BadName { host: String },
    #[error("{host} refused to publish: {code}")]
    PublishRefused { host: String, code: String },
    #[error("{host} closed the connection in answer to connect: it has no app `{app}`, or refused it")]
    UnknownApp { host: String, app: String },
    #[error("{host} refused the stream key ({detail}): check the key and the ingest's authorisation")]
    Unauthorized { host: String, detail: String },
    #[error("{host} went silent: nothing heard for {silent_ms} ms")]
    Silent { host: String, silent_ms: u64 },
    #[error("a write to {host} blocked for {0:?}", SILENT_LIMIT)]
    WriteStalled { host: String },
    #[error("TLS with {host}: {detail}")]
    Tls { host: String, detail: String },
}

/// One destination and how its sessions run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub url: String,
    /// A session this old ends at the next keyframe and a new one starts at once.
    pub rotate_after: Duration,
    /// Where each session's timestamps start: 0 for every real output. Tests start sessions
    /// just before the 2^24, 2^31 and 2^32 ms wraps that have broken servers and players.
    pub first_timestamp_ms: u32,
    /// For `rtmps`: CA certificates (PEM) trusted besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Output {
    /// The default rotation: well under the 24 h most platforms allow (Facebook: use 7.5 h).
    pub const DEFAULT_ROTATION: Duration = Duration::from_secs(12 * 3600);

    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), rotate_after: Self::DEFAULT_ROTATION, first_timestamp_ms: 0, ca_file: None }
    }
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

pub(crate) enum SinkItem {
    Media(Arc<MediaPacket>),
    End,
}

/// What a destination is doing, for health reports.
#[derive(Debug)]
pub struct SinkStats {
    pub bytes_sent: AtomicU64,
    /// Bytes the server acknowledged, over all sessions.
    pub bytes_acked: AtomicU64,
    pub dropped_packets: AtomicU64,
    pub connects: AtomicU64,
    /// Connection attempts, successful or not.
    pub attempts: AtomicU64,
    /// Sessions ended on purpose by the rotation policy.
    pub rotations: AtomicU64,
    /// Media time of the packet last taken off the queue (sent or discarded while reconnecting);
    /// `u64::MAX` before the first.
    dequeued_ts: AtomicU64,
    /// Media time of the packet last put on the queue.
    enqueued_ts: AtomicU64,
    state: Mutex<String>,
    last_error: Mutex<Option<String>>,
}

impl Default for SinkStats {
    fn default() -> Self {
        Self {
            bytes_sent: AtomicU64::new(0),
            bytes_acked: AtomicU64::new(0),
            dropped_packets: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            rotations: AtomicU64::new(0),
            dequeued_ts: AtomicU64::new(u64::MAX),
            enqueued_ts: AtomicU64::new(0),
            state: Mutex::new(String::new()),
            last_error: Mutex::new(None),
        }
    }
}

impl SinkStats {
    pub fn state(&self) -> String {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The last failure of this destination, if any (kept after it recovers).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Media waiting in the queue, in milliseconds.
    pub fn queued_ms(&self) -> u64 {
        let dequeued = self.dequeued_ts.load(Ordering::Relaxed);
        if dequeued == u64::MAX {
            return 0;
        }
        self.enqueued_ts.load(Ordering::Relaxed).saturating_sub(dequeued) * 1000 / MEDIA_CLOCK_HZ
    }

    pub(crate) fn set_state(&self, state: impl Into<String>) {
        if let Ok(mut s) = self.state.lock() {
            *s = state.into();
        }
    }

    pub(crate) fn record_error(&self, error: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error);
        }
    }

    fn failed(&self, error: &RtmpError, retry_in: Duration) {
        self.record_error(error.to_string());
        self.set_state(format!("retrying in {} ms: {error}", retry_in.as_millis()));
    }

    fn enqueued(&self, media_ts: u64) {
        self.enqueued_ts.store(media_ts, Ordering::Relaxed);
        // The queue's clock starts with its first packet.
        let _ = self.dequeued_ts.compare_exchange(u64::MAX, media_ts, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub(crate) fn dequeued(&self, packet: &MediaPacket) {
        self.dequeued_ts.store(packet.media_ts(), Ordering::Relaxed);
    }
}

impl MediaPacket {
    pub fn media_ts(&self) -> u64 {
        match self {
            Self::Video { media_ts, .. } | Self::Audio { media_ts, .. } => *media_ts,
        }
    }
}

/// Capped, jittered exponential backoff between reconnects.
#[derive(Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The wait before the next attempt after `error`; `jitter` in 0..1 spreads the fleet's
    /// reconnects (±10 %) so that a server restart is not met by every appliance at once.
    pub fn next(&mut self, error: &RtmpError, jitter: f64) -> Duration {
        let exp = BACKOFF_BASE.as_secs_f64() * 1.5f64.powi(self.attempt.min(20) as i32);
        self.attempt += 1;
        let wait = Duration::from_secs_f64(exp.min(BACKOFF_CAP.as_secs_f64()) * (0.9 + 0.2 * jitter.clamp(0.0, 1.0)));
        match error {
            RtmpError::BadName { .. }
            | RtmpError::PublishRefused { .. }
            | RtmpError::UnknownApp { .. }
            | RtmpError::Unauthorized { .. }
            | RtmpError::Rejected { .. } => wait.max(REFUSED_WAIT),
            _ => wait,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A number in 0..1 that differs between calls and between machines (no RNG crate needed).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() % 1_000_000) as f64 / 1_000_000.0
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
    pub fn start(outputs: &[Output], headers: StreamHeaders, rt: &tokio::runtime::Handle) -> Result<Self, RtmpError> {
        let mut sinks = Vec::with_capacity(outputs.len());
        for output in outputs {
            let target = RtmpUrl::parse(&output.url)?;
            let tls = match target.tls {
                true => Some(
                    crate::tls::client_config(output.ca_file.as_deref())
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
    pub fn add_recorder(&mut self, config: crate::record::RecorderConfig, rt: &tokio::runtime::Handle) {
        let (tx, rx) = mpsc::channel(QUEUE_PACKETS);
        let stats = Arc::new(SinkStats::default());
        let url = format!("file://{}", config.dir.display());
        let recorder = crate::record::Recorder { config, headers: self.headers.clone(), stats: stats.clone() };
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
                tracing::warn!(url = %dest.url, "output did not close in time; aborting it");
                abort.abort();
            }
        }
    }
}

/// One destination's task: sessions, one after another, until the show ends.
struct Sink {
    target: RtmpUrl,
    /// Set for `rtmps` outputs.
    tls: Option<Arc<rustls::ClientConfig>>,
    output: Output,
    headers: Arc<Mutex<StreamHeaders>>,
    stats: Arc<SinkStats>,
}

/// How a session ended when it did not fail.
enum SessionEnd {
    /// The show ended; the stream is closed.
    Finished,
    /// Rotation: this keyframe starts the next session.
    Rotate(Arc<MediaPacket>),
}

impl Sink {
    async fn run(self, mut rx: mpsc::Receiver<SinkItem>) {
        let (target, stats) = (&self.target, &self.stats);
        let mut backoff = Backoff::default();
        let mut carried: Option<Arc<MediaPacket>> = None;
        loop {
            // A bug in one session (ours or a library's) ends that session, never the destination.
            let attempt = CatchPanic(Box::pin(self.attempt(&mut rx, &mut carried, &mut backoff))).await;
            let error = match attempt {
                Ok(Attempt::Finished) => {
                    stats.set_state("closed");
                    return;
                }
                Ok(Attempt::Rotated) => continue,
                Ok(Attempt::Failed(error)) => error,
                Err(panic) => {
                    tracing::error!(host = %target.host, panic = %panic, "RTMP session panicked");
                    RtmpError::Protocol { host: target.host.clone(), detail: format!("the session panicked: {panic}") }
                }
            };
            let wait = backoff.next(&error, jitter());
            stats.failed(&error, wait);
            if wait_or_end(&mut rx, wait, stats).await {
                return;
            }
        }
    }

    /// One connection: connect, publish until the end, a rotation or a failure.
    async fn attempt(
        &self,
        rx: &mut mpsc::Receiver<SinkItem>,
        carried: &mut Option<Arc<MediaPacket>>,
        backoff: &mut Backoff,
    ) -> Attempt {
        let (target, stats) = (&self.target, &self.stats);
        stats.set_state("connecting");
        stats.attempts.fetch_add(1, Ordering::Relaxed);
        let window = ack_window(&self.headers);
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, Connection::open(target, self.tls.clone(), window))
            .await
            .unwrap_or_else(|_| Err(RtmpError::Timeout { host: target.host.clone() }));
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(host = %target.host, error = %e, "RTMP connect failed");
                return Attempt::Failed(e);
            }
        };
        stats.connects.fetch_add(1, Ordering::Relaxed);
        stats.set_state("publishing");
        tracing::info!(host = %target.host, app = %target.app, "RTMP publishing");
        let since = Instant::now();
        match conn.publish(rx, self, carried.take()).await {
            Ok(SessionEnd::Finished) => Attempt::Finished,
            Ok(SessionEnd::Rotate(keyframe)) => {
                stats.rotations.fetch_add(1, Ordering::Relaxed);
                tracing::info!(host = %target.host, after_s = since.elapsed().as_secs(), "RTMP session rotated");
                *carried = Some(keyframe);
                backoff.reset();
                Attempt::Rotated
            }
            Err(e) => {
                tracing::warn!(host = %target.host, error = %e, "RTMP session lost");
                if since.elapsed() >= HEALTHY_AFTER {
                    backoff.reset();
                }
                Attempt::Failed(e)
            }
        }
    }
}

/// How one connection ended.
enum Attempt {
    Finished,
    Rotated,
    Failed(RtmpError),
}

/// Polls a future, turning a panic inside it into `Err(message)`.
struct CatchPanic<F>(F);

impl<F: std::future::Future + Unpin> std::future::Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| std::pin::Pin::new(inner).poll(cx))) {
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                std::task::Poll::Ready(Err(message))
            }
        }
    }
}

/// The carried-over keyframe first, then the queue.
async fn next_item(first: &mut Option<Arc<MediaPacket>>, rx: &mut mpsc::Receiver<SinkItem>) -> Option<SinkItem> {
    match first.take() {
        Some(packet) => Some(SinkItem::Media(packet)),
        None => rx.recv().await,
    }
}

/// Asks the server to acknowledge about every second of media: the session's pulse.
fn ack_window(headers: &Mutex<StreamHeaders>) -> u32 {
    let kbps = headers.lock().map(|h| h.video_kbps + h.audio_kbps).unwrap_or(0);
    (kbps * 1000 / 8).max(64 * 1024)
}

/// Waits before a reconnect while draining the queue (stale media is useless); true on `End`.
async fn wait_or_end(rx: &mut mpsc::Receiver<SinkItem>, delay: Duration, stats: &SinkStats) -> bool {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(SinkItem::End)) => return true,
            Ok(Some(SinkItem::Media(packet))) => stats.dequeued(&packet),
        }
    }
}

struct Connection {
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
    async fn open(
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
    async fn publish(
        &mut self,
        rx: &mut mpsc::Receiver<SinkItem>,
        sink: &Sink,
        mut first: Option<Arc<MediaPacket>>,
    ) -> Result<SessionEnd, RtmpError> {
        let (shared_headers, stats) = (&*sink.headers, &*sink.stats);
        let session_start = Instant::now();
        // Codec headers may arrive after we connect (the first keyframe brings SPS/PPS), so they
        // are read again when the first keyframe is sent.
        let snapshot = || shared_headers.lock().map(|h| h.clone()).unwrap_or_default();
        let headers = snapshot();
        let number = |n: f64| Amf0Value::Number(n);
        let metadata = HashMap::from([
            ("width".to_string(), number(headers.width.into())),
            ("height".to_string(), number(headers.height.into())),
            ("videocodecid".to_string(), number(7.0)),
            ("framerate".to_string(), number(headers.fps.into())),
            ("videodatarate".to_string(), number(headers.video_kbps.into())),
            ("audiocodecid".to_string(), number(10.0)),
            ("audiodatarate".to_string(), number(headers.audio_kbps.into())),
            ("audiosamplerate".to_string(), number(48_000.0)),
            ("audiochannels".to_string(), number(headers.audio_channels.into())),
            ("stereo".to_string(), Amf0Value::Boolean(headers.audio_channels == 2)),
            ("encoder".to_string(), Amf0Value::Utf8String(concat!("emcee ", env!("CARGO_PKG_VERSION")).into())),
        ]);
        let made = self.protocol.metadata(metadata);
        self.send(made, stats).await?;

        // The session's clock starts at the first keyframe; nothing before it is sent.
        let mut base: Option<u64> = None;
        let mut sent_headers = false;
        let mut last_heard = Instant::now();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut acked = AckCounter::default();
        loop {
            tokio::select! {
                _ = ping.tick() => {
                    let silent = last_heard.elapsed();
                    if silent >= SILENT_LIMIT {
                        return Err(RtmpError::Silent { host: self.host.clone(), silent_ms: silent.as_millis() as u64 });
                    }
                    let made = self.protocol.ping();
                    self.write(made).await?;
                }
                item = next_item(&mut first, rx) => {
                    let packet = match item {
                        None | Some(SinkItem::End) => {
                            self.close(base.is_some(), stats).await?;
                            return Ok(SessionEnd::Finished);
                        }
                        Some(SinkItem::Media(p)) => p,
                    };
                    stats.dequeued(&packet);
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
                    if keyframe && ts > start && session_start.elapsed() >= sink.output.rotate_after {
                        self.close(true, stats).await?;
                        return Ok(SessionEnd::Rotate(packet));
                    }
                    let rtmp_ts = RtmpTimestamp::new(media_to_ms(ts - start).wrapping_add(sink.output.first_timestamp_ms));
                    if !sent_headers {
                        sent_headers = true;
                        let headers = snapshot();
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
                }
                read = self.socket.read(&mut self.read_buf) => {
                    let n = read.map_err(|e| self.io_err(e))?;
                    if n == 0 {
                        return Err(RtmpError::Closed { host: self.host.clone() });
                    }
                    last_heard = Instant::now();
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
                }
            }
        }
    }

    /// Ends the stream politely: end of sequence, `FCUnpublish` and `deleteStream`, then the
    /// socket.
    async fn close(&mut self, started: bool, stats: &SinkStats) -> Result<(), RtmpError> {
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

/// 48 kHz media samples → RTMP milliseconds (32-bit, wrapping as the protocol does).
pub fn media_to_ms(media_ts: u64) -> u32 {
    (media_ts * 1000 / MEDIA_CLOCK_HZ) as u32
}

#[cfg(test)]
mod tests {
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
    fn backoff_grows_by_half_up_to_the_cap_with_jitter_and_waits_longer_after_bad_name() {
        let closed = RtmpError::Closed { host: "h".into() };
        let mut b = Backoff::default();
        let waits: Vec<f64> = (0..12).map(|_| b.next(&closed, 0.5).as_secs_f64()).collect();
        assert!((waits[0] - 1.0).abs() < 1e-9 && (waits[1] - 1.5).abs() < 1e-9 && (waits[2] - 2.25).abs() < 1e-9);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert!((waits[11] - 30.0).abs() < 1e-9, "capped: {waits:?}");
        let mut b = Backoff::default();
        let (low, high) = (b.next(&closed, 0.0), Backoff::default().next(&closed, 1.0));
        assert_eq!((low.as_millis(), high.as_millis()), (900, 1100));
        let bad_name = RtmpError::BadName { host: "h".into() };
        assert!(Backoff::default().next(&bad_name, 0.0) >= REFUSED_WAIT);
        b.reset();
        assert_eq!(b.next(&closed, 0.5), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_panic_in_a_session_is_an_error_not_the_end_of_the_destination() {
        let panicking = CatchPanic(Box::pin(async {
            tokio::task::yield_now().await;
            panic!("a bug");
        }));
        assert_eq!(panicking.await, Err::<(), _>("a bug".to_string()));
        assert_eq!(CatchPanic(Box::pin(async { 7 })).await, Ok(7));
    }

    #[test]
    fn acknowledged_bytes_survive_the_32_bit_wrap() {
        let mut acks = AckCounter::default();
        assert_eq!(acks.advance(1_000), 1_000);
        assert_eq!(acks.advance(u32::MAX - 10), u64::from(u32::MAX) - 1_010);
        assert_eq!(acks.advance(20), 31);
    }

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

    #[test]
    fn media_time_converts_to_ms_at_the_edge() {
        assert_eq!(media_to_ms(1600), 33);
        assert_eq!(media_to_ms(48_000 * 3600), 3_600_000);
    }
}

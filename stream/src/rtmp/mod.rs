//! RTMP publishing: one task per destination, fed by the [`crate::distributor::Distributor`]
//! through a bounded queue.
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
//!
//! # Layout
//! - this file: an output's settings, the typed errors, the limits, the reconnect backoff.
//! - `sink`: one destination's task — sessions one after another, backoff between them.
//! - `session`: one connection — TCP (+ TLS), handshake, the publish sequence, media, liveness.

pub(crate) mod session;
pub(crate) mod sink;

use std::time::{Duration, Instant};

/// How long a connection may take, from TCP to `NetStream.Publish.Start`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a publishing session pings the server.
pub const PING_EVERY: Duration = Duration::from_secs(2);
/// A session that hears nothing from the server for this long is dead (detected within
/// `SILENT_LIMIT + PING_EVERY`, under the 10 s a viewer-facing stream can afford).
pub const SILENT_LIMIT: Duration = Duration::from_secs(7);
/// `TCP_USER_TIMEOUT`: the kernel gives up on data unacknowledged this long instead of after
/// ~15 minutes of retransmissions. A backstop behind [`SILENT_LIMIT`], not a twin of it: the
/// kernel also counts zero-window probing against it, and a slow but alive link keeps the
/// server's window shut for seconds at a time (a 7 s limit cut such a link in the throttle test).
pub(crate) const TCP_GIVE_UP: Duration = Duration::from_secs(20);
/// The first reconnect waits this long; each further one 1.5× longer, up to [`BACKOFF_CAP`].
pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(1);
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// After `BadName` the server still holds the old session until it times it out; after any
/// other refusal nothing changes by asking again at once.
pub(crate) const REFUSED_WAIT: Duration = Duration::from_secs(10);
/// A session publishing this long resets the backoff.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(60);

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
pub(crate) fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() % 1_000_000) as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! One destination's task: sessions one after another until the show ends, with backoff
//! between failures; a panic in a session ends that session, never the destination.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emcee_protocol::RtmpUrl;
use tokio::sync::mpsc;

use super::session::{Connection, SessionEnd};
use super::{jitter, Backoff, Output, RtmpError, CONNECT_TIMEOUT, HEALTHY_AFTER};
use crate::packet::{MediaPacket, SinkItem, StreamHeaders};
use crate::stats::SinkStats;

/// One destination's task: sessions, one after another, until the show ends.
pub(crate) struct Sink {
    pub(crate) target: RtmpUrl,
    /// Set for `rtmps` outputs.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) output: Output,
    pub(crate) headers: Arc<Mutex<StreamHeaders>>,
    pub(crate) stats: Arc<SinkStats>,
}

impl Sink {
    pub(crate) async fn run(self, mut rx: mpsc::Receiver<SinkItem>) {
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
            // A server may echo the stream name (the key) in its refusal: never kept or shown.
            stats.failed(&emcee_protocol::redact_secrets(&error.to_string(), [target.key.as_str()]), wait);
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
                tracing::warn!(host = %target.host, error = %redacted(&e, target), "RTMP connect failed");
                return Attempt::Failed(e);
            }
        };
        stats.connects.fetch_add(1, Ordering::Relaxed);
        stats.set_state("publishing");
        tracing::info!(host = %target.host, app = %target.app, "RTMP publishing");
        let since = Instant::now();
        match conn.publish(rx, &self.headers, &self.stats, &self.output, carried.take()).await {
            Ok(SessionEnd::Finished) => Attempt::Finished,
            Ok(SessionEnd::Rotate(keyframe)) => {
                stats.rotations.fetch_add(1, Ordering::Relaxed);
                tracing::info!(host = %target.host, after_s = since.elapsed().as_secs(), "RTMP session rotated");
                *carried = Some(keyframe);
                backoff.reset();
                Attempt::Rotated
            }
            Err(e) => {
                tracing::warn!(host = %target.host, error = %redacted(&e, target), "RTMP session lost");
                if since.elapsed() >= HEALTHY_AFTER {
                    backoff.reset();
                }
                Attempt::Failed(e)
            }
        }
    }
}

/// `error` as it may be logged: without the stream key.
fn redacted(error: &RtmpError, target: &RtmpUrl) -> String {
    emcee_protocol::redact_secrets(&error.to_string(), [target.key.as_str()])
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

/// Asks the server to acknowledge about every second of media: the session's pulse.
fn ack_window(headers: &Mutex<StreamHeaders>) -> u32 {
    let kbps = headers.lock().map(|h| h.description.video_kbps + h.description.audio_kbps).unwrap_or(0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_a_session_is_an_error_not_the_end_of_the_destination() {
        let panicking = CatchPanic(Box::pin(async {
            tokio::task::yield_now().await;
            panic!("a bug");
        }));
        assert_eq!(panicking.await, Err::<(), _>("a bug".to_string()));
        assert_eq!(CatchPanic(Box::pin(async { 7 })).await, Ok(7));
    }
}

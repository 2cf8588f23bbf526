//! What each destination is doing, shared between its task and the health reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use emcee_protocol::MEDIA_CLOCK_HZ;

use crate::packet::MediaPacket;

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

    pub(crate) fn failed(&self, error: &impl std::fmt::Display, retry_in: Duration) {
        self.record_error(error.to_string());
        self.set_state(format!("retrying in {} ms: {error}", retry_in.as_millis()));
    }

    pub(crate) fn enqueued(&self, media_ts: u64) {
        self.enqueued_ts.store(media_ts, Ordering::Relaxed);
        // The queue's clock starts with its first packet.
        let _ = self.dequeued_ts.compare_exchange(u64::MAX, media_ts, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub(crate) fn dequeued(&self, packet: &MediaPacket) {
        self.dequeued_ts.store(packet.media_ts(), Ordering::Relaxed);
    }
}

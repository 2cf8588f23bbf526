//! The audit log's way to the cloud: the records after the last one the cloud said it stored,
//! a batch at a time, sent again until stored (the cloud keeps each `seq` once, so every record
//! arrives once and in order, however long the appliance was offline). The audit log itself is
//! the queue, kept by its retention policy; records pruned before they went up are counted as
//! lost, never waited for. How far it got is kept in the state directory (`cloud-outbox`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::store::{Store, StoreError};

/// Records in one message.
const BATCH: u32 = 500;
/// A batch not acknowledged within this long is sent again.
const RESEND_AFTER: Duration = Duration::from_secs(30);

pub struct Outbox {
    /// Behind a mutex only so that the agent, which holds it across its awaits, may move
    /// between threads; the agent alone uses it.
    store: std::sync::Mutex<Store>,
    file: PathBuf,
    /// The last `seq` the cloud stored; records pruned before they went up.
    acked: i64,
    lost: i64,
    /// The batch in flight: its first `seq`, when it went.
    in_flight: Option<(i64, Instant)>,
}

impl Outbox {
    /// The outbox of the state database in `state_dir`.
    pub fn open(state_dir: &std::path::Path) -> Result<Self, StoreError> {
        let file = state_dir.join("cloud-outbox");
        let kept = std::fs::read_to_string(&file).unwrap_or_default();
        let mut numbers = kept.split_whitespace().map(|n| n.parse::<i64>().unwrap_or(0));
        let (acked, lost) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        Ok(Self { store: std::sync::Mutex::new(Store::open(state_dir)?), file, acked, lost, in_flight: None })
    }

    /// The link is (back) up: what was in flight is sent again.
    pub fn link_up(&mut self) {
        self.in_flight = None;
    }

    /// The next batch to send, if one is due.
    pub fn next_batch(&mut self) -> Option<Vec<Value>> {
        if self.in_flight.is_some_and(|(_, at)| at.elapsed() < RESEND_AFTER) {
            return None;
        }
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let batch = match store.audit_since(self.acked, BATCH) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the audit log for the cloud");
                return None;
            }
        };
        let first = batch.first()?.seq;
        self.in_flight = Some((first, Instant::now()));
        Some(batch.iter().map(|r| serde_json::to_value(r).unwrap_or_default()).collect())
    }

    /// The cloud stored everything up to `through`.
    pub fn stored(&mut self, through: i64) {
        let Some((first, _)) = self.in_flight.take() else { return };
        if through <= self.acked {
            return;
        }
        // Records between the last stored and this batch's first were pruned unsent.
        self.lost += (first - self.acked - 1).max(0);
        self.acked = through;
        let kept = format!("{} {}\n", self.acked, self.lost);
        let temporary = self.file.with_extension("new");
        let written = std::fs::write(&temporary, kept).and_then(|_| std::fs::rename(&temporary, &self.file));
        if let Err(e) = written {
            // Only costs sending some records again after a restart (the cloud keeps them once).
            tracing::warn!(error = %e, file = %self.file.display(), "cannot keep the outbox's position");
        }
    }

    /// For the reported document.
    pub fn state(&self) -> Value {
        json!({ "stored_through": self.acked, "lost": self.lost })
    }
}

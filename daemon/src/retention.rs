//! The audit log's retention, applied at start and then every hour on a thread of its own
//! (with its own database connection): pruning a large log takes a while and the show loop
//! must not wait for it. See [`crate::store::Store::prune_audit`] and `[state] audit_days` /
//! `audit_max_mb`.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::AuditRetention;
use crate::store::{now_ms, Store};

const EVERY: Duration = Duration::from_secs(3600);

/// Starts the retention thread for the database in `dir`; it runs for the life of the
/// process, holding a connection only while it prunes (so a stopped daemon leaves no
/// write-ahead log behind for it).
pub fn spawn(dir: PathBuf, retention: AuditRetention) -> std::io::Result<()> {
    std::thread::Builder::new().name("retention".into()).spawn(move || loop {
        let max_age_ms = retention.max_age.as_millis() as i64;
        match Store::open(&dir).and_then(|store| store.prune_audit(now_ms(), max_age_ms, retention.max_bytes)) {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "audit log: records past the retention removed"),
            Err(e) => tracing::warn!(error = %e, "audit log retention failed; trying again in an hour"),
        }
        std::thread::sleep(EVERY);
    })?;
    Ok(())
}

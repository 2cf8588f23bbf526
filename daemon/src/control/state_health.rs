//! The state database's health as the show sees it — a damaged database set aside at boot,
//! writes failing now (a full disk) — for status, metrics and the audit log. The show never
//! stops for it: viewers first. When writes work again after failing, the audit log records
//! that it had a gap, how long, and how many writes were lost.

use serde::{Deserialize, Serialize};

use crate::store::{now_ms, SetAside, StoreError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateHealth {
    /// The damaged database set aside at boot, if one was.
    pub set_aside: Option<SetAside>,
    /// Since when writes fail (Unix ms); `None` while they work.
    pub failing_since_ms: Option<i64>,
    /// The last write error.
    pub last_error: Option<String>,
    /// Writes lost since the daemon started.
    pub failed_writes: u64,
    /// Writes lost in the failure going on now.
    #[serde(skip)]
    lost_now: u64,
}

impl StateHealth {
    pub fn new(set_aside: Option<SetAside>) -> Self {
        Self { set_aside, ..Self::default() }
    }

    /// True while writes fail.
    pub fn failing(&self) -> bool {
        self.failing_since_ms.is_some()
    }

    /// Notes a write's outcome. The first write that works after failures returns the gap's
    /// description, for the audit log.
    pub fn note<T>(&mut self, result: &Result<T, StoreError>) -> Option<String> {
        match result {
            Err(e) => {
                self.failing_since_ms.get_or_insert_with(now_ms);
                self.last_error = Some(e.to_string());
                self.failed_writes += 1;
                self.lost_now += 1;
                None
            }
            Ok(_) => {
                let since = self.failing_since_ms.take()?;
                let lost = std::mem::take(&mut self.lost_now);
                let why = self.last_error.take().unwrap_or_default();
                let seconds = (now_ms() - since).max(0) / 1000;
                Some(format!(
                    "the state database refused writes for {seconds} s from {since} (Unix ms): {lost} records lost ({why})"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_shown_until_a_write_works_then_reported_once_as_a_gap() {
        let mut health = StateHealth::default();
        let full = || -> Result<(), StoreError> {
            Err(StoreError::Sql(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("database or disk is full".into()),
            )))
        };
        assert_eq!(health.note(&Ok::<(), StoreError>(())), None);
        for _ in 0..3 {
            assert_eq!(health.note(&full()), None);
        }
        assert!(health.failing() && health.last_error.as_deref().is_some_and(|e| e.contains("disk is full")));
        let gap = health.note(&Ok::<(), StoreError>(())).expect("the gap is reported");
        assert!(gap.contains("3 records lost") && gap.contains("disk is full"), "{gap}");
        assert!(!health.failing() && health.failed_writes == 3);
        assert_eq!(health.note(&Ok::<(), StoreError>(())), None, "once");
    }
}

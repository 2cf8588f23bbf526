//! Whether the stage is alive, told to its supervisor's watchdog (systemd's `WatchdogSec`, or
//! `emcee run`, same rule): while a show runs, alive means the media clock ticks; between shows
//! the server loop answering is enough. A wedged GPU driver stops the clock, the pings stop,
//! and the supervisor kills and replaces the stage.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use emcee_protocol::notify::{notify, watchdog_interval};

/// Shared by the media loop (which ticks it) and the watchdog task (which reads it).
#[derive(Debug, Default)]
pub struct Liveness {
    ticks: AtomicU64,
    clock_running: AtomicBool,
}

impl Liveness {
    pub fn clock_started(&self) {
        self.clock_running.store(true, Ordering::Relaxed);
    }

    /// One tick of the media clock.
    pub fn ticked(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn clock_stopped(&self) {
        self.clock_running.store(false, Ordering::Relaxed);
    }

    /// The watchdog's reading: `Some(ticks)` while the clock runs.
    fn reading(&self) -> Option<u64> {
        self.clock_running.load(Ordering::Relaxed).then(|| self.ticks.load(Ordering::Relaxed))
    }
}

/// Pings the watchdog every half interval while the stage is alive; returns at once when no
/// supervisor asked for a watchdog.
pub async fn keep_watchdog(liveness: Arc<Liveness>) {
    let Some(interval) = watchdog_interval() else { return };
    let mut last = None;
    loop {
        let now = liveness.reading();
        if alive(last, now) {
            notify("WATCHDOG=1");
        } else {
            tracing::error!("the media clock has stopped ticking; the supervisor will replace the stage");
        }
        last = now;
        tokio::time::sleep(interval).await;
    }
}

/// Alive: no clock running (between shows), or the clock ticked since the last reading.
fn alive(last: Option<u64>, now: Option<u64>) -> bool {
    match (last, now) {
        (_, None) | (None, Some(_)) => true,
        (Some(before), Some(after)) => after != before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_that_stops_ticking_is_dead() {
        let l = Liveness::default();
        assert!(alive(None, l.reading()), "between shows");
        l.clock_started();
        let first = l.reading();
        assert!(alive(None, first), "a clock just started");
        l.ticked();
        assert!(alive(first, l.reading()));
        assert!(!alive(l.reading(), l.reading()), "no tick since the last reading");
        l.clock_stopped();
        assert!(alive(Some(1), l.reading()), "the show ended");
    }
}

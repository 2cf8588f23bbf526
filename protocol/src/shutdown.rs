//! How every emcee process is asked to stop: SIGTERM (systemd, a container, `kill`), SIGINT
//! (Ctrl-C) or SIGHUP (its terminal closed), treated alike. One type for the stage, the control
//! plane and `emcee run`.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGTERM, SIGINT and SIGHUP, listened for from the moment this is made (so a signal that arrives
/// before anyone waits is not lost).
pub struct StopSignals {
    term: Option<Signal>,
    int: Option<Signal>,
    hup: Option<Signal>,
}

impl StopSignals {
    /// Starts listening. A signal that cannot be listened for is never reported (the process
    /// then stops the default way, at once).
    pub fn new() -> Self {
        Self {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }

    /// Waits for the next stop signal.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = recv_one(self.term.as_mut()) => {}
            _ = recv_one(self.int.as_mut()) => {}
            _ = recv_one(self.hup.as_mut()) => {}
        }
    }

    /// Waits for the first stop signal, owning the listener (for APIs that take a future).
    pub async fn first(mut self) {
        self.recv().await;
    }
}

impl Default for StopSignals {
    fn default() -> Self {
        Self::new()
    }
}

async fn recv_one(signal: Option<&mut Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

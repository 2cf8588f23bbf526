//! What every emcee process does first, before it reads a file or binds a socket: whatever it
//! creates is private (umask 0077: the state database, tokens, recordings, sockets), it has room
//! for many clients (the soft descriptor limit raised to the hard one), and under `emcee run` it
//! dies with its supervisor, even when that is killed outright (PR_SET_PDEATHSIG).

use rustix::fs::Mode;
use rustix::process::{Resource, Signal};

/// Set by `emcee run` for its children: the supervisor's pid. A child whose parent is not that
/// process (it died before the child set its death signal) exits at once.
pub const SUPERVISOR_ENV: &str = "EMCEE_SUPERVISOR_PID";

#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    #[error("cannot ask to die with the supervisor: {0}")]
    DeathSignal(std::io::Error),
    #[error("the supervisor (pid {0}) is already gone")]
    Orphaned(u32),
}

/// Sets up the calling process (see the module's documentation).
pub fn set_up() -> Result<(), SetUpError> {
    rustix::process::umask(Mode::from_bits_truncate(0o077));
    raise_file_limit();
    let Some(supervisor) = std::env::var(SUPERVISOR_ENV).ok().and_then(|v| v.parse::<u32>().ok()) else {
        return Ok(());
    };
    // SIGTERM, not SIGKILL: the stage still closes its streams and the control plane its
    // database when `emcee run` is killed.
    rustix::process::set_parent_process_death_signal(Some(Signal::TERM))
        .map_err(|e| SetUpError::DeathSignal(e.into()))?;
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    if parent != supervisor {
        return Err(SetUpError::Orphaned(supervisor));
    }
    Ok(())
}

/// Logs to stderr (the journal, under systemd) at `RUST_LOG`'s levels, `info` by default —
/// except the WebSocket library's frame traces, which would print the stage's configuration,
/// stream keys included: never below `info`, whatever `RUST_LOG` says.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let filter = ["tungstenite=info", "tokio_tungstenite=info"]
        .iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, |f, d| f.add_directive(d));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// The soft limit on open files up to the hard one: the API holds many connections (each
/// capped and timed out) without running out at the usual 1,024.
fn raise_file_limit() {
    let limit = rustix::process::getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(e) = rustix::process::setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "cannot raise the open-files limit");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn files_made_after_set_up_are_private() {
        super::set_up().unwrap();
        let dir = std::env::temp_dir().join(format!("emcee-umask-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

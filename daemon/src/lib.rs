//! The control plane: configuration, scripts, and the show loop that drives the stage.
//!
//! # Layout
//! - [`config`]: the technician's TOML, validated with line/column errors before anything runs.
//! - [`script`]: the sentences to say.
//! - [`control`]: connects to the stage over the local cue protocol and runs the show.
//! - [`notify`]: systemd readiness and watchdog notifications.
//!
//! Binaries: `emceed` (the control-plane daemon) and `emcee` (the CLI: `run`, `check`).
#![forbid(unsafe_code)]

pub mod config;
pub mod control;
pub mod notify;
pub mod scheduler;
pub mod script;

/// Exit status for a bad configuration (EX_CONFIG from sysexits.h), as systemd units expect.
pub const EXIT_CONFIG: i32 = 78;

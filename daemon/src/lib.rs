//! The control plane: configuration, scripts, and the show loop that drives the stage.
//!
//! # Layout
//! - [`config`]: the technician's TOML, validated with line/column errors before anything runs.
//! - [`content`], [`script`], [`ssml`]: materials and the sentences to say, checked.
//! - [`library`]: those two documents, from their files or pushed through the API (stored).
//! - [`scheduler`]: pure state machine: script and interaction queues, interrupts, room control.
//! - [`store`]: SQLite (WAL): offsets, the durable interaction queue, the audit log.
//! - [`control`]: the show loop: stage connection + scheduler + store + API calls.
//! - [`api`]: the local HTTP API (bearer token), talking to the show loop over a channel.
//! - [`client`]: the CLI's side of the API.
//! - [`notify`]: systemd readiness and watchdog notifications.
//!
//! Binaries: `emceed` (the control-plane daemon) and `emcee` (the CLI: `run`, `check`).
#![forbid(unsafe_code)]

pub mod answer;
pub mod api;
pub mod client;
pub mod config;
pub mod content;
pub mod control;
pub mod library;
pub mod notify;
pub mod schedule;
pub mod scheduler;
pub mod script;
pub mod ssml;
pub mod store;

/// Exit status for a bad configuration (EX_CONFIG from sysexits.h), as systemd units expect.
pub const EXIT_CONFIG: i32 = 78;

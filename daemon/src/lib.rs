//! The control plane: configuration, scripts, and the show loop that drives the stage.
//!
//! # Layout
//! - [`config`]: the technician's TOML, validated with line/column errors before anything runs.
//! - [`materials`], [`script`], [`ssml`]: materials (products, promotions, scenes, voices) and
//!   the sentences to say, checked.
//! - [`library`]: those two documents, from their files or pushed through the API (stored).
//! - [`answer`]: answers to viewers' questions from the products' FAQ.
//! - [`scheduler`]: pure state machine deciding the next sentence: script and interaction
//!   queues, interrupts, room control.
//! - [`opening_hours`]: when the room opens and closes by itself (`[[schedule]]` windows).
//! - [`store`]: SQLite (WAL): offsets, the durable interaction queue, the audit log;
//!   [`retention`]: the audit log kept by age and size, on a thread of its own.
//! - [`control`]: the show loop: stage connection + scheduler + store, driven by
//!   [`control::calls`] (the show's commands and replies).
//! - [`api`]: the local HTTP API (bearer token), which maps requests to show calls, and
//!   [`metrics`] its Prometheus exposition;
//!   [`api_server`]: its listener, with timeouts and a connection cap.
//! - [`client`]: the CLI's side of the API; [`supervisor`]: `emcee run`'s supervision of the
//!   two processes, by the rules systemd applies to their units.
//! - [`files`]: reading named files — regular files only, bounded in size.
//! - [`secrets`]: stream keys and tokens from private files or systemd credentials.
//! - [`cloud`]: the appliance in its fleet — reports up, the cloud's commands carried out.
//!
//! Binaries: `emceed` (the control-plane daemon) and `emcee` (the CLI: `run`, `check`).
#![forbid(unsafe_code)]

pub mod answer;
pub mod api;
pub mod api_server;
pub mod client;
pub mod cloud;
pub mod config;
pub mod control;
pub mod files;
pub mod library;
pub mod materials;
pub mod metrics;
pub mod opening_hours;
pub mod retention;
pub mod scheduler;
pub mod script;
pub mod secrets;
pub mod ssml;
pub mod store;
pub mod supervisor;

pub use emcee_protocol::EXIT_CONFIG;

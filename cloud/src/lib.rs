//! `emcee-cloud`: the fleet server. Appliances dial in over a WebSocket (behind a TLS-terminating
//! load balancer in production) and prove their identity; the cloud keeps each one's shadow
//! (desired and reported documents, versioned) and hands it commands. Every instance is
//! stateless: PostgreSQL holds the fleet, and LISTEN/NOTIFY tells every instance of a change
//! made through any other, or through the operator's CLI, which writes to the database itself.
//!
//! # Layout
//! - [`store`]: the schema and every query; [`store::Db`] reconnects after a database restart.
//! - [`hub`]: the devices connected to this instance, and the database's notifications routed
//!   to them.
//! - [`devices`]: one device's connection — handshake (enrolment or proof of key), then the
//!   shadow, commands and heartbeats.
//! - [`admin`]: what the operator's verbs do (enrol codes, revoke, devices, commands).
#![forbid(unsafe_code)]

pub mod admin;
pub mod devices;
pub mod hub;
pub mod store;

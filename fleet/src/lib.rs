//! `emcee-fleet`: the wire between an appliance and the fleet cloud (`emcee-cloud`), and the
//! appliance's side of it.
//!
//! # Layout
//! - [`wire`]: the messages, JSON text frames over a WebSocket the appliance dials out, tagged
//!   by `type`; the device shadow's versioned documents.
//! - [`identity`]: the device's Ed25519 key (a private file, 0600) and the challenge it signs on
//!   every connection; the cloud's check of that signature.
//! - [`link`]: the appliance's side — dial, prove who it is, keep the link alive (heartbeats
//!   both ways, capped jittered backoff forever), hand the cloud's desired state and commands to
//!   the control plane and its reports up, versioned.
//!
//! The appliance never needs the cloud to stream: everything here runs beside the show and
//! gives up nothing when the cloud is gone.
#![forbid(unsafe_code)]

pub mod identity;
pub mod link;
pub mod wire;

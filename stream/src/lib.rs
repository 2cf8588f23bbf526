//! Audio encoding, FLV framing and RTMP publishing: the end of the media chain.
//!
//! # Layout
//! - [`aac`]: 48 kHz PCM → AAC-LC frames stamped in media samples (fdk-aac).
//! - [`flv`]: Annex-B → AVCC, decoder configuration records, FLV tag bodies.
//! - [`publish`]: the RTMP publish protocol without I/O — the messages a publisher sends, what
//!   the server's answers mean (on rml_rtmp's chunking and AMF0).
//! - [`rtmp`]: the [`rtmp::Distributor`] fans packets out to one publishing task per URL, each with
//!   its own bounded queue, so a slow destination never blocks the encoder or the others.
//! - [`record`]: the show as FLV files on disk, segmented and capped by size.
//! - [`tls`]: the rustls client configuration for `rtmps` outputs.
//!
//! Data flows one way: encoded packets in, bytes on sockets out.
#![forbid(unsafe_code)]

pub mod aac;
pub mod flv;
pub mod publish;
pub mod record;
pub mod rtmp;
pub mod tls;

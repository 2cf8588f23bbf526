//! Audio encoding, FLV framing and RTMP publishing: the end of the media chain.
//!
//! # Layout
//! - [`aac`]: 48 kHz PCM → AAC-LC frames stamped in media samples (fdk-aac).
//! - [`flv`]: Annex-B → AVCC, decoder configuration records, FLV tag bodies.
//! - [`publish`]: the RTMP publish protocol without I/O — the messages a publisher sends, what
//!   the server's answers mean (on rml_rtmp's chunking and AMF0).
//! - [`packet`]: media packets stamped in media samples, the stream's headers.
//! - [`mux`]: the [`mux::Muxer`] — encoded H.264 access units and AAC frames in, FLV bodies
//!   (with the codec headers tracked) out to the distributor.
//! - [`distributor`]: the [`distributor::Distributor`] fans packets out to every destination,
//!   each with its own bounded queue, so a slow destination never blocks the encoder or the others.
//! - [`rtmp`]: one publishing task per RTMP/RTMPS URL: sessions, liveness, backoff, rotation.
//! - [`record`]: the show as FLV files on disk, segmented and capped by size.
//! - [`stats`]: what each destination is doing, for health reports.
//!
//! Data flows one way: encoded packets in, bytes on sockets out.
#![forbid(unsafe_code)]

pub mod aac;
pub mod distributor;
pub mod flv;
pub mod mux;
pub mod packet;
pub mod publish;
pub mod record;
pub mod rtmp;
pub mod stats;

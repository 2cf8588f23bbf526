//! Fuzz targets: every parser that takes bytes from outside the box, as a function of raw
//! bytes that must return (an error is fine) and never panic, hang or blow up.
//!
//! # Layout
//! - this file: [`TARGETS`], each target by name; the targets themselves, one per parser.
//! - `api.rs`: the local API's request bodies and queries, through its router.
//! - `bin/emcee-fuzz.rs`: the AFL++ harness (`emcee-fuzz TARGET`), built with cargo-afl.
//! - `seeds/TARGET/`: a few valid inputs each run starts from; `regressions/TARGET/`: every
//!   input that once crashed or hung a target, replayed by `tests/replay.rs` on every CI run.
#![forbid(unsafe_code)]

use std::path::Path;

mod api;

use bytes::Bytes;
use emcee_daemon::config::Config;
use emcee_daemon::materials::{parse_materials, Materials};
use emcee_daemon::script::{parse_lines, parse_segments};
use emcee_protocol::{ControlMessage, StageEvent};
use emcee_stream::mux::Packager;
use emcee_stream::publish::{Answer, Publisher};
use rml_rtmp::time::RtmpTimestamp;

/// A fuzz target: bytes in, nothing out; it must not panic.
pub type Target = fn(&[u8]);

/// Every target, by the name the harness and the corpus directories use.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("materials", materials),
    ("script", script),
    ("ssml", ssml),
    ("channel", channel),
    ("rtmp_publish", rtmp_publish),
    ("flv_avc", flv_avc),
    ("gltf", gltf),
    ("api", api::body),
];

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// The technician's TOML (files it names are looked for in a directory that has none).
fn config(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = Config::parse(t, Path::new("/nonexistent-emcee-fuzz"), &[]);
    }
}

/// The products file.
fn materials(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = parse_materials(t);
    }
}

/// A script, as lines and as segments, against a small catalog.
fn script(data: &[u8]) {
    static CATALOG: &str = "[[product]]\nsku = \"KET-100\"\nname = \"Smart kettle\"\nprice = \"29.00\"\n\
                            [[promotion]]\nid = \"bf\"\nstarts = \"2026-11-27T00:00:00Z\"\nends = \"2026-11-28T00:00:00Z\"\n";
    let Some(t) = text(data) else { return };
    let materials = parse_materials(CATALOG).unwrap_or_else(|_| Materials::default());
    let _ = parse_lines(t, &materials);
    let _ = parse_segments(t, &materials);
}

/// One sentence of SSML, and its normalised form read again.
fn ssml(data: &[u8]) {
    if let Some(t) = text(data) {
        if let Ok(sentence) = emcee_daemon::ssml::parse(t) {
            let _ = emcee_daemon::ssml::parse(&sentence.ssml);
        }
    }
}

/// A message on the stage's control channel, either way (JSON over the WebSocket).
fn channel(data: &[u8]) {
    let _ = serde_json::from_slice::<ControlMessage>(data);
    let _ = serde_json::from_slice::<StageEvent>(data);
}

/// What an RTMP server sends a publisher, in pieces whose sizes the input's first byte picks;
/// each answer drives the publisher on as the real session does.
fn rtmp_publish(data: &[u8]) {
    let Some((&piece, rest)) = data.split_first() else { return };
    let mut publisher = Publisher::new();
    if publisher.connect("live", "rtmp://fuzz/live", "FMLE/3.0").is_err() {
        return;
    }
    for bytes in rest.chunks(usize::from(piece).max(1)) {
        let Ok((_, answers)) = publisher.read(bytes) else { return };
        for answer in answers {
            let _ = match answer {
                Answer::Connected => publisher.prepare(2_500_000, "key"),
                Answer::StreamCreated => publisher.publish("key"),
                Answer::Status { .. } => {
                    publisher.video(Bytes::from_static(&[0x17, 1, 0, 0, 0]), RtmpTimestamp::new(40))
                }
                _ => publisher.ping(),
            };
        }
    }
}

/// An encoder's Annex-B access units (split at a 0xFF byte) packaged as FLV, as the stage does.
fn flv_avc(data: &[u8]) {
    let mut packager = Packager::default();
    for (i, unit) in data.split(|&b| b == 0xff).enumerate() {
        let _ = packager.video(i as u64 * 1600, unit, i % 3 == 0);
    }
}

/// An avatar file (`.glb` / `.vrm`), loaded as the stage and `emcee check` load it.
fn gltf(data: &[u8]) {
    let _ = emcee_renderer::model::Model::from_glb(data);
}

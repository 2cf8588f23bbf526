//! RTMPS: real H.264 + AAC through TLS (nginx's stream module terminates it with a test CA made
//! here by openssl) into nginx-rtmp; an untrusted certificate is a typed TLS error, retried
//! with backoff instead of a storm.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use emcee_stream::rtmp::Output;
use emcee_tests::media::{runtime, Feed};
use emcee_tests::{free_port, probe, scratch_dir, Nginx};

/// A CA and a leaf for `localhost` / 127.0.0.1 signed by it (rustls refuses a self-signed
/// certificate used as its own CA). Test-only material, made fresh for each run.
fn make_certificates(dir: &Path) -> Result<()> {
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl").args(args).current_dir(dir).output().context("run openssl")?;
        ensure!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    std::fs::write(dir.join("leaf.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")?;
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=emcee test CA",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ])?;
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ])
}

#[test]
fn rtmps_publishes_through_tls_and_an_untrusted_certificate_is_a_typed_error() -> Result<()> {
    let dir = scratch_dir("rtmps")?;
    make_certificates(&dir)?;
    let tls_port = free_port();
    let nginx = Nginx::start_tls(&dir, tls_port, &dir.join("leaf.pem"), &dir.join("leaf.key"))?;
    let trusted =
        Output { ca_file: Some(dir.join("ca.pem")), ..Output::new(format!("rtmps://localhost:{tls_port}/live/tls")) };
    // The same server without our CA: the system store does not know it.
    let untrusted = Output::new(format!("rtmps://127.0.0.1:{tls_port}/live/untrusted"));
    let rt = runtime();
    let (feed, stats) = Feed::start_outputs(&[trusted, untrusted], &rt)?;
    std::thread::sleep(Duration::from_secs(8));
    feed.finish(&rt)?;

    ensure!(stats[0].connects.load(Ordering::Relaxed) == 1, "trusted output: {}", stats[0].state());
    ensure!(stats[0].bytes_acked.load(Ordering::Relaxed) > 50_000, "the server acknowledged through TLS");
    let recording = nginx.recording("tls");
    let errors = probe::decode_errors(&recording)?;
    ensure!(errors.trim().is_empty(), "decode errors: {errors}");
    let video = probe::packets(&recording, "v")?;
    ensure!(video.len() > 200 && video[0].2, "{} video packets", video.len());

    let error = stats[1].last_error().unwrap_or_default();
    ensure!(stats[1].connects.load(Ordering::Relaxed) == 0, "the untrusted output never published");
    ensure!(error.starts_with("TLS with 127.0.0.1") && error.contains("certificate"), "last error: {error}");
    // Backoff, not a storm: waits of 1, 1.5, 2.25, 3.4 s (±10 %) leave room for five tries in 8 s.
    let attempts = stats[1].attempts.load(Ordering::Relaxed);
    ensure!((3..=6).contains(&attempts), "{attempts} attempts in 8 s");
    eprintln!("untrusted: {attempts} attempts in 8 s, last error: {error}");
    ensure!(!nginx.recording("untrusted").exists(), "nothing recorded for the untrusted output");
    Ok(())
}

//! RTMPS: real H.264 + AAC through TLS (nginx's stream module terminates it with a test CA made
//! here by openssl) into nginx-rtmp; an untrusted certificate is a typed TLS error, retried
//! with backoff instead of a storm.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use emcee_e2e::{free_port, probe, scratch_dir, Nginx};
use emcee_stream::aac::AacEncoder;
use emcee_stream::rtmp::{Distributor, MediaPacket, Output, StreamHeaders};

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

/// Ten seconds of real media into `outputs`; the distributor's stats afterwards.
fn publish(outputs: &[Output], seconds: u64) -> Result<Vec<std::sync::Arc<emcee_stream::rtmp::SinkStats>>> {
    use emcee_encoder::{EncoderSettings, I420Frame, OpenH264Encoder, Picture, VideoEncoder};
    use emcee_stream::flv;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut aac = AacEncoder::new(128_000, 2)?;
    let headers = StreamHeaders {
        width: 320,
        height: 180,
        fps: 30,
        video_kbps: 400,
        audio_kbps: 128,
        audio_channels: 2,
        video: None,
        audio: Some(flv::audio_sequence_header(&aac.audio_specific_config())),
    };
    let mut d = {
        let _guard = rt.enter();
        Distributor::start(outputs, headers, rt.handle())?
    };
    let stats: Vec<_> = d.stats().into_iter().map(|(_, s)| s).collect();
    let settings = EncoderSettings { width: 320, height: 180, fps: 30, bitrate_bps: 400_000, keyframe_interval: 60 };
    let mut encoder = OpenH264Encoder::new(settings)?;
    let mut i420 = vec![128u8; I420Frame::byte_len(320, 180)];
    let start = std::time::Instant::now();
    let mut audio = Vec::new();
    let mut headers_set = false;
    for i in 0..seconds * 30 {
        std::thread::sleep(
            (start + Duration::from_micros(i * 33_333)).saturating_duration_since(std::time::Instant::now()),
        );
        i420.iter_mut().take(320 * 180).enumerate().for_each(|(p, b)| *b = (16 + (p as u64 + i * 5) % 200) as u8);
        let encoded = encoder.encode(Picture::Host(I420Frame::new(320, 180, &i420)?), i)?;
        let au = flv::annex_b_to_avcc(&encoded.annex_b, encoded.keyframe)?;
        if let (false, Some(sps), Some(pps)) = (headers_set, &au.sps, &au.pps) {
            d.set_codec_headers(
                Some(flv::video_sequence_header(&flv::avc_decoder_configuration_record(sps, pps)?)),
                None,
            );
            headers_set = true;
        }
        d.send(MediaPacket::Video { media_ts: i * 1600, keyframe: au.keyframe, body: flv::video_frame(&au) });
        aac.push(&vec![0i16; 3200], &mut audio)?;
        for a in audio.drain(..) {
            d.send(MediaPacket::Audio { media_ts: a.media_ts, body: flv::audio_frame(&a.data) });
        }
    }
    rt.block_on(d.finish(Duration::from_secs(5)));
    Ok(stats)
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
    let stats = publish(&[trusted, untrusted], 8)?;

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

//! Lip sync measured where viewers see it: on the decoded RTMP recording of the human avatar
//! saying a run of "pa" syllables (every one a full closure and opening). The mouth region's
//! change from the closed mouth, frame by frame, is cross-correlated with the audio's loudness
//! per frame; the best lag (refined between frames) is the offset.
//!
//! Convention (ITU-R BT.1359-1): positive = sound early. Detectable at about +45 ms and −125 ms;
//! the mouth leads by design (40 ms), so the sound should be a little late: −45…+20 ms.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use emcee_protocol::CameraPreset;
use emcee_renderer::camera::project;
use emcee_renderer::model::Model;
use emcee_renderer::rig::Rig;
use emcee_tests::{
    audit_log, media_ms, play_to_end, probe, scratch_dir, use_neural_voice, workspace_root, write_show, Nginx,
};

const W: usize = 640;
const H: usize = 360;
const FPS: usize = 30;
const SAMPLES_PER_FRAME: usize = 48_000 / FPS;

fn zero_mean(v: &[f64]) -> Vec<f64> {
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    v.iter().map(|x| x - mean).collect()
}

/// Correlation of `a[i]` with `b[i + lag]`.
fn correlation(a: &[f64], b: &[f64], lag: i64) -> f64 {
    (0..a.len() as i64)
        .filter_map(|i| {
            let j = usize::try_from(i + lag).ok()?;
            Some(a[i as usize] * b.get(j)?)
        })
        .sum()
}

#[test]
fn the_mouth_and_the_sound_meet_within_broadcast_tolerance() -> Result<()> {
    lip_sync("lipsync", false)
}

#[test]
fn the_neural_voice_meets_the_mouth_within_broadcast_tolerance() -> Result<()> {
    lip_sync("lipsync-piper", true)
}

/// Plays the "pa" line with espeak-ng or the Piper voice and checks the offset.
fn lip_sync(name: &str, neural: bool) -> Result<()> {
    let avatar = workspace_root().join("run/assets/avatar/host.vrm");
    ensure!(avatar.exists(), "{}: run scripts/setup.sh", avatar.display());
    let dir = scratch_dir(name)?;
    let nginx = Nginx::start(&dir.join("nginx"))?;
    let line = "Pa, pa, pa, pa, pa, pa, pa, pa. Ba, ba, ba, ba, ba, ba, ba, ba.";
    let config = write_show(&dir, &[line], &[nginx.url("lips")], "end")?;
    let text = std::fs::read_to_string(&config)?
        .replace("[avatar]\n", &format!("[avatar]\nmodel = \"{}\"\nsubtitles = false\n", avatar.display()));
    std::fs::write(&config, text)?;
    if neural {
        use_neural_voice(&config)?;
    }
    play_to_end(&config, Duration::from_secs(60))?;
    drop(nginx);

    let log = audit_log(&dir)?;
    let (start_ms, end_ms) = (media_ms(&log, "", "started"), media_ms(&log, "", "finished"));
    ensure!(start_ms >= 0 && end_ms > start_ms + 2000, "the line played: {start_ms}..{end_ms}");

    let rec = dir.join("nginx/rec/lips.flv");
    let frames = probe::gray_frames(&rec, W, H)?;
    let pcm = probe::mono_audio(&rec)?;
    let model = Model::from_glb(&std::fs::read(&avatar)?)?;
    let framing = Rig::new(&model).framing;
    let (mx, my) = project(
        model.target_centroid("jawOpen").context("a jawOpen target")?,
        CameraPreset::Medium,
        framing,
        W as u32,
        H as u32,
    );
    let (mx, my) = (mx.round() as usize, my.round() as usize + 2);

    // How much the mouth moves into each frame (the slow head sway barely registers between two
    // frames), against how much the loudness changes into it: both peak at every "pa".
    let first = start_ms as usize * FPS / 1000 + 1;
    let last = (end_ms as usize * FPS / 1000).min(frames.len() - 1);
    let motion: Vec<f64> = (first..last)
        .map(|n| {
            let (f, g) = (&frames[n - 1], &frames[n]);
            let mut sum = 0u64;
            for y in my - 8..my + 8 {
                for x in mx - 12..mx + 12 {
                    sum += u64::from(f[y * W + x].abs_diff(g[y * W + x]));
                }
            }
            sum as f64
        })
        .collect();
    // Loudness of the sound that goes with each frame (the frame's 1/30 s of audio).
    let loudness = |n: usize| {
        let chunk = pcm.get(n * SAMPLES_PER_FRAME..(n + 1) * SAMPLES_PER_FRAME).unwrap_or(&[]);
        (chunk.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / chunk.len().max(1) as f64).sqrt()
    };
    let change: Vec<f64> = (first..last).map(|n| (loudness(n) - loudness(n - 1)).abs()).collect();
    let (a, b) = (zero_mean(&motion), zero_mean(&change));
    let lags: Vec<(i64, f64)> = (-6..=6).map(|lag| (lag, correlation(&a, &b, lag))).collect();
    let (best, peak) = lags.iter().copied().fold((0, f64::MIN), |acc, x| if x.1 > acc.1 { x } else { acc });
    ensure!((-5..=5).contains(&best), "no clear peak: {lags:?}");
    // Parabola through the peak and its neighbours: the lag between frames.
    let value = |lag: i64| lags.iter().find(|x| x.0 == lag).map_or(peak, |x| x.1);
    let (l, r) = (value(best - 1), value(best + 1));
    let shift = 0.5 * (l - r) / (l - 2.0 * peak + r);
    // The sound follows the mouth by `lag` frames; sound early is positive.
    let offset_ms = -(best as f64 + shift) * 1000.0 / FPS as f64;
    let norm = (a.iter().map(|x| x * x).sum::<f64>() * b.iter().map(|x| x * x).sum::<f64>()).sqrt();
    eprintln!(
        "lip sync ({name}): sound {offset_ms:+.1} ms relative to the mouth (peak correlation {:.2})",
        peak / norm
    );
    ensure!(peak / norm > 0.3, "the mouth follows the sound at all: r = {:.2}", peak / norm);
    ensure!((-45.0..=20.0).contains(&offset_ms), "lip sync offset {offset_ms:+.1} ms is outside −45…+20 ms");
    Ok(())
}

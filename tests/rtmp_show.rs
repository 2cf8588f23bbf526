//! The walking skeleton end to end: `emcee run` (control plane + stage, two processes) streams a
//! three-sentence show into a real nginx-rtmp, and we check the recording with ffprobe/ffmpeg.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use emcee_protocol::CameraPreset;
use emcee_renderer::avatar::MOUTH_CENTER;
use emcee_renderer::camera::project_to_pixels;
use emcee_tests::{bin_dir, free_port, probe, scratch_dir, write_show, Nginx};

const W: usize = 640;
const H: usize = 360;
const FPS: f64 = 30.0;
const SAMPLES_PER_FRAME: usize = 1600;
const SCRIPT: [&str; 3] = [
    "Hello, and welcome to the show.",
    "This kettle boils a litre of water in three minutes.",
    "Thank you for watching, and goodbye!",
];

/// The shows run one at a time: two real-time shows on a 2-core machine would slow each other.
static ONE_SHOW_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_show(config: &std::path::Path, seconds: u32) -> Result<()> {
    let started = Instant::now();
    let status = Command::new(bin_dir().join("emcee"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(["--run-for", &seconds.to_string()])
        .status()?;
    ensure!(status.success(), "emcee run failed: {status}");
    let limit = Duration::from_secs(u64::from(seconds) + 40);
    ensure!(started.elapsed() < limit, "the show took {:?}", started.elapsed());
    Ok(())
}

/// Normalised cross-correlation of `a` against `b` shifted by `lag` (b[i + lag] paired with a[i]).
fn correlation(a: &[f64], b: &[f64], lag: isize) -> f64 {
    let pairs: Vec<(f64, f64)> = (0..a.len() as isize)
        .filter_map(|i| {
            let j = i + lag;
            (j >= 0 && (j as usize) < b.len()).then(|| (a[i as usize], b[j as usize]))
        })
        .collect();
    let n = pairs.len() as f64;
    let (ma, mb) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let cov: f64 = pairs.iter().map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = pairs.iter().map(|(x, _)| (x - ma).powi(2)).sum();
    let vb: f64 = pairs.iter().map(|(_, y)| (y - mb).powi(2)).sum();
    cov / (va.sqrt() * vb.sqrt()).max(1e-12)
}

#[test]
fn a_three_sentence_show_arrives_clean_at_nginx_rtmp() -> Result<()> {
    let _one = ONE_SHOW_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("rtmp-show")?;
    let nginx = Nginx::start(&dir.join("nginx"))?;
    // Two outputs: every configured destination gets the whole show.
    let config = write_show(&dir, &SCRIPT, &[nginx.url("show"), nginx.url("second")], "idle")?;
    run_show(&config, 20)?;
    drop(nginx); // finalise the recordings
    let rec = dir.join("nginx/rec/show.flv");
    let second = dir.join("nginx/rec/second.flv");
    ensure!(probe::decode_errors(&second)?.trim().is_empty(), "decode errors on the second output");
    let (first_frames, second_frames) = (probe::packets(&rec, "v")?.len(), probe::packets(&second, "v")?.len());
    ensure!(first_frames == second_frames, "outputs got {first_frames} and {second_frames} video frames");

    // Exactly one H.264 stream at the configured size and rate, one AAC 48 kHz stream.
    let streams = probe::streams(&rec)?;
    let video: Vec<_> = streams.iter().filter(|s| s["codec_type"] == "video").collect();
    let audio: Vec<_> = streams.iter().filter(|s| s["codec_type"] == "audio").collect();
    ensure!(video.len() == 1 && audio.len() == 1, "streams: {streams:#?}");
    ensure!(video[0]["codec_name"] == "h264", "{:?}", video[0]["codec_name"]);
    ensure!(video[0]["width"] == W as u64 && video[0]["height"] == H as u64, "size {:?}", video[0]);
    ensure!(video[0]["r_frame_rate"] == "30/1", "rate {:?}", video[0]["r_frame_rate"]);
    ensure!(audio[0]["codec_name"] == "aac" && audio[0]["sample_rate"] == "48000", "audio {:?}", audio[0]);

    // Keyframes every 2.0 s (± one frame).
    let vpk = probe::packets(&rec, "v")?;
    let keys: Vec<f64> = vpk.iter().filter(|p| p.2).map(|p| p.0).collect();
    ensure!(keys.len() >= 9, "only {} keyframes", keys.len());
    for pair in keys.windows(2) {
        let gap = pair[1] - pair[0];
        ensure!((gap - 2.0).abs() <= 1.0 / FPS + 1e-3, "keyframe gap {gap} s in {keys:?}");
    }

    // Decodes without a single error.
    let errors = probe::decode_errors(&rec)?;
    ensure!(errors.trim().is_empty(), "decode errors: {errors}");

    // Audio and video end together (within one frame) and last about 20 s.
    let apk = probe::packets(&rec, "a")?;
    let end = |p: &[(f64, f64, bool)]| p.iter().map(|x| x.0 + x.1).fold(0.0, f64::max);
    let (vend, aend) = (end(&vpk), end(&apk));
    ensure!((vend - aend).abs() <= 1.0 / FPS, "video ends at {vend} s, audio at {aend} s");
    ensure!((19.0..=21.0).contains(&vend), "video lasts {vend} s");

    // The mouth moves with the speech.
    let frames = probe::gray_frames(&rec, W, H)?;
    let pcm = probe::mono_audio(&rec)?;
    let (mx, my) = project_to_pixels(MOUTH_CENTER, CameraPreset::Medium, W as u32, H as u32);
    let (x0, x1) = ((mx - 26.0) as usize, (mx + 26.0) as usize);
    let (y0, y1) = ((my - 8.0) as usize, (my + 26.0) as usize);
    let change: Vec<f64> = (0..frames.len())
        .map(|n| {
            if n == 0 {
                return 0.0;
            }
            let (a, b) = (&frames[n - 1], &frames[n]);
            let mut sum = 0u64;
            for y in y0..y1 {
                for x in x0..x1 {
                    sum += u64::from(a[y * W + x].abs_diff(b[y * W + x]));
                }
            }
            sum as f64 / ((x1 - x0) * (y1 - y0)) as f64
        })
        .collect();
    let loudness: Vec<f64> = (0..frames.len())
        .map(|n| {
            let s = &pcm[(n * SAMPLES_PER_FRAME).min(pcm.len())..((n + 1) * SAMPLES_PER_FRAME).min(pcm.len())];
            if s.is_empty() {
                return 0.0;
            }
            (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        })
        .collect();
    let speaking = |n: usize| loudness[n] > 500.0;
    let quiet = |n: usize| (n.saturating_sub(6)..(n + 6).min(loudness.len())).all(|k| loudness[k] < 30.0);
    let mean = |idx: Vec<usize>| idx.iter().map(|&n| change[n]).sum::<f64>() / idx.len().max(1) as f64;
    let speech_frames: Vec<usize> = (1..change.len()).filter(|&n| speaking(n)).collect();
    let quiet_frames: Vec<usize> = (1..change.len()).filter(|&n| quiet(n)).collect();
    ensure!(
        speech_frames.len() > 60 && quiet_frames.len() > 60,
        "speech {} quiet {}",
        speech_frames.len(),
        quiet_frames.len()
    );
    let (during_speech, during_silence) = (mean(speech_frames), mean(quiet_frames));
    ensure!(
        during_speech > 3.0 * during_silence.max(0.05),
        "mouth change in speech {during_speech:.3} vs silence {during_silence:.3}"
    );
    let (best_lag, best) = (-10isize..=10)
        .map(|lag| (lag, correlation(&loudness, &change, lag)))
        .fold((0, f64::MIN), |acc, x| if x.1 > acc.1 { x } else { acc });
    let lag_ms = best_lag as f64 * 1000.0 / FPS;
    eprintln!("mouth/loudness correlation peak {best:.2} at {lag_ms:+.0} ms; change speech {during_speech:.2} silence {during_silence:.2}");
    ensure!(best > 0.3, "mouth change barely follows loudness (r = {best:.2})");
    ensure!(lag_ms.abs() <= 80.0, "mouth/audio peak at {lag_ms} ms");
    Ok(())
}

/// A second, independent RTMP server implementation: FFmpeg's own listener.
#[test]
fn ffmpeg_as_the_rtmp_server_receives_a_clean_stream() -> Result<()> {
    let _one = ONE_SHOW_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("ffmpeg-server")?;
    let port = free_port();
    let url = format!("rtmp://127.0.0.1:{port}/live/show");
    let out = dir.join("received.flv");
    let mut server = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-listen", "1", "-timeout", "30", "-i", &url, "-c", "copy", "-f", "flv"])
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Wait until it listens, without connecting (FFmpeg accepts exactly one connection).
    let listening = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        Command::new("ss").args(["-Hltn", &format!("sport = :{port}")]).output().is_ok_and(|o| !o.stdout.is_empty())
    });
    ensure!(listening, "ffmpeg did not listen on {port}");
    let config = write_show(&dir, &SCRIPT, std::slice::from_ref(&url), "idle")?;
    run_show(&config, 8)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();

    let streams = probe::streams(&out)?;
    let codecs: Vec<&str> = streams.iter().filter_map(|s| s["codec_name"].as_str()).collect();
    ensure!(codecs == ["h264", "aac"] || codecs == ["aac", "h264"], "streams {codecs:?}");
    let errors = probe::decode_errors(&out)?;
    ensure!(errors.trim().is_empty(), "decode errors: {errors}");
    let vpk = probe::packets(&out, "v")?;
    let secs = vpk.len() as f64 / FPS;
    ensure!((7.5..=8.5).contains(&secs), "{} video frames = {secs} s", vpk.len());
    Ok(())
}

//! Never black: a renderer fault injected mid-show (a lost device, then a panic in the render
//! path) gives the slate, and the show comes back on its own. The stage's pipeline runs for real
//! (lavapipe, openh264, fdk-aac) into nginx-rtmp; the recording is decoded frame by frame.

use std::time::Duration;

use anyhow::{ensure, Result};
use emcee_daemon::config::Config;
use emcee_protocol::StageEvent;
use emcee_stage::pipeline::{Command, Pipeline, RenderFault};
use emcee_stage::slate::slate_i420;
use emcee_tests::{probe, scratch_dir, write_show, Nginx};

const W: usize = 640;
const H: usize = 360;

#[test]
fn a_renderer_fault_shows_the_slate_and_the_show_comes_back_on_its_own() -> Result<()> {
    let dir = scratch_dir("slate")?;
    let nginx = Nginx::start(&dir)?;
    let show = write_show(&dir, &["Hello."], &[nginx.url("slate")], "end")?;
    let config = Config::load(&show, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let stage = config.stage.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (events_tx, mut events_rx) = tokio::sync::mpsc::channel(1024);
    let mut pipeline = Pipeline::start(stage.clone(), events_tx, rt.handle().clone(), Default::default())?;
    let events = std::thread::spawn(move || {
        let mut slate_frames = 0;
        while let Some(event) = events_rx.blocking_recv() {
            if let StageEvent::Health(h) = event {
                slate_frames = h.slate_frames;
            }
        }
        slate_frames
    });

    let send = |c: Command| pipeline.commands.send(c).map_err(|_| anyhow::anyhow!("the pipeline is gone"));
    std::thread::sleep(Duration::from_secs(3));
    send(Command::Drill(RenderFault::DeviceLost))?;
    std::thread::sleep(Duration::from_secs(6));
    send(Command::Drill(RenderFault::Panic))?;
    std::thread::sleep(Duration::from_secs(6));
    send(Command::End { fade_frames: 0 })?;
    pipeline.join();
    drop(pipeline);
    let reported = events.join().map_err(|_| anyhow::anyhow!("events thread"))?;
    drop(rt);

    let recording = nginx.recording("slate");
    let errors = probe::decode_errors(&recording)?;
    ensure!(errors.trim().is_empty(), "decode errors: {errors}");
    let frames = probe::gray_frames(&recording, W, H)?;
    ensure!(frames.len() > 400, "{} frames", frames.len());
    let a = &stage.avatar;
    let slate = slate_i420(W as u32, H as u32, a.scene.background_rgb, a.slate.as_deref(), a.label.as_deref());
    // ffmpeg's `gray` is full range: stretch the slate's limited-range luma the same way.
    let slate_luma: Vec<u8> =
        slate[..W * H].iter().map(|&y| ((i32::from(y) - 16) * 255 / 219).clamp(0, 255) as u8).collect();
    let mean_diff =
        |f: &[u8]| f.iter().zip(&slate_luma).map(|(x, y)| u64::from(x.abs_diff(*y))).sum::<u64>() / (W * H) as u64;
    let kinds: Vec<bool> = frames.iter().map(|f| mean_diff(f) < 3).collect();
    for (i, f) in frames.iter().enumerate() {
        let mean = f.iter().map(|&y| u64::from(y)).sum::<u64>() / (W * H) as u64;
        ensure!(mean > 24, "frame {i} is black (mean luma {mean})");
    }
    // Runs of slate frames: (first frame, length).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, &is_slate) in kinds.iter().enumerate() {
        match runs.last_mut() {
            Some((start, len)) if is_slate && *start + *len == i => *len += 1,
            _ if is_slate => runs.push((i, 1)),
            _ => {}
        }
    }
    eprintln!("slate runs (frame, length): {runs:?} of {} frames; health reported {reported}", frames.len());
    ensure!(runs.len() == 2, "one slate per fault: {runs:?}");
    for &(start, len) in &runs {
        // Back on its own: the rebuild takes well under a second on lavapipe.
        ensure!(len < 5 * 30, "a slate of {len} frames from frame {start}");
    }
    ensure!(runs[0].0 > 60, "the show rendered before the first fault");
    let after = runs[1].0 + runs[1].1;
    ensure!(frames.len() - after > 60, "the show rendered again after the second fault");
    ensure!(reported > 0, "health counted the slate");
    Ok(())
}

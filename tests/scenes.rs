//! Scenes, voices and actions end to end: a script whose segments name a scene (background,
//! camera) and a voice and carry action marks, played into nginx-rtmp; the recording shows each
//! scene from the moment its first sentence starts (as the audit log times it), the voices sound
//! different, and the head shakes while the audit log says the gesture runs.

use std::time::Duration;

use anyhow::{ensure, Result};
use emcee_protocol::CameraPreset;
use emcee_renderer::camera::project_to_pixels;
use emcee_tests::{audit_log, media_ms, play_to_end, probe, scratch_dir, write_show, Nginx};

const W: usize = 640;
const H: usize = 360;

const MATERIALS: &str = r##"
[[scene]]
id = "red-room"
background = "#c03030"
camera = "medium"

[[scene]]
id = "green-close"
background = "#30c030"
camera = "close"

[[voice]]
id = "slow"
name = "en-us"
words_per_minute = 110
pitch = 80
"##;

const SCRIPT: &str = r#"
[[segment]]
scene = "red-room"
sentences = ["Welcome to the red room."]

[[segment]]
scene = "green-close"
voice = "slow"
sentences = ["<mark name=\"expression:happy\"/>This is the green room, up close."]

[[segment]]
scene = "green-close"
sentences = ["<mark name=\"gesture:shake\"/>This is the green room, up close."]
"#;

/// Pixels in row `y` that are not background (differ from the corner's luma).
fn figure_pixels(frame: &[u8], y: usize) -> Vec<usize> {
    let bg = i32::from(frame[2 * W + 2]);
    (0..W).filter(|&x| (i32::from(frame[y * W + x]) - bg).abs() > 12).collect()
}

fn figure_width(frame: &[u8], y: usize) -> usize {
    figure_pixels(frame, y).len()
}

/// Motion between consecutive frames in a band across the nose (which turns with the head;
/// the mouth and the blinking eyes are outside it): mean absolute luma change per frame.
fn nose_motion(frames: &[Vec<u8>]) -> f64 {
    let (nx, ny) = project_to_pixels([0.0, -0.08, 0.8], CameraPreset::Close, W as u32, H as u32);
    let (x0, x1, y0, y1) = (nx as usize - 60, nx as usize + 60, ny as usize - 10, ny as usize + 10);
    let diff = |a: &[u8], b: &[u8]| -> f64 {
        let mut sum = 0u64;
        for y in y0..y1 {
            for x in x0..x1 {
                sum += u64::from(a[y * W + x].abs_diff(b[y * W + x]));
            }
        }
        sum as f64 / ((x1 - x0) * (y1 - y0)) as f64
    };
    frames.windows(2).map(|w| diff(&w[0], &w[1])).sum::<f64>() / frames.len().max(2) as f64
}

#[test]
fn each_segment_shows_its_scene_and_speaks_in_its_voice() -> Result<()> {
    let dir = scratch_dir("scenes")?;
    let nginx = Nginx::start(&dir.join("nginx"))?;
    let config = write_show(&dir, &["unused"], &[nginx.url("scenes")], "end")?;
    std::fs::write(dir.join("products.toml"), MATERIALS)?;
    std::fs::write(dir.join("script.toml"), SCRIPT)?;
    let text = std::fs::read_to_string(&config)?
        .replace("script = \"script.txt\"", "script = \"script.toml\"")
        .replace("[state]", "[content]\nproducts = \"products.toml\"\n\n[state]");
    std::fs::write(&config, text)?;

    play_to_end(&config, Duration::from_secs(60))?;
    drop(nginx);

    let rec = dir.join("nginx/rec/scenes.flv");
    ensure!(probe::decode_errors(&rec)?.trim().is_empty());
    let log = audit_log(&dir)?;
    let at = |cue: &str, event: &str| media_ms(&log, cue, event);
    let frames = probe::gray_frames(&rec, W, H)?;
    let corner: Vec<u8> = frames.iter().map(|f| f[2 * W + 2]).collect();
    // BT.709 limited-range luma of the two backgrounds: #c03030 ≈ 84, #30c030 ≈ 146.
    let first_green = corner.iter().position(|&l| l > 120);
    let Some(first_green) = first_green else { anyhow::bail!("the green scene never showed: {corner:?}") };
    ensure!(corner[..first_green].iter().filter(|&&l| (70..100).contains(&l)).count() > 15, "red first: {corner:?}");
    // The cut happens on the frame where the sentence's first sample is (±1 frame for rounding).
    let cut_ms = first_green as i64 * 1000 / 30;
    let started_ms = at("s0.1.0", "started");
    ensure!((cut_ms - started_ms).abs() <= 34, "scene cut at {cut_ms} ms, sentence started at {started_ms} ms");
    // Until the end-of-show fade (the last second).
    let fade_from = corner.len().saturating_sub(32);
    ensure!(corner[first_green..fade_from].iter().all(|&l| l > 120), "the green scene stays: {corner:?}");

    // The close-up shows the figure wider than the medium shot (mid-height row).
    let (red, green) = (&frames[first_green / 2], &frames[first_green + 5]);
    let (medium_w, close_w) = (figure_width(red, H / 2), figure_width(green, H / 2));
    ensure!(close_w as f64 > medium_w as f64 * 1.3, "close-up {close_w} px vs medium {medium_w} px");

    // The same sentence in the slow voice lasts longer than in the default one.
    let slow = at("s0.1.0", "finished") - started_ms;
    let default = at("s0.2.0", "finished") - at("s0.2.0", "started");
    ensure!(slow as f64 > default as f64 * 1.25, "slow voice {slow} ms vs default {default} ms");

    // Actions: the expression replaces nothing and holds to the end; the gesture runs its
    // course in parallel with the speech.
    let actions: Vec<String> = log
        .iter()
        .filter(|r| r.event.starts_with("action_"))
        .map(|r| format!("{} {} {}", r.cue, r.event, r.text))
        .collect();
    ensure!(
        actions
            == [
                "s0.1.0 action_started expression:happy",
                "s0.2.0 action_started gesture:shake",
                "s0.2.0 action_finished gesture:shake",
                "s0.1.0 action_stopped expression:happy",
            ],
        "{actions:#?}"
    );
    // The head shakes while the gesture runs: the nose moves much more than in as long a
    // stretch of the sentence before (same scene, speaking, idle sway only).
    let frame_of = |ms: i64| (ms * 30 / 1000) as usize;
    let shake = frame_of(at("s0.2.0", "action_started"))..frame_of(at("s0.2.0", "action_finished"));
    let calm_from = frame_of(at("s0.1.0", "started")) + 5;
    let calm = calm_from..calm_from + shake.len();
    let (shaking, idle) = (nose_motion(&frames[shake]), nose_motion(&frames[calm]));
    ensure!(shaking > idle * 2.5, "nose motion {shaking:.2} shaking vs {idle:.2} idle");
    Ok(())
}

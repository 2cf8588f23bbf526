//! Scenes and voices as materials, end to end: a script whose segments name a scene (background,
//! camera) and a voice, played into nginx-rtmp; the recording shows each scene from the moment
//! its first sentence starts (as the audit log times it), and the voices sound different.

use std::time::Duration;

use anyhow::{ensure, Result};
use emcee_daemon::store::Store;
use emcee_e2e::{probe, scratch_dir, spawn_show, wait_for_end, write_show, Nginx};

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
sentences = ["This is the green room, up close."]

[[segment]]
scene = "green-close"
sentences = ["This is the green room, up close."]
"#;

/// Pixels in row `y` that are not background (differ from the corner's luma).
fn figure_width(frame: &[u8], y: usize) -> usize {
    let bg = i32::from(frame[2 * W + 2]);
    frame[y * W..(y + 1) * W].iter().filter(|&&l| (i32::from(l) - bg).abs() > 12).count()
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

    let mut show = spawn_show(&config)?;
    let code = wait_for_end(&mut show, Duration::from_secs(60))?;
    ensure!(code.success(), "emcee run: {code}");
    drop(nginx);

    let rec = dir.join("nginx/rec/scenes.flv");
    ensure!(probe::decode_errors(&rec)?.trim().is_empty());
    let log = Store::open(&dir.join("state"))?.audit_since(0, 100)?;
    let at = |cue: &str, event: &str| {
        log.iter().find(|r| r.cue == cue && r.event == event).map(|r| r.media_ms).unwrap_or(-1)
    };
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
    Ok(())
}

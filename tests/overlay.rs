//! Subtitles and the product card end to end, on the RTMP recording: the subtitle band changes
//! with the sentence the audit log says plays, and the card (with the product's image) is up on
//! the right from its mark until `card:hide`.

use std::time::Duration;

use anyhow::{ensure, Result};
use emcee_tests::{audit_log, media_ms, play_to_end, probe, scratch_dir, write_show, Nginx};

const W: usize = 640;
const H: usize = 360;

/// Pixels whose luma differs by more than 60 between `a` and `b` in the box [x0, x1) × [y0, y1)
/// (the avatar's own motion between two frames stays well under that).
fn changed(a: &[u8], b: &[u8], (x0, x1, y0, y1): (usize, usize, usize, usize)) -> usize {
    (y0..y1).flat_map(|y| (x0..x1).map(move |x| y * W + x)).filter(|&i| a[i].abs_diff(b[i]) > 60).count()
}

#[test]
fn subtitles_follow_the_speech_and_the_card_follows_its_marks() -> Result<()> {
    let dir = scratch_dir("overlay")?;
    let nginx = Nginx::start(&dir.join("nginx"))?;
    let sentences = [
        "Welcome to the show.",
        "<mark name=\"card:show:KET-100\"/>Here is the kettle, and it is very good.",
        "<mark name=\"card:hide\"/>Goodbye.",
    ];
    let config = write_show(&dir, &sentences, &[nginx.url("overlay")], "end")?;
    // A plain white product picture: the card's image area is brighter than its text.
    let png = dir.join("kettle.png");
    std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i", "color=c=white:s=64x64", "-frames:v", "1"])
        .arg(&png)
        .status()?;
    std::fs::write(
        dir.join("products.toml"),
        "[[product]]\nsku = \"KET-100\"\nname = \"Smart kettle\"\nprice = \"29.00\"\nimages = [\"kettle.png\"]\n",
    )?;
    let text =
        std::fs::read_to_string(&config)?.replace("[state]", "[content]\nproducts = \"products.toml\"\n\n[state]");
    std::fs::write(&config, text)?;

    play_to_end(&config, Duration::from_secs(60))?;
    drop(nginx);

    let log = audit_log(&dir)?;
    let at = |cue: &str, event: &str| media_ms(&log, cue, event);
    let frames = probe::gray_frames(&dir.join("nginx/rec/overlay.flv"), W, H)?;
    let frame_at = |ms: i64| &frames[((ms.max(0) * 30 / 1000) as usize).min(frames.len() - 1)];
    // The subtitle band (bottom quarter) holds still within a sentence and changes with the
    // next one ("Welcome to the show." → "Goodbye.").
    let band = (W / 10, W * 9 / 10, H * 3 / 4, H - 8);
    let (first, last) = (at("s0.0.0", "started"), at("s0.2.0", "started"));
    let welcome = frame_at(first + 300);
    let still = changed(welcome, frame_at(first + 700), band);
    let speaking = changed(welcome, frame_at(last + 300), band);
    // (Within a sentence only the avatar's own motion changes the band.)
    ensure!(
        speaking > 1000 && speaking > 8 * still,
        "subtitle: {speaking} pixels change with the sentence, {still} within it"
    );
    // The card on the right: up after its mark, down after `card:hide`.
    let card = (W * 2 / 3, W - 8, H / 8, H / 2);
    let without = frame_at(at("s0.0.0", "finished") - 300);
    let with_card = changed(without, frame_at(at("s0.1.0", "finished") - 300), card);
    let hidden = changed(without, frame_at(at("s0.2.0", "finished") - 100), card);
    ensure!(with_card > 2000, "the card is up: {with_card} pixels changed");
    ensure!(hidden < 50, "the card is down after card:hide: {hidden} pixels changed");
    eprintln!("subtitle {speaking} vs {still}; card {with_card} vs {hidden}");
    Ok(())
}

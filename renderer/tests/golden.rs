//! Golden images of the human avatar on lavapipe: the frames must stay perceptually the same as
//! the committed references in `tests/golden/` (I420 stored as a grayscale PNG: the Y plane with
//! the U and V planes below it). A frame passes when its bytes differ from the reference by
//! less than 1.5 on average and fewer than 0.5 % of them by more than 24 — small enough to
//! catch a wrong pose, colour or layout, loose enough for rounding across Mesa versions.
//!
//! `EMCEE_BLESS=1 cargo test -p emcee-renderer --test golden` writes the references after a
//! deliberate change (look at them before committing).

use std::path::PathBuf;

use emcee_overlay::{Look, Overlay};
use emcee_protocol::Card;
use emcee_renderer::model::Model;
use emcee_renderer::{Pose, Renderer};

const W: u32 = 320;
const H: u32 = 180;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn check(name: &str, frame: &[u8]) -> Result<(), String> {
    let path = golden_dir().join(format!("{name}.png"));
    let rows = frame.len() as u32 / W;
    if std::env::var_os("EMCEE_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).map_err(|e| e.to_string())?;
        image::GrayImage::from_raw(W, rows, frame.to_vec()).ok_or("size")?.save(&path).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let reference = image::open(&path).map_err(|e| format!("{}: {e} (bless with EMCEE_BLESS=1)", path.display()))?;
    let reference = reference.to_luma8().into_raw();
    if reference.len() != frame.len() {
        return Err(format!("{name}: size changed"));
    }
    let diffs: Vec<u8> = reference.iter().zip(frame).map(|(a, b)| a.abs_diff(*b)).collect();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    let large = diffs.iter().filter(|&&d| d > 24).count() as f64 / diffs.len() as f64;
    eprintln!("{name}: mean difference {mean:.3}, {:.3} % of bytes off by more than 24", large * 100.0);
    if mean < 1.5 && large < 0.005 {
        Ok(())
    } else {
        Err(format!("{name}: mean difference {mean:.2}, {:.2} % of bytes far off", large * 100.0))
    }
}

#[test]
fn the_human_looks_as_it_did() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../run/assets/avatar/host.vrm");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}: run scripts/setup.sh", path.display()));
    let mut r = Renderer::with_model(W, H, [31, 53, 80], Model::from_glb(&bytes).unwrap()).unwrap();
    let mut failures = Vec::new();
    let mut frame = |r: &mut Renderer, name: &str, pose: Pose| {
        let f = r.render(&pose).unwrap().to_vec();
        if let Err(e) = check(name, &f) {
            failures.push(e);
        }
    };
    frame(&mut r, "neutral", Pose::default());
    frame(&mut r, "jaw-open", Pose { jaw_open: 1.0, ..Pose::default() });
    frame(&mut r, "smile-blink", Pose { smile: 1.0, blink: 1.0, ..Pose::default() });
    // An emotion with the mouth still moving: happy (VRM) and an open "oh".
    frame(&mut r, "happy-talking", Pose { smile: 0.8, jaw_open: 0.7, mouth_spread: -0.5, ..Pose::default() });
    frame(&mut r, "wave-gaze", Pose { arm_raise: 1.0, arm_swing: -1.0, gaze_yaw: 0.2, ..Pose::default() });

    let mut overlay = Overlay::new(W, H).unwrap();
    let card = Card { sku: "K".into(), name: "智能水壶 Smart kettle".into(), price: "¥199".into(), image: None };
    let look = Look {
        subtitle: Some("欢迎来到直播间！Welcome!".into()),
        card: Some(card),
        label: Some("AI-generated".into()),
    };
    r.set_overlay(overlay.show(&look));
    frame(&mut r, "cjk-subtitle-card", Pose::default());
    assert!(failures.is_empty(), "{failures:#?}");
}

//! The default human avatar (built at set-up by `emcee-avatar-build`; missing files fail loudly)
//! loaded from its VRM and its plain glTF, rendered on this machine's Vulkan device (lavapipe
//! on CI): the pose's channels move the right parts of the face, whichever naming the file uses;
//! damaged files are refused, never a panic.

use std::path::PathBuf;

use emcee_protocol::CameraPreset;
use emcee_renderer::camera::project;
use emcee_renderer::model::Model;
use emcee_renderer::{Pose, Renderer};

const W: u32 = 320;
const H: u32 = 180;

fn avatar(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../run/assets/avatar").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}: run scripts/setup.sh", path.display()))
}

/// Mean absolute luma difference in a square of half-size `r` around (cx, cy).
fn diff_around(a: &[u8], b: &[u8], (cx, cy): (f32, f32), r: i32) -> f64 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in (cy as i32 - r).max(0)..(cy as i32 + r).min(H as i32) {
        for x in (cx as i32 - r).max(0)..(cx as i32 + r).min(W as i32) {
            let i = (y as u32 * W + x as u32) as usize;
            sum += u64::from(a[i].abs_diff(b[i]));
            n += 1;
        }
    }
    sum as f64 / n.max(1) as f64
}

fn check(file: &str) {
    let model = Model::from_glb(&avatar(file)).unwrap();
    let mouth = model.target_centroid("jawOpen").unwrap();
    let eye = model.target_centroid("eyeBlinkLeft").unwrap();
    let mut r = Renderer::with_model(W, H, [20, 30, 40], model).unwrap();
    let at = |p: [f32; 3]| project(p, CameraPreset::Medium, r.framing(), W, H);
    let (mouth_px, eye_px) = (at(mouth), at(eye));
    // The face is in the picture, the mouth below the eye.
    assert!(mouth_px.0 > 0.0 && mouth_px.0 < W as f32 && mouth_px.1 < H as f32, "{file}: mouth at {mouth_px:?}");
    assert!(mouth_px.1 > eye_px.1 + 10.0, "{file}: mouth {mouth_px:?} eye {eye_px:?}");
    let forehead = (mouth_px.0, eye_px.1 - (mouth_px.1 - eye_px.1));
    let chest = (mouth_px.0, (mouth_px.1 + 2.5 * (mouth_px.1 - eye_px.1)).min(H as f32 - 4.0));

    let neutral = r.render(&Pose::default()).unwrap().to_vec();
    let jaw = r.render(&Pose { jaw_open: 1.0, ..Pose::default() }).unwrap().to_vec();
    let (jm, f) = (diff_around(&neutral, &jaw, mouth_px, 5), diff_around(&neutral, &jaw, forehead, 5));
    assert!(jm > 8.0 && f < 0.5, "{file}: jaw moves the mouth ({jm:.1}), not the forehead ({f:.1})");

    let blink = r.render(&Pose { blink: 1.0, ..Pose::default() }).unwrap().to_vec();
    let (e, m) = (diff_around(&neutral, &blink, eye_px, 3), diff_around(&neutral, &blink, mouth_px, 5));
    assert!(e > 8.0 && m < 0.5, "{file}: blink closes the eye ({e:.1}), leaves the mouth ({m:.1})");

    // An emotion never silences the mouth: smiling, the jaw still opens.
    let smile = r.render(&Pose { smile: 1.0, ..Pose::default() }).unwrap().to_vec();
    let smile_talk = r.render(&Pose { smile: 1.0, jaw_open: 1.0, ..Pose::default() }).unwrap().to_vec();
    let s = diff_around(&neutral, &smile, mouth_px, 6);
    let talk = diff_around(&smile, &smile_talk, mouth_px, 5);
    assert!(s > 3.0 && talk > 8.0, "{file}: smile {s:.1}, talking while smiling {talk:.1}");

    // The head turns on the neck; the chest stays.
    let turned = r.render(&Pose { head_yaw: 0.35, ..Pose::default() }).unwrap().to_vec();
    let (face, body) = (diff_around(&neutral, &turned, eye_px, 8), diff_around(&neutral, &turned, chest, 4));
    assert!(face > 10.0 && body < 1.0, "{file}: turn moves the face ({face:.1}), not the chest ({body:.1})");
    // A wave brings the right hand up beside the face (the picture's left side); the eyes turn
    // with the gaze and nothing else does.
    let wave = r.render(&Pose { arm_raise: 1.0, arm_swing: -1.0, ..Pose::default() }).unwrap().to_vec();
    let beside = (W as f32 * 0.12, eye_px.1);
    let hand = diff_around(&neutral, &wave, beside, 12);
    let other_side = diff_around(&neutral, &wave, (W as f32 * 0.88, eye_px.1), 12);
    assert!(
        hand > 10.0 && other_side < 0.5,
        "{file}: wave {hand:.1} beside the face, {other_side:.1} on the other side"
    );
    let look = r.render(&Pose { gaze_yaw: 0.3, ..Pose::default() }).unwrap().to_vec();
    let (iris, lips) = (diff_around(&neutral, &look, eye_px, 3), diff_around(&neutral, &look, mouth_px, 5));
    assert!(iris > 5.0 && lips < 0.5, "{file}: gaze moves the eye ({iris:.1}), not the mouth ({lips:.1})");
    eprintln!("{file}: wave {hand:.1}/{other_side:.1}, gaze {iris:.1}/{lips:.1}");
    eprintln!("{file}: mouth {mouth_px:?}, eye {eye_px:?}; jaw {jm:.1}/{f:.1}, blink {e:.1}/{m:.1}, smile {s:.1}, talking {talk:.1}, turn {face:.1}/{body:.1}");
}

#[test]
fn the_vrm_avatar_moves_by_its_expressions() {
    check("host.vrm");
}

#[test]
fn the_plain_gltf_avatar_moves_by_its_arkit_targets() {
    check("host.glb");
}

#[test]
fn damaged_files_are_refused_without_panicking() {
    let good = avatar("host.glb");
    assert!(Model::from_glb(&good[..good.len() / 2]).is_err(), "truncated");
    assert!(Model::from_glb(b"not a model").is_err());
    // Bytes flipped across the JSON and the binary chunk: an error or a model, never a panic.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut refused = 0;
    for round in 0..300 {
        let mut bytes = good.clone();
        for _ in 0..1 + round % 8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Most flips land in the first 40 kB (the JSON), where structure lives.
            let span = if round % 2 == 0 { 40_000.min(bytes.len()) } else { bytes.len() };
            let at = (seed as usize) % span;
            bytes[at] ^= 1 << ((seed >> 40) % 8);
        }
        let outcome = std::panic::catch_unwind(|| Model::from_glb(&bytes).is_err());
        match outcome {
            Ok(err) => refused += usize::from(err),
            Err(_) => panic!("round {round}: the loader panicked"),
        }
    }
    assert!(refused > 0, "some damage must be noticed");
}

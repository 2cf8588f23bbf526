//! glTF node animations on this machine's Vulkan device: a model's idle animation loops with
//! the media clock, and a broken one is refused by name.

use emcee_avatar_build::glb::Builder;
use emcee_protocol::{CameraPreset, MEDIA_CLOCK_HZ};
use emcee_renderer::camera::project;
use emcee_renderer::model::Model;
use emcee_renderer::rig::Framing;
use emcee_renderer::{Pose, Renderer};
use serde_json::{json, Value};

const W: u32 = 320;
const H: u32 = 180;
const ONE_SECOND: [f32; 2] = [0.0, 1.0];

/// A small red quad at the origin, and `animations` (built with the accessors this gets: the
/// key times `times`, translations from x = 0 to x = 1).
fn animated_quad(times: [f32; 2], animations: impl Fn(usize, usize) -> Value) -> Vec<u8> {
    let mut b = Builder::default();
    let positions = b.floats(&[[-0.2f32, -0.2, 0.0], [0.2, -0.2, 0.0], [0.2, 0.2, 0.0], [-0.2, 0.2, 0.0]], true);
    let indices = b.indices(&[0, 1, 2, 0, 2, 3]);
    let times = b.floats(&times.map(|t| [t]), true);
    let moves = b.floats(&[[0.0f32, 0.0, 0.0], [1.0, 0.0, 0.0]], false);
    b.finish(json!({
        "asset": { "version": "2.0" },
        "scene": 0,
        "scenes": [{ "nodes": [0] }],
        "nodes": [{ "mesh": 0 }],
        "meshes": [{ "primitives": [{ "attributes": { "POSITION": positions }, "indices": indices, "material": 0 }] }],
        "materials": [{ "pbrMetallicRoughness": { "baseColorFactor": [0.9, 0.1, 0.1, 1.0] } }],
        "animations": animations(times, moves),
    }))
}

fn slide(name: &str, times: usize, moves: usize) -> Value {
    json!({
        "name": name,
        "channels": [{ "sampler": 0, "target": { "node": 0, "path": "translation" } }],
        "samplers": [{ "input": times, "output": moves, "interpolation": "LINEAR" }],
    })
}

/// Where the red quad's centre is drawn, in pixels along x (the mean of red pixels).
fn red_centre_x(frame: &[u8]) -> f32 {
    let luma = (W * H) as usize;
    let (mut sum, mut n) = (0.0f32, 0.0f32);
    for y in 0..H / 2 {
        for x in 0..W / 2 {
            if frame[luma + luma / 4 + (y * W / 2 + x) as usize] > 170 {
                sum += (2 * x) as f32;
                n += 1.0;
            }
        }
    }
    assert!(n > 0.0, "the red quad is in the picture");
    sum / n
}

fn render_at(renderer: &mut Renderer, media_ts: u64) -> f32 {
    red_centre_x(renderer.render(&Pose { media_ts, ..Pose::default() }).unwrap())
}

#[test]
fn the_idle_animation_loops_with_the_media_clock() {
    let glb = animated_quad(ONE_SECOND, |t, m| json!([slide("wave", t, m), slide("Idle_breathe", t, m)]));
    let model = Model::from_glb(&glb).unwrap();
    assert_eq!(model.idle_animation(), Some(1), "the one named idle plays");
    let mut r = Renderer::with_model(W, H, [0, 0, 0], model).unwrap();
    let pixels_per_unit = {
        let a = project([0.0, 0.0, 0.0], CameraPreset::Medium, Framing::UNIT, W, H).0;
        project([1.0, 0.0, 0.0], CameraPreset::Medium, Framing::UNIT, W, H).0 - a
    };
    let start = render_at(&mut r, 0);
    let half = render_at(&mut r, MEDIA_CLOCK_HZ / 2);
    let moved = (half - start) / pixels_per_unit;
    assert!((moved - 0.5).abs() < 0.05, "half a second in, half way: moved {moved} units");
    // One second is one loop: 1.5 s looks like 0.5 s.
    let again = render_at(&mut r, MEDIA_CLOCK_HZ * 3 / 2);
    assert!((again - half).abs() < 0.5, "looped: {again} vs {half}");
}

#[test]
fn several_animations_and_none_named_idle_play_none() {
    let glb = animated_quad(ONE_SECOND, |t, m| json!([slide("wave", t, m), slide("dance", t, m)]));
    let model = Model::from_glb(&glb).unwrap();
    assert_eq!(model.animations.len(), 2);
    assert_eq!(model.idle_animation(), None);
    let mut r = Renderer::with_model(W, H, [0, 0, 0], model).unwrap();
    assert_eq!(render_at(&mut r, 0), render_at(&mut r, MEDIA_CLOCK_HZ / 2));
}

#[test]
fn broken_animations_are_refused_by_name() {
    let glb = animated_quad([1.0, 0.0], |t, m| json!([slide("Idle", t, m)]));
    let err = Model::from_glb(&glb).unwrap_err().to_string();
    assert!(err.contains("animation `Idle` channel 0") && err.contains("strictly increasing"), "{err}");

    // Morph weights (one a key) animated on a node that has no morph targets.
    let glb = animated_quad(ONE_SECOND, |t, _| {
        json!([{
            "name": "Idle",
            "channels": [{ "sampler": 0, "target": { "node": 0, "path": "weights" } }],
            "samplers": [{ "input": t, "output": t }],
        }])
    });
    let err = Model::from_glb(&glb).unwrap_err().to_string();
    assert!(err.contains("animation `Idle` channel 0") && err.contains("has none"), "{err}");
    // Weights from an accessor of three floats a key: not what the reader can walk.
    let glb = animated_quad(ONE_SECOND, |t, m| {
        json!([{
            "name": "Idle",
            "channels": [{ "sampler": 0, "target": { "node": 0, "path": "weights" } }],
            "samplers": [{ "input": t, "output": m }],
        }])
    });
    let err = Model::from_glb(&glb).unwrap_err().to_string();
    assert!(err.contains("animation 0: accessor 3 does not hold what it is used for"), "{err}");
}

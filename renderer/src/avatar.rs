//! The built-in avatar: a stylised head and shoulders made of ellipsoids, with four morph
//! targets (`jawOpen`, `mouthSpread`, `eyeBlink`, `mouthSmile`, which also take negative
//! weights) and two joints (`chest` for the torso, `head` turning about the top of the neck),
//! as a [`Model`] like any glTF avatar gives.

use crate::math::{translation, IDENTITY};
use crate::model::{Model, Node, Target, Vertex as ModelVertex};

/// Where the head turns: the top of the neck.
pub const NECK_PIVOT: [f32; 3] = [0.0, -0.9, 0.0];

/// Names of the morph targets.
pub const MORPH_TARGETS: [&str; 4] = ["jawOpen", "mouthSpread", "eyeBlink", "mouthSmile"];

type Morphs = [[f32; 3]; 4];

#[derive(Debug, Clone, Copy, Default)]
struct Vertex {
    position: [f32; 3],
    normal: [f32; 3],
    color: [f32; 3],
    morphs: Morphs,
    /// Moves with the head (else with the chest).
    head: bool,
}

/// Where the mouth sits in model space (centre), for tests and for the camera framing.
pub const MOUTH_CENTER: [f32; 3] = [0.0, -0.42, 0.78];
const EYE_Y: f32 = 0.22;
const EYE_X: f32 = 0.3;

const SKIN: [f32; 3] = [0.87, 0.64, 0.52];
const HAIR: [f32; 3] = [0.18, 0.11, 0.07];
const LIP: [f32; 3] = [0.72, 0.32, 0.33];
const MOUTH_INSIDE: [f32; 3] = [0.16, 0.03, 0.04];
const SHIRT: [f32; 3] = [0.16, 0.33, 0.55];
const EYE_WHITE: [f32; 3] = [0.95, 0.95, 0.93];
const IRIS: [f32; 3] = [0.12, 0.22, 0.3];

struct Builder {
    vertices: Vec<Vertex>,
    indices: Vec<u32>,
}

struct Ellipsoid {
    center: [f32; 3],
    radii: [f32; 3],
    color: [f32; 3],
    head: bool,
    /// Keep only vertices whose unit-sphere direction satisfies this (e.g. a hair cap).
    keep: fn([f32; 3]) -> bool,
}

fn always(_: [f32; 3]) -> bool {
    true
}

impl Builder {
    fn ellipsoid(&mut self, e: Ellipsoid, morph: impl Fn([f32; 3]) -> Morphs) {
        const RINGS: u32 = 28;
        const SEGMENTS: u32 = 40;
        let base = self.vertices.len() as u32;
        let mut kept = Vec::new();
        for ring in 0..=RINGS {
            let theta = std::f32::consts::PI * ring as f32 / RINGS as f32;
            for seg in 0..=SEGMENTS {
                let phi = std::f32::consts::TAU * seg as f32 / SEGMENTS as f32;
                // Unit direction, +z towards the camera.
                let d = [theta.sin() * phi.sin(), theta.cos(), theta.sin() * phi.cos()];
                let position =
                    [e.center[0] + e.radii[0] * d[0], e.center[1] + e.radii[1] * d[1], e.center[2] + e.radii[2] * d[2]];
                let n = [d[0] / e.radii[0], d[1] / e.radii[1], d[2] / e.radii[2]];
                let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt().max(1e-6);
                kept.push((e.keep)(d));
                self.vertices.push(Vertex {
                    position,
                    normal: [n[0] / len, n[1] / len, n[2] / len],
                    color: e.color,
                    morphs: morph(position),
                    head: e.head,
                });
            }
        }
        let row = SEGMENTS + 1;
        for ring in 0..RINGS {
            for seg in 0..SEGMENTS {
                let a = ring * row + seg;
                let (b, c, d) = (a + row, a + 1, a + row + 1);
                if [a, b, c, d].iter().all(|&i| kept[i as usize]) {
                    self.indices.extend([base + a, base + b, base + c, base + c, base + b, base + d]);
                }
            }
        }
    }
}

/// Jaw: everything on the face below the mouth line moves down, fading out towards the neck
/// and the sides, so the chin drops with the jaw.
fn jaw_delta(p: [f32; 3]) -> [f32; 3] {
    let below = MOUTH_CENTER[1] - p[1];
    if below < -0.02 || p[2] < 0.0 {
        return [0.0; 3];
    }
    let side = (1.0 - (p[0].abs() / 0.75)).clamp(0.0, 1.0);
    let depth = (p[2] / 0.8).clamp(0.0, 1.0);
    [0.0, -0.16 * side * depth, 0.0]
}

fn no_morph(_: [f32; 3]) -> Morphs {
    [[0.0; 3]; 4]
}

/// Smile: the mouth corners rise and pull back a little, the middle stays; a negative weight
/// turns the corners down.
fn smile_delta(p: [f32; 3]) -> [f32; 3] {
    let side = ((p[0] - MOUTH_CENTER[0]) / 0.19).clamp(-1.0, 1.0);
    [side * 0.03, 0.07 * side * side, -0.02 * side * side]
}

/// Builds the default avatar.
pub fn default_avatar() -> Model {
    let mut b = Builder { vertices: Vec::new(), indices: Vec::new() };
    let [mx, my, mz] = MOUTH_CENTER;

    // Torso and neck (do not follow the head).
    b.ellipsoid(
        Ellipsoid { center: [0.0, -2.15, -0.1], radii: [1.45, 0.95, 0.6], color: SHIRT, head: false, keep: always },
        no_morph,
    );
    b.ellipsoid(
        Ellipsoid { center: [0.0, -1.1, -0.05], radii: [0.32, 0.45, 0.3], color: SKIN, head: false, keep: always },
        no_morph,
    );
    // Head: the jaw region deforms with `jawOpen`.
    b.ellipsoid(
        Ellipsoid { center: [0.0, 0.0, 0.0], radii: [0.78, 1.0, 0.82], color: SKIN, head: true, keep: always },
        |p| [jaw_delta(p), [0.0; 3], [0.0; 3], [0.0; 3]],
    );
    // Hair: a cap over the top and back of the head.
    b.ellipsoid(
        Ellipsoid {
            center: [0.0, 0.06, -0.04],
            radii: [0.82, 1.02, 0.86],
            color: HAIR,
            head: true,
            // Higher at the front so the brows show; down to the nape at the back.
            keep: |d| d[1] > 0.5 || (d[1] > 0.25 && d[2] < 0.55) || (d[2] < -0.2 && d[1] > -0.5),
        },
        no_morph,
    );
    // Mouth interior: hidden behind the lips when closed, revealed as the lower lip drops.
    b.ellipsoid(
        Ellipsoid {
            center: [mx, my, mz - 0.03],
            radii: [0.16, 0.05, 0.03],
            color: MOUTH_INSIDE,
            head: true,
            keep: always,
        },
        |p| {
            let lower = if p[1] < my { [0.0, -0.17, 0.0] } else { [0.0, 0.02, 0.0] };
            [lower, [(p[0] - mx) * 0.45, 0.0, 0.0], [0.0; 3], smile_delta(p)]
        },
    );
    // Lips: the upper lip rises a little, the lower one follows the jaw; both spread with `wide`.
    for (dy, jaw) in [(0.035f32, 0.025f32), (-0.04, -0.17)] {
        b.ellipsoid(
            Ellipsoid { center: [mx, my + dy, mz], radii: [0.19, 0.035, 0.045], color: LIP, head: true, keep: always },
            move |p| [[0.0, jaw, 0.0], [(p[0] - mx) * 0.45, 0.0, 0.0], [0.0; 3], smile_delta(p)],
        );
    }
    // Eyes: whites and irises; `eyeBlink` squashes them onto their centre line.
    for side in [-1.0f32, 1.0] {
        let (ex, ey) = (side * EYE_X, EYE_Y);
        let squash = move |p: [f32; 3]| [[0.0; 3], [0.0; 3], [0.0, (ey - p[1]) * 0.92, 0.0], [0.0; 3]];
        b.ellipsoid(
            Ellipsoid { center: [ex, ey, 0.66], radii: [0.13, 0.09, 0.08], color: EYE_WHITE, head: true, keep: always },
            squash,
        );
        b.ellipsoid(
            Ellipsoid { center: [ex, ey, 0.72], radii: [0.06, 0.06, 0.04], color: IRIS, head: true, keep: always },
            squash,
        );
        // Brow.
        b.ellipsoid(
            Ellipsoid {
                center: [ex, ey + 0.17, 0.7],
                radii: [0.15, 0.025, 0.05],
                color: HAIR,
                head: true,
                keep: always,
            },
            no_morph,
        );
    }
    // Nose.
    b.ellipsoid(
        Ellipsoid { center: [0.0, -0.08, 0.8], radii: [0.08, 0.14, 0.1], color: SKIN, head: true, keep: always },
        no_morph,
    );

    let vertices = b
        .vertices
        .iter()
        .map(|v| ModelVertex {
            position: v.position,
            normal: v.normal,
            color: v.color,
            joints: [u32::from(v.head), 0, 0, 0],
            weights: [1.0, 0.0, 0.0, 0.0],
            ..ModelVertex::default()
        })
        .collect();
    let targets = MORPH_TARGETS
        .iter()
        .enumerate()
        .map(|(t, name)| Target {
            name: (*name).into(),
            first_vertex: 0,
            deltas: b.vertices.iter().map(|v| v.morphs[t]).collect(),
        })
        .collect();
    let node = |name: &str, translation| Node {
        name: Some(name.into()),
        parent: None,
        translation,
        rotation: [0.0, 0.0, 0.0, 1.0],
        scale: [1.0; 3],
    };
    Model {
        vertices,
        indices: b.indices,
        nodes: vec![node("chest", [0.0; 3]), node("head", NECK_PIVOT)],
        palette: vec![(0, IDENTITY), (1, translation(NECK_PIVOT.map(|c| -c)))],
        targets,
        ..Model::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_well_formed() {
        let model = default_avatar();
        assert_eq!(model.indices.len() % 3, 0);
        let n = model.vertices.len() as u32;
        assert!(model.indices.iter().all(|&i| i < n));
        assert!(model.vertices.iter().all(|v| v.position.iter().chain(&v.normal).all(|f| f.is_finite())));
        assert!(model.targets.iter().all(|t| t.deltas.len() == n as usize));
        assert!(model.vertices.iter().all(|v| (v.joints[0] as usize) < model.palette.len()));
    }

    #[test]
    fn head_rotation_keeps_the_neck_pivot_fixed_and_breathing_leaves_the_head() {
        use crate::rig::Rig;
        use crate::Pose;
        let model = default_avatar();
        let rig = Rig::new(&model);
        let pose = Pose { head_yaw: 0.3, head_pitch: -0.2, head_roll: 0.1, breath: 1.0, ..Pose::default() };
        let palette = rig.palette(&model, &pose, &Default::default());
        let head = palette[1];
        let p = NECK_PIVOT;
        for r in 0..3 {
            let v = head[r] * p[0] + head[4 + r] * p[1] + head[8 + r] * p[2] + head[12 + r];
            assert!((v - p[r]).abs() < 1e-5, "{r}: {v}");
        }
        assert!(palette[0][13] > 0.01, "the chest rises");
        assert!((palette[0][0] - 1.01).abs() < 1e-5, "and widens");
    }

    #[test]
    fn jaw_target_moves_the_chin_but_not_the_forehead() {
        assert!(jaw_delta([0.0, -0.7, 0.6])[1] < -0.05);
        assert_eq!(jaw_delta([0.0, 0.5, 0.7]), [0.0; 3]);
        assert_eq!(jaw_delta([0.0, -0.7, -0.5]), [0.0; 3]);
    }
}

//! How a [`Pose`] moves a [`Model`]: which morph targets carry the mouth, blinks and
//! expressions (VRM expressions where the model has them, else ARKit names, else the built-in
//! avatar's), which joints turn the head and lift the chest, and where the camera frames the
//! face. Worked out once per model; per frame it samples the model's idle animation (if it has
//! one) at the pose's media time and yields the active morph weights and the skinning palette,
//! the live layers on top of the animated pose.

use emcee_protocol::MEDIA_CLOCK_HZ;

use crate::animation::Sample;
use crate::math::{compose, mul, quat_conj, quat_from_euler, quat_mul, transform_point, Mat4};
use crate::model::{Model, Node, Overrides};
use crate::Pose;

/// At most this many morph targets are blended per frame (the strongest win).
pub const MAX_ACTIVE_MORPHS: usize = 32;

/// The least share of its movement the mouth keeps under an emotion whose VRM rules block or
/// blend it away: lip sync is what viewers judge first, and a smiling host still talks.
pub const MOUTH_FLOOR: f32 = 0.6;

type Binds = Vec<(usize, f32)>;

/// A pose channel's targets for its positive and its negative side.
#[derive(Debug, Clone, Default, PartialEq)]
struct Channel {
    positive: Binds,
    negative: Binds,
}

/// Where the camera looks: the middle of the face and the head's size (half its height).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Framing {
    pub center: [f32; 3],
    pub scale: f32,
}

impl Framing {
    /// The built-in avatar's head: centred on the origin, about two units tall.
    pub const UNIT: Framing = Framing { center: [0.0, 0.0, 0.0], scale: 1.0 };
}

#[derive(Debug, Clone)]
pub struct Rig {
    jaw: Channel,
    spread: Channel,
    blink: Channel,
    smile: Channel,
    /// The VRM override rules of the emotions on the smile channel's positive (`happy`) and
    /// negative (`sad`) side.
    smile_overrides: (Overrides, Overrides),
    /// Joints that turn the head, with their share of the turn.
    head: Vec<(usize, f32)>,
    /// Eye joints (left, right), turned by the gaze.
    eyes: Vec<usize>,
    /// The right arm: upper arm, lower arm, hand.
    arm: Option<[usize; 3]>,
    /// Each node's parent's rotation at rest (model space), so turns are given in model axes
    /// whatever a file's rest rotations are.
    parent_rest: Vec<[f32; 4]>,
    /// The chest joint and how far it rises per unit of breath (model units).
    chest: Option<(usize, f32)>,
    /// The chest widens as it fills (only where it moves nothing but the torso).
    chest_widens: bool,
    /// The model's idle animation and its loop length in media-clock samples.
    idle: Option<(usize, u64)>,
    pub framing: Framing,
}

/// The first of `options` the model has: a VRM expression, or (ARKit / built-in) target names
/// with their weights.
fn binds(model: &Model, expression: &str, targets: &[&[(&str, f32)]]) -> Binds {
    if let Some(b) = model.expressions.get(expression).filter(|b| !b.is_empty()) {
        return b.clone();
    }
    for names in targets {
        let found: Binds = names.iter().filter_map(|(n, w)| model.target(n).map(|t| (t, *w))).collect();
        if found.len() == names.len() {
            return found;
        }
    }
    Vec::new()
}

/// Every node's matrix in model space, from each node's local matrix (parents come first).
fn globals(model: &Model, mut local: impl FnMut(usize, &Node) -> Mat4) -> Vec<Mat4> {
    let mut globals: Vec<Mat4> = Vec::with_capacity(model.nodes.len());
    for (i, n) in model.nodes.iter().enumerate() {
        let local = local(i, n);
        globals.push(n.parent.map_or(local, |p| mul(&globals[p], &local)));
    }
    globals
}

/// Every node's matrix in model space at rest.
fn rest_globals(model: &Model) -> Vec<Mat4> {
    globals(model, |_, n| compose(n.translation, n.rotation, n.scale))
}

impl Rig {
    pub fn new(model: &Model) -> Self {
        let pair = |l: &'static str, r: &'static str, w: f32| -> Vec<(&'static str, f32)> { vec![(l, w), (r, w)] };
        let jaw = Channel { positive: binds(model, "aa", &[&[("jawOpen", 1.0)]]), negative: Vec::new() };
        let spread = Channel {
            positive: binds(
                model,
                "ih",
                &[&pair("mouthStretchLeft", "mouthStretchRight", 0.6), &[("mouthSpread", 1.0)]],
            ),
            negative: binds(model, "ou", &[&[("mouthPucker", 1.0)], &[("mouthSpread", -1.0)]]),
        };
        let blink = Channel {
            positive: binds(model, "blink", &[&pair("eyeBlinkLeft", "eyeBlinkRight", 1.0), &[("eyeBlink", 1.0)]]),
            negative: Vec::new(),
        };
        let smile = Channel {
            positive: binds(model, "happy", &[&pair("mouthSmileLeft", "mouthSmileRight", 0.8), &[("mouthSmile", 1.0)]]),
            negative: binds(model, "sad", &[&pair("mouthFrownLeft", "mouthFrownRight", 0.8), &[("mouthSmile", -1.0)]]),
        };
        let bone = |vrm: &str, names: &[&str]| {
            model.humanoid.get(vrm).copied().or_else(|| names.iter().find_map(|n| model.node(n)))
        };
        let head_joint = bone("head", &["head", "Head", "J_Bip_C_Head"]);
        let neck_joint = bone("neck", &["neck", "Neck", "neck01", "J_Bip_C_Neck"]);
        let head = match (neck_joint, head_joint) {
            (Some(n), Some(h)) => vec![(n, 0.35), (h, 0.65)],
            (None, Some(h)) => vec![(h, 1.0)],
            _ => Vec::new(),
        };
        let eyes: Vec<usize> =
            [("leftEye", "eye.L"), ("rightEye", "eye.R")].iter().filter_map(|(vrm, name)| bone(vrm, &[name])).collect();
        let arm = match (
            bone("rightUpperArm", &["upperarm01.R", "RightArm"]),
            bone("rightLowerArm", &["lowerarm01.R", "RightForeArm"]),
            bone("rightHand", &["wrist.R", "RightHand"]),
        ) {
            (Some(u), Some(l), Some(h)) => Some([u, l, h]),
            _ => None,
        };
        let mut rest_rotation: Vec<[f32; 4]> = Vec::with_capacity(model.nodes.len());
        for n in &model.nodes {
            let parent = n.parent.map_or([0.0, 0.0, 0.0, 1.0], |p| rest_rotation[p]);
            rest_rotation.push(quat_mul(parent, n.rotation));
        }
        let parent_rest =
            model.nodes.iter().map(|n| n.parent.map_or([0.0, 0.0, 0.0, 1.0], |p| rest_rotation[p])).collect();
        let globals = rest_globals(model);
        let framing = head_joint.map_or(Framing::UNIT, |h| framing_of(model, &globals, h));
        let chest_joint =
            bone("chest", &["chest", "Chest", "spine02"]).or_else(|| model.humanoid.get("spine").copied());
        // A chest that carries nothing else widens as it fills; one that carries arms and a
        // head only rises (widening it would widen the shoulders and the face).
        let chest_widens = chest_joint.is_some_and(|c| model.nodes.iter().all(|n| n.parent != Some(c)));
        let chest = chest_joint.map(|c| (c, 0.015 * framing.scale));
        let idle = model.idle_animation().map(|i| {
            let samples = (f64::from(model.animations[i].duration_s) * MEDIA_CLOCK_HZ as f64).round() as u64;
            (i, samples.max(1))
        });
        let rules = |name: &str| model.overrides.get(name).copied().unwrap_or_default();
        let smile_overrides = (rules("happy"), rules("sad"));
        Rig {
            jaw,
            spread,
            blink,
            smile,
            smile_overrides,
            head,
            eyes,
            arm,
            parent_rest,
            chest,
            chest_widens,
            idle,
            framing,
        }
    }

    /// The idle animation's name, when one plays.
    pub fn idle_animation<'m>(&self, model: &'m Model) -> Option<&'m str> {
        self.idle.map(|(i, _)| model.animations[i].name.as_str())
    }

    /// What the idle animation sets at the pose's media time (nothing when there is none).
    pub fn animated(&self, model: &Model, pose: &Pose) -> Sample {
        let Some((i, loop_len)) = self.idle else { return Sample::default() };
        let t = (pose.media_ts % loop_len) as f64 / MEDIA_CLOCK_HZ as f64;
        model.animations[i].sample(t as f32)
    }

    /// The morph targets to blend for `pose`: (target, weight), strongest first, at most
    /// [`MAX_ACTIVE_MORPHS`], merged where channels share a target.
    /// `animated`: the idle animation's values ([`Rig::animated`]), under the pose's.
    pub fn morphs(&self, pose: &Pose, animated: &Sample) -> Vec<(usize, f32)> {
        let mut weights: Vec<(usize, f32)> = animated.weights.clone();
        let mut add = |channel: &Channel, value: f32| {
            let (binds, amount) = if value >= 0.0 { (&channel.positive, value) } else { (&channel.negative, -value) };
            for &(t, w) in binds {
                match weights.iter_mut().find(|x| x.0 == t) {
                    Some(x) => x.1 += w * amount,
                    None => weights.push((t, w * amount)),
                }
            }
        };
        let (rules, emotion) = self.emotion(pose);
        let mouth = rules.mouth.factor(emotion).max(MOUTH_FLOOR);
        add(&self.jaw, pose.jaw_open * mouth);
        add(&self.spread, pose.mouth_spread * mouth);
        add(&self.blink, pose.blink * rules.blink.factor(emotion));
        add(&self.smile, pose.smile);
        weights.retain(|x| x.1.abs() > 1e-4);
        weights.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        weights.truncate(MAX_ACTIVE_MORPHS);
        weights
    }

    /// The override rules of the emotion the pose shows, and its weight.
    fn emotion(&self, pose: &Pose) -> (Overrides, f32) {
        if pose.smile >= 0.0 {
            (self.smile_overrides.0, pose.smile)
        } else {
            (self.smile_overrides.1, -pose.smile)
        }
    }

    /// How joint `i` turns for `pose` (model axes), if it is one the pose moves.
    fn turn(&self, i: usize, pose: &Pose) -> Option<[f32; 4]> {
        if let Some(&(_, share)) = self.head.iter().find(|(j, _)| *j == i) {
            return Some(quat_from_euler(pose.head_yaw * share, pose.head_pitch * share, pose.head_roll * share));
        }
        if self.eyes.contains(&i) {
            let (rules, emotion) = self.emotion(pose);
            let look = rules.look_at.factor(emotion);
            return Some(quat_from_euler(pose.gaze_yaw * look, pose.gaze_pitch * look, 0.0));
        }
        let [upper, lower, hand] = self.arm?;
        let raise = pose.arm_raise.clamp(0.0, 1.0);
        if raise <= 0.0 {
            return None;
        }
        // The right arm hangs at the avatar's right (−x). A wave: the upper arm comes in and a
        // little forward, the forearm folds up (clockwise, seen from the front) so the hand is
        // beside the shoulder, and the forearm and hand swing.
        let swing = pose.arm_swing * raise;
        if i == upper {
            Some(quat_from_euler(0.0, -0.9 * raise, 0.75 * raise))
        } else if i == lower {
            Some(quat_from_euler(0.0, 0.0, -2.7 * raise + 0.1 * swing))
        } else if i == hand {
            Some(quat_from_euler(0.0, 0.0, 0.18 * swing))
        } else {
            None
        }
    }

    /// The skinning palette for `pose` over the animated pose: each entry's node matrix times
    /// its inverse bind matrix.
    pub fn palette(&self, model: &Model, pose: &Pose, animated: &Sample) -> Vec<Mat4> {
        let globals = globals(model, |i, n| {
            let mut translation = animated.translation.get(&i).copied().unwrap_or(n.translation);
            let mut rotation = animated.rotation.get(&i).copied().unwrap_or(n.rotation);
            let mut scale = animated.scale.get(&i).copied().unwrap_or(n.scale);
            if let Some(turn) = self.turn(i, pose) {
                // The turn is about model axes: carried into this joint's frame by its parent's
                // rest rotation.
                let p = self.parent_rest[i];
                rotation = quat_mul(quat_mul(quat_mul(quat_conj(p), turn), p), rotation);
            }
            if let Some((_, lift)) = self.chest.filter(|(c, _)| *c == i) {
                translation[1] += lift * pose.breath;
                if self.chest_widens {
                    scale[0] *= 1.0 + 0.01 * pose.breath;
                }
            }
            compose(translation, rotation, scale)
        });
        model.palette.iter().map(|(node, ibm)| mul(&globals[*node], ibm)).collect()
    }
}

/// The face's middle and half-height from the vertices that follow the head joint most.
fn framing_of(model: &Model, globals: &[Mat4], head: usize) -> Framing {
    let follows_head = |node: usize| {
        let mut n = Some(node);
        while let Some(i) = n {
            if i == head {
                return true;
            }
            n = model.nodes[i].parent;
        }
        false
    };
    let head_palette: Vec<bool> = model.palette.iter().map(|(node, _)| follows_head(*node)).collect();
    let (mut lo, mut hi) = ([f32::MAX; 3], [f32::MIN; 3]);
    for v in &model.vertices {
        let strongest = (0..4).max_by(|&a, &b| v.weights[a].total_cmp(&v.weights[b])).unwrap_or(0);
        if !head_palette.get(v.joints[strongest] as usize).copied().unwrap_or(false) {
            continue;
        }
        // Skinned positions at rest: palette matrix (global · inverse bind) applied.
        let (node, ibm) = &model.palette[v.joints[strongest] as usize];
        let p = transform_point(&mul(&globals[*node], ibm), v.position);
        for k in 0..3 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    if lo[0] > hi[0] {
        let p = transform_point(&globals[head], [0.0; 3]);
        return Framing { center: p, scale: 0.12 };
    }
    let height = hi[1] - lo[1];
    Framing { center: [0, 1, 2].map(|k| (lo[k] + hi[k]) / 2.0), scale: (height / 2.0).max(1e-3) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Override, Target};

    /// A model with VRM expressions `aa`, `blink` and `happy` on targets 0, 1, 2, `happy` with
    /// the mouth and blink rules given.
    fn vrm(mouth: Override, blink: Override) -> Model {
        let mut model = Model::default();
        for (t, name) in ["aa", "blink", "happy"].iter().enumerate() {
            model.targets.push(Target { name: format!("t{t}"), first_vertex: 0, deltas: Vec::new() });
            model.expressions.insert(name.to_string(), vec![(t, 1.0)]);
        }
        model.overrides.insert("happy".into(), Overrides { mouth, blink, look_at: Override::None });
        model
    }

    fn weight(morphs: &[(usize, f32)], target: usize) -> f32 {
        morphs.iter().find(|m| m.0 == target).map_or(0.0, |m| m.1)
    }

    #[test]
    fn emotions_follow_the_vrm_rules_but_never_silence_the_mouth() {
        let talking_happy_blinking = Pose { jaw_open: 1.0, smile: 1.0, blink: 1.0, ..Pose::default() };
        let none = Sample::default();

        let free = vrm(Override::None, Override::None);
        let m = Rig::new(&free).morphs(&talking_happy_blinking, &none);
        assert_eq!((weight(&m, 0), weight(&m, 1), weight(&m, 2)), (1.0, 1.0, 1.0));

        let blocking = vrm(Override::Block, Override::Block);
        let m = Rig::new(&blocking).morphs(&talking_happy_blinking, &none);
        assert_eq!(weight(&m, 0), MOUTH_FLOOR, "the mouth keeps moving under a blocking emotion");
        assert_eq!(weight(&m, 1), 0.0, "the blink is blocked as the file says");
        assert_eq!(weight(&m, 2), 1.0);

        let blending = vrm(Override::Blend, Override::Blend);
        let half_happy = Pose { smile: 0.25, ..talking_happy_blinking };
        let m = Rig::new(&blending).morphs(&half_happy, &none);
        assert_eq!((weight(&m, 0), weight(&m, 1)), (0.75, 0.75), "blended by 1 − 0.25");
    }
}

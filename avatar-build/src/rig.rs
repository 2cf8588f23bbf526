//! The skeleton and its skin weights, from MPFB's rig files.
//!
//! A rig file names each bone's parent and says where its head sits *on the mesh*: the mean of
//! a helper cube group (`CUBE`), the mean of listed vertices (`MEAN`), or one vertex
//! (`VERTEX`). So the joints follow the mesh they are computed from. A weights file lists, per
//! bone, `[vertex, weight]` pairs; glTF takes four influences per vertex, so each vertex keeps
//! its four strongest, renormalised.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::obj::Obj;
use crate::BuildError;

#[derive(Debug, Clone, PartialEq)]
pub struct Bone {
    pub name: String,
    /// Index into the bone list; parents always come before their children.
    pub parent: Option<usize>,
    /// Where the joint sits, in the mesh's coordinates.
    pub head: [f32; 3],
}

/// Up to four (bone, weight) influences of one vertex; weights sum to 1 (or all 0: unskinned).
pub type Influences = [(u16, f32); 4];

fn mean(obj: &Obj, vertices: impl IntoIterator<Item = u32>) -> Option<[f32; 3]> {
    let mut sum = [0.0f64; 3];
    let mut n = 0usize;
    for v in vertices {
        let p = obj.positions.get(v as usize)?;
        for k in 0..3 {
            sum[k] += f64::from(p[k]);
        }
        n += 1;
    }
    (n > 0).then(|| sum.map(|s| (s / n as f64) as f32))
}

fn head_of(name: &str, spec: &Value, obj: &Obj) -> Result<[f32; 3], BuildError> {
    let bad = |m: String| BuildError::Invalid(format!("bone `{name}`: {m}"));
    let strategy = spec["strategy"].as_str().ok_or_else(|| bad("head has no strategy".into()))?;
    let index_list = |key: &str| -> Result<Vec<u32>, BuildError> {
        let list = spec[key].as_array().ok_or_else(|| bad(format!("head has no {key}")))?;
        list.iter()
            .map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok()).ok_or_else(|| bad(format!("bad {key} entry {v}"))))
            .collect()
    };
    let found = match strategy {
        "CUBE" => {
            let cube = spec["cube_name"].as_str().ok_or_else(|| bad("CUBE head has no cube_name".into()))?;
            let group = obj.group(cube).ok_or_else(|| bad(format!("the mesh has no group `{cube}`")))?;
            mean(obj, obj.group_vertices(group))
        }
        "MEAN" => mean(obj, index_list("vertex_indices")?),
        "VERTEX" => {
            let v = spec["vertex_index"].as_u64().and_then(|v| u32::try_from(v).ok());
            mean(obj, [v.ok_or_else(|| bad("VERTEX head has no vertex_index".into()))?])
        }
        other => return Err(bad(format!("unknown head strategy `{other}`"))),
    };
    found.ok_or_else(|| bad("its head refers to vertices the mesh does not have".into()))
}

/// Reads a rig (`rig.*.json`) against the mesh its joints sit on.
pub fn parse_rig(text: &str, obj: &Obj, path: &Path) -> Result<Vec<Bone>, BuildError> {
    let json: Value = serde_json::from_str(text).map_err(|e| BuildError::parse(path, e.line(), e.to_string()))?;
    let bones = json.as_object().ok_or_else(|| BuildError::parse(path, 1, "a rig is an object of bones"))?;
    // Parents first: repeatedly take the bones whose parent is placed.
    let mut order: Vec<Bone> = Vec::with_capacity(bones.len());
    let mut placed: HashMap<&str, usize> = HashMap::new();
    while order.len() < bones.len() {
        let before = order.len();
        for (name, spec) in bones {
            if placed.contains_key(name.as_str()) {
                continue;
            }
            let parent_name = spec["parent"].as_str().unwrap_or("");
            let parent = if parent_name.is_empty() {
                None
            } else if let Some(&p) = placed.get(parent_name) {
                Some(p)
            } else {
                continue;
            };
            let head = head_of(name, &spec["head"], obj)?;
            placed.insert(name, order.len());
            order.push(Bone { name: name.clone(), parent, head });
        }
        if order.len() == before {
            let stuck: Vec<&str> = bones.keys().map(String::as_str).filter(|n| !placed.contains_key(n)).collect();
            return Err(BuildError::Invalid(format!(
                "{}: bones whose parent is missing or circular: {}",
                path.display(),
                stuck.join(", ")
            )));
        }
    }
    Ok(order)
}

/// Reads skin weights (`weights.*.json`) for `bones`: four influences per mesh vertex.
pub fn parse_weights(
    text: &str,
    bones: &[Bone],
    vertex_count: usize,
    path: &Path,
) -> Result<Vec<Influences>, BuildError> {
    let json: Value = serde_json::from_str(text).map_err(|e| BuildError::parse(path, e.line(), e.to_string()))?;
    let table = json["weights"].as_object().ok_or_else(|| BuildError::parse(path, 1, "no `weights` object"))?;
    let index: HashMap<&str, u16> =
        bones.iter().enumerate().map(|(i, b)| (b.name.as_str(), u16::try_from(i).unwrap_or(u16::MAX))).collect();
    let mut all: Vec<Vec<(u16, f32)>> = vec![Vec::new(); vertex_count];
    for (bone, pairs) in table {
        let Some(&b) = index.get(bone.as_str()) else {
            return Err(BuildError::Invalid(format!("{}: weights for `{bone}`, which the rig lacks", path.display())));
        };
        for pair in pairs.as_array().into_iter().flatten() {
            let (Some(v), Some(w)) = (pair[0].as_u64(), pair[1].as_f64()) else {
                return Err(BuildError::Invalid(format!("{}: `{bone}`: bad pair {pair}", path.display())));
            };
            let slot = all.get_mut(v as usize).ok_or_else(|| {
                BuildError::Invalid(format!("{}: `{bone}`: vertex {v} is not in the mesh", path.display()))
            })?;
            if w > 0.0 && w.is_finite() {
                slot.push((b, w as f32));
            }
        }
    }
    Ok(all
        .into_iter()
        .map(|mut list| {
            list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            list.truncate(4);
            let total: f32 = list.iter().map(|x| x.1).sum();
            let mut out = [(0u16, 0.0f32); 4];
            for (slot, (b, w)) in out.iter_mut().zip(list) {
                *slot = (b, if total > 0.0 { w / total } else { 0.0 });
            }
            out
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh() -> Obj {
        let text = "v 0 0 0\nv 2 0 0\nv 0 4 0\nv 0 6 0\ng body\nf 1 2 3\ng joint-neck\nf 2 3 4\n";
        Obj::parse(text, Path::new("m.obj")).unwrap()
    }

    #[test]
    fn joints_sit_where_the_rig_says_parents_first() {
        let rig = r#"{
          "neck": {"parent": "root", "head": {"strategy": "CUBE", "cube_name": "joint-neck"}},
          "root": {"parent": "", "head": {"strategy": "VERTEX", "vertex_index": 0}},
          "jaw": {"parent": "neck", "head": {"strategy": "MEAN", "vertex_indices": [2, 3]}}
        }"#;
        let bones = parse_rig(rig, &mesh(), Path::new("rig.json")).unwrap();
        let names: Vec<&str> = bones.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["root", "neck", "jaw"]);
        assert_eq!((bones[1].parent, bones[1].head), (Some(0), [2.0 / 3.0, 10.0 / 3.0, 0.0]));
        assert_eq!(bones[2].head, [0.0, 5.0, 0.0]);
        let orphan = r#"{"a": {"parent": "b", "head": {"strategy": "VERTEX", "vertex_index": 0}}}"#;
        assert!(parse_rig(orphan, &mesh(), Path::new("r.json")).unwrap_err().to_string().contains("circular: a"));
    }

    #[test]
    fn four_strongest_influences_renormalised() {
        let bones: Vec<Bone> = (0..5).map(|i| Bone { name: format!("b{i}"), parent: None, head: [0.0; 3] }).collect();
        let weights = r#"{"weights": {"b0": [[0, 0.1]], "b1": [[0, 0.2]], "b2": [[0, 0.3]], "b3": [[0, 0.2]], "b4": [[0, 0.2], [1, 0.5]]}}"#;
        let w = parse_weights(weights, &bones, 3, Path::new("w.json")).unwrap();
        assert_eq!(w[0][0].0, 2);
        assert!((w[0].iter().map(|x| x.1).sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(!w[0].iter().any(|x| x.0 == 0 && x.1 > 0.0), "the weakest is dropped: {:?}", w[0]);
        assert_eq!(w[1][0], (4, 1.0));
        assert_eq!(w[2], [(0, 0.0); 4]);
        let stranger = r#"{"weights": {"tail": [[0, 1.0]]}}"#;
        assert!(parse_weights(stranger, &bones, 3, Path::new("w.json")).is_err());
    }
}

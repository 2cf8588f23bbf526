//! What the renderer draws: one vertex list (position, normal, colour, four joint influences),
//! triangles, a node hierarchy with rest transforms, a *palette* of (node, inverse bind matrix)
//! that vertices are skinned to, morph targets as position deltas over a vertex range, and —
//! for VRM 1.0 — the humanoid bones and expressions. Built from a glTF 2.0 / VRM 1.0 binary
//! ([`Model::from_glb`]) or from the built-in avatar, with the file's node animations.
//!
//! Loading checks everything it reads and reports what is wrong or unsupported by name; it
//! never panics on a bad file.

use std::collections::HashMap;

use gltf::mesh::Mode;

use crate::math::{Mat4, IDENTITY};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("not a valid glTF binary: {0}")]
    Parse(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("invalid: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Vertex {
    pub position: [f32; 3],
    pub normal: [f32; 3],
    /// Linear RGB (material base colour × vertex colour).
    pub color: [f32; 3],
    /// Palette indices and their weights (summing to 1).
    pub joints: [u32; 4],
    pub weights: [f32; 4],
    /// Texture coordinates into `texture`.
    pub uv: [f32; 2],
    /// Index into [`Model::textures`] of the base colour texture; `None`: colour only.
    pub texture: Option<u32>,
    /// Fragments whose texture alpha is below this are not drawn (0: opaque).
    pub alpha_cutoff: f32,
}

/// A decoded base colour texture (sRGB RGBA8, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Texture {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

/// A node of the hierarchy at rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: Option<String>,
    pub parent: Option<usize>,
    pub translation: [f32; 3],
    /// Quaternion x, y, z, w.
    pub rotation: [f32; 4],
    pub scale: [f32; 3],
}

/// How an active VRM expression treats another group of expressions (VRM 1.0 `overrideMouth`,
/// `overrideBlink`, `overrideLookAt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Override {
    #[default]
    None,
    /// The group is off while this expression is on at all.
    Block,
    /// The group is scaled by one minus this expression's weight.
    Blend,
}

impl Override {
    /// The factor on the overridden group while the overriding expression is at `weight`.
    pub fn factor(self, weight: f32) -> f32 {
        match self {
            Override::None => 1.0,
            Override::Block if weight > 0.0 => 0.0,
            Override::Block => 1.0,
            Override::Blend => 1.0 - weight.clamp(0.0, 1.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Overrides {
    pub mouth: Override,
    pub blink: Override,
    pub look_at: Override,
}

/// A morph target: position deltas for vertices `first_vertex..first_vertex + deltas.len()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub first_vertex: u32,
    pub deltas: Vec<[f32; 3]>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    pub vertices: Vec<Vertex>,
    pub indices: Vec<u32>,
    /// Parents come before their children.
    pub nodes: Vec<Node>,
    /// What vertices are skinned to: a node and its inverse bind matrix (column-major).
    pub palette: Vec<(usize, Mat4)>,
    pub targets: Vec<Target>,
    /// VRM expressions by name (`aa`, `blink`, `happy`, …): (target, weight) binds.
    pub expressions: HashMap<String, Vec<(usize, f32)>>,
    /// What each VRM expression does to the mouth, blink and look-at expressions while active.
    pub overrides: HashMap<String, Overrides>,
    /// VRM humanoid bones by name (`head`, `neck`, `chest`, `leftEye`, …) → node.
    pub humanoid: HashMap<String, usize>,
    pub textures: Vec<Texture>,
    /// The file's node animations (see [`crate::animation`]).
    pub animations: Vec<crate::animation::Animation>,
}

/// Most vertices a model may have (the renderer's budget; a broadcast avatar needs far fewer).
pub const MAX_VERTICES: usize = 2_000_000;

fn unsupported(m: impl Into<String>) -> ModelError {
    ModelError::Unsupported(m.into())
}

fn invalid(m: impl Into<String>) -> ModelError {
    ModelError::Invalid(m.into())
}

impl Model {
    /// Reads a `.glb` / `.vrm` (glTF 2.0 binary with its buffer embedded).
    pub fn from_glb(bytes: &[u8]) -> Result<Self, ModelError> {
        crate::gltf_guard::check(bytes).map_err(ModelError::Invalid)?;
        let gltf = gltf::Gltf::from_slice(bytes).map_err(|e| ModelError::Parse(e.to_string()))?;
        let blob = embedded_blob(&gltf)?;
        let scene = gltf.default_scene().or_else(|| gltf.scenes().next()).ok_or_else(|| invalid("no scene"))?;
        let mut loader = Loader { blob, ..Loader::default() };
        loader.read_nodes(&scene)?;
        loader.read_skins(&gltf)?;
        // Meshes, in scene order; each mesh instance's morph targets cover its vertex range.
        for node in gltf.nodes() {
            loader.read_mesh_node(&node)?;
        }
        let Loader { mut model, ours, target_base_of_node, targets_of_node, .. } = loader;
        if model.indices.is_empty() {
            return Err(invalid("the scene draws no triangles"));
        }
        if let Some(vrm) = gltf.extensions().and_then(|e| e.get("VRMC_vrm")) {
            read_vrm(vrm, &ours, &target_base_of_node, &mut model)?;
        }
        model.animations = crate::animation::read(&gltf, blob, &ours, &targets_of_node).map_err(ModelError::Invalid)?;
        Ok(model)
    }

    /// Index of the target named `name`.
    pub fn target(&self, name: &str) -> Option<usize> {
        self.targets.iter().position(|t| t.name == name)
    }

    /// Where the vertices target `name` moves sit at rest, weighted by how far they move (the
    /// middle of the mouth for `jawOpen`).
    pub fn target_centroid(&self, name: &str) -> Option<[f32; 3]> {
        let t = &self.targets[self.target(name)?];
        let (mut sum, mut total) = ([0.0f64; 3], 0.0f64);
        for (i, d) in t.deltas.iter().enumerate() {
            let w = f64::from((d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt());
            let p = self.vertices.get(t.first_vertex as usize + i)?.position;
            for k in 0..3 {
                sum[k] += w * f64::from(p[k]);
            }
            total += w;
        }
        (total > 0.0).then(|| sum.map(|s| (s / total) as f32))
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name.as_deref() == Some(name))
    }

    /// The animation that loops while the avatar idles: one named like `idle`, else the only
    /// one the file has. A file with several and none named so plays none (a wave or a dance
    /// on a loop would not be what its author meant).
    pub fn idle_animation(&self) -> Option<usize> {
        let named = self.animations.iter().position(|a| a.name.to_ascii_lowercase().contains("idle"));
        let only = (self.animations.len() == 1).then_some(0);
        named.or(only).filter(|&i| self.animations[i].duration_s > 0.0)
    }
}

/// Most texels a base colour texture keeps per side (larger ones are scaled down).
pub const MAX_TEXTURE_SIDE: u32 = 1024;

/// Decodes an embedded PNG/JPEG into `textures`; `None` (with a warning) when it cannot be read,
/// The file's binary chunk, after checking that every buffer lives in it.
fn embedded_blob(gltf: &gltf::Gltf) -> Result<Option<&[u8]>, ModelError> {
    let blob = gltf.blob.as_deref();
    for buffer in gltf.buffers() {
        if let gltf::buffer::Source::Uri(uri) = buffer.source() {
            let shown: String = uri.chars().take(40).collect();
            return Err(unsupported(format!("buffer {} refers to `{shown}`: embed it (.glb/.vrm)", buffer.index())));
        }
        if blob.is_none_or(|b| b.len() < buffer.length()) {
            return Err(invalid(format!("buffer {} is longer than the file's binary chunk", buffer.index())));
        }
    }
    Ok(blob)
}

/// A model being read from a glTF file, with the maps from the file's indices to ours.
#[derive(Default)]
struct Loader<'a> {
    blob: Option<&'a [u8]>,
    model: Model,
    /// glTF node index → our node index (scene nodes only).
    ours: HashMap<usize, usize>,
    /// glTF skin index → its first palette entry.
    skin_base: HashMap<usize, usize>,
    /// Base colour textures, decoded once per glTF image (`None`: unreadable, skipped).
    texture_of_image: HashMap<usize, Option<u32>>,
    /// glTF node index → its mesh's first morph target.
    target_base_of_node: HashMap<usize, usize>,
    /// glTF node index → (first morph target, count).
    targets_of_node: HashMap<usize, (usize, usize)>,
}

/// What one mesh instance's primitives share.
struct MeshInstance<'n> {
    node: &'n gltf::Node<'n>,
    /// The first palette entry of its skin.
    joint_base: usize,
    /// The palette entry of an unskinned node (it moves rigidly with the node).
    rigid: Option<usize>,
}

impl<'a> Loader<'a> {
    fn data(&self) -> impl Fn(gltf::Buffer<'_>) -> Option<&'a [u8]> + Clone + 'a {
        let blob = self.blob;
        move |b: gltf::Buffer<'_>| (b.index() == 0).then_some(blob).flatten()
    }

    /// Nodes of the scene, parents first, with our own indices.
    fn read_nodes(&mut self, scene: &gltf::Scene<'_>) -> Result<(), ModelError> {
        let model = &mut self.model;
        let mut stack: Vec<(gltf::Node<'_>, Option<usize>)> = scene.nodes().map(|n| (n, None)).collect();
        stack.reverse();
        while let Some((node, parent)) = stack.pop() {
            if self.ours.contains_key(&node.index()) {
                return Err(invalid(format!("node {} appears twice in the scene graph", node.index())));
            }
            let (translation, rotation, scale) = node.transform().decomposed();
            self.ours.insert(node.index(), model.nodes.len());
            let me = model.nodes.len();
            model.nodes.push(Node { name: node.name().map(String::from), parent, translation, rotation, scale });
            for child in node.children().collect::<Vec<_>>().into_iter().rev() {
                stack.push((child, Some(me)));
            }
        }
        if model.nodes.len() > 4096 {
            return Err(unsupported(format!("{} nodes (at most 4096)", model.nodes.len())));
        }
        Ok(())
    }

    /// Skins become palette ranges.
    fn read_skins(&mut self, gltf: &gltf::Gltf) -> Result<(), ModelError> {
        for skin in gltf.skins() {
            let base = self.model.palette.len();
            let ibms: Vec<Mat4> = match skin.reader(self.data()).read_inverse_bind_matrices() {
                Some(it) => it.map(|m| std::array::from_fn(|i| m[i / 4][i % 4])).collect(),
                None => vec![IDENTITY; skin.joints().count()],
            };
            if ibms.len() != skin.joints().count() {
                return Err(invalid(format!("skin {}: inverse bind matrices do not match its joints", skin.index())));
            }
            for (joint, ibm) in skin.joints().zip(ibms) {
                let node = *self.ours.get(&joint.index()).ok_or_else(|| {
                    unsupported(format!("skin {} uses node {}, which is not in the scene", skin.index(), joint.index()))
                })?;
                self.model.palette.push((node, ibm));
            }
            self.skin_base.insert(skin.index(), base);
        }
        Ok(())
    }

    /// A scene node's mesh: its primitives' vertices and indices, and its morph targets.
    fn read_mesh_node(&mut self, node: &gltf::Node<'_>) -> Result<(), ModelError> {
        let Some(mesh) = node.mesh() else { return Ok(()) };
        let Some(&our_node) = self.ours.get(&node.index()) else { return Ok(()) };
        let (joint_base, rigid) = match node.skin() {
            Some(skin) => (self.skin_base[&skin.index()], None),
            None => {
                self.model.palette.push((our_node, IDENTITY));
                (0, Some(self.model.palette.len() - 1))
            }
        };
        let instance = MeshInstance { node, joint_base, rigid };
        let first = self.model.vertices.len();
        let mut mesh_targets: Vec<Vec<[f32; 3]>> = Vec::new();
        for primitive in mesh.primitives() {
            let label = format!("mesh `{}` primitive {}", mesh.name().unwrap_or("?"), primitive.index());
            self.read_primitive(&instance, &primitive, &label, &mut mesh_targets)?;
        }
        let names = target_names(&mesh);
        let model = &mut self.model;
        self.target_base_of_node.insert(node.index(), model.targets.len());
        self.targets_of_node.insert(node.index(), (model.targets.len(), mesh_targets.len()));
        for (t, deltas) in mesh_targets.into_iter().enumerate() {
            let name = names.get(t).cloned().unwrap_or_else(|| format!("{}#{t}", mesh.name().unwrap_or("mesh")));
            model.targets.push(Target { name, first_vertex: first as u32, deltas });
        }
        Ok(())
    }

    /// One triangle primitive: its vertices (with material, texture and skin), its indices, and
    /// its share of the mesh's morph targets.
    fn read_primitive(
        &mut self,
        instance: &MeshInstance<'_>,
        primitive: &gltf::Primitive<'_>,
        label: &str,
        mesh_targets: &mut Vec<Vec<[f32; 3]>>,
    ) -> Result<(), ModelError> {
        if primitive.mode() != Mode::Triangles {
            return Err(unsupported(format!("{label}: {:?} (only triangles)", primitive.mode())));
        }
        let reader = primitive.reader(self.data());
        let positions: Vec<[f32; 3]> =
            reader.read_positions().ok_or_else(|| invalid(format!("{label}: no POSITION")))?.collect();
        let n = positions.len();
        if self.model.vertices.len() + n > MAX_VERTICES {
            return Err(unsupported(format!("more than {MAX_VERTICES} vertices")));
        }
        let same = |what: &str, len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(invalid(format!("{label}: {what} has {len} entries for {n} vertices")))
            }
        };
        let normals: Option<Vec<[f32; 3]>> = reader.read_normals().map(|i| i.collect());
        let colors: Option<Vec<[f32; 4]>> = reader.read_colors(0).map(|c| c.into_rgba_f32().collect());
        let material = primitive.material();
        let base = material.pbr_metallic_roughness().base_color_factor();
        let alpha_cutoff = match material.alpha_mode() {
            gltf::material::AlphaMode::Opaque => 0.0,
            gltf::material::AlphaMode::Mask => material.alpha_cutoff().unwrap_or(0.5),
            // Blending needs sorted drawing; cut out at half instead (hair cards, lashes).
            gltf::material::AlphaMode::Blend => 0.5,
        };
        let (texture, uvs) = self.base_texture(&material, &reader, n);
        same("TEXCOORD", uvs.len())?;
        let (joints, weights) = match (instance.rigid, reader.read_joints(0), reader.read_weights(0)) {
            (None, Some(j), Some(w)) => {
                let j: Vec<[u16; 4]> = j.into_u16().collect();
                let w: Vec<[f32; 4]> = w.into_f32().collect();
                same("JOINTS_0", j.len())?;
                same("WEIGHTS_0", w.len())?;
                let count = instance.node.skin().map_or(0, |s| s.joints().count());
                if let Some(bad) = j.iter().flatten().find(|&&x| usize::from(x) >= count) {
                    return Err(invalid(format!("{label}: joint {bad} is not in its skin ({count} joints)")));
                }
                (j, w)
            }
            (None, _, _) => return Err(invalid(format!("{label}: skinned node without JOINTS_0/WEIGHTS_0"))),
            (Some(_), _, _) => (vec![[0; 4]; n], vec![[1.0, 0.0, 0.0, 0.0]; n]),
        };
        if let Some(c) = &colors {
            same("COLOR_0", c.len())?;
        }
        if let Some(nm) = &normals {
            same("NORMAL", nm.len())?;
        }
        let offset = self.model.vertices.len() as u32;
        let indices: Vec<u32> = match reader.read_indices() {
            Some(i) => i.into_u32().collect(),
            None => (0..n as u32).collect(),
        };
        if !indices.len().is_multiple_of(3) {
            return Err(invalid(format!("{label}: {} indices is not a whole number of triangles", indices.len())));
        }
        if let Some(bad) = indices.iter().find(|&&i| i as usize >= n) {
            return Err(invalid(format!("{label}: index {bad} is beyond its {n} vertices")));
        }
        let normals = normals.unwrap_or_else(|| face_normals(&positions, &indices));
        for i in 0..n {
            let c = colors.as_ref().map_or([1.0; 4], |c| c[i]);
            let w = weights[i];
            let total: f32 = w.iter().sum();
            let (joints, weights) = match instance.rigid {
                Some(p) => ([p as u32, 0, 0, 0], [1.0, 0.0, 0.0, 0.0]),
                None if total > 0.0 => {
                    (joints[i].map(|j| (instance.joint_base + usize::from(j)) as u32), w.map(|x| x / total))
                }
                None => return Err(invalid(format!("{label}: vertex {i} has no joint weight"))),
            };
            self.model.vertices.push(Vertex {
                position: positions[i],
                normal: normals[i],
                color: [base[0] * c[0], base[1] * c[1], base[2] * c[2]],
                joints,
                weights,
                uv: uvs[i],
                texture,
                alpha_cutoff: if texture.is_some() { alpha_cutoff } else { 0.0 },
            });
        }
        self.model.indices.extend(indices.iter().map(|i| i + offset));
        let targets: Vec<_> = reader.read_morph_targets().collect();
        if mesh_targets.is_empty() {
            *mesh_targets = vec![Vec::new(); targets.len()];
        } else if targets.len() != mesh_targets.len() {
            return Err(invalid(format!(
                "{label}: {} morph targets, other primitives have {}",
                targets.len(),
                mesh_targets.len()
            )));
        }
        for (t, (p, _, _)) in targets.into_iter().enumerate() {
            let deltas: Vec<[f32; 3]> = p.map_or_else(|| vec![[0.0; 3]; n], |p| p.collect());
            same("a morph target", deltas.len())?;
            mesh_targets[t].extend(deltas);
        }
        Ok(())
    }

    /// The material's base colour texture (decoded once per image) and the primitive's UVs for
    /// it; no texture and zero UVs when it has none or it cannot be read.
    fn base_texture<'s, F>(
        &mut self,
        material: &gltf::Material<'_>,
        reader: &gltf::mesh::Reader<'s, 's, F>,
        n: usize,
    ) -> (Option<u32>, Vec<[f32; 2]>)
    where
        F: Clone + Fn(gltf::Buffer<'s>) -> Option<&'s [u8]>,
    {
        let Some(info) = material.pbr_metallic_roughness().base_color_texture() else {
            return (None, vec![[0.0; 2]; n]);
        };
        let image = info.texture().source();
        let (blob, textures) = (self.blob, &mut self.model.textures);
        let texture =
            *self.texture_of_image.entry(image.index()).or_insert_with(|| decode_texture(&image, blob, textures));
        let uvs: Option<Vec<[f32; 2]>> = reader.read_tex_coords(info.tex_coord()).map(|t| t.into_f32().collect());
        match (texture, uvs) {
            (Some(t), Some(uvs)) => (Some(t), uvs),
            _ => (None, vec![[0.0; 2]; n]),
        }
    }
}

/// so the avatar is drawn in its base colours rather than refused.
fn decode_texture(image: &gltf::Image<'_>, blob: Option<&[u8]>, textures: &mut Vec<Texture>) -> Option<u32> {
    let gltf::image::Source::View { view, .. } = image.source() else {
        tracing::warn!(image = image.index(), "texture refers to an outside file; drawn without it");
        return None;
    };
    let bytes = blob?.get(view.offset()..view.offset().checked_add(view.length())?)?;
    let decoded = match image::load_from_memory(bytes) {
        Ok(i) => i.to_rgba8(),
        Err(e) => {
            tracing::warn!(image = image.index(), error = %e, "texture unreadable; drawn without it");
            return None;
        }
    };
    let (w, h) = decoded.dimensions();
    let scale = (MAX_TEXTURE_SIDE as f32 / w.max(h) as f32).min(1.0);
    let (tw, th) = (((w as f32 * scale) as u32).max(1), ((h as f32 * scale) as u32).max(1));
    let decoded = if (tw, th) == (w, h) {
        decoded
    } else {
        image::imageops::resize(&decoded, tw, th, image::imageops::FilterType::Triangle)
    };
    textures.push(Texture { width: tw, height: th, rgba: decoded.into_raw() });
    Some(textures.len() as u32 - 1)
}

fn target_names(mesh: &gltf::Mesh<'_>) -> Vec<String> {
    let Some(extras) = mesh.extras().as_ref() else { return Vec::new() };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(extras.get()) else { return Vec::new() };
    value["targetNames"]
        .as_array()
        .map(|names| names.iter().map(|n| n.as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}

/// Humanoid bones and expressions from `VRMC_vrm` (VRM 1.0).
fn read_vrm(
    vrm: &serde_json::Value,
    ours: &HashMap<usize, usize>,
    target_base_of_node: &HashMap<usize, usize>,
    model: &mut Model,
) -> Result<(), ModelError> {
    if let Some(bones) = vrm["humanoid"]["humanBones"].as_object() {
        for (name, bone) in bones {
            let node = bone["node"].as_u64().and_then(|n| ours.get(&(n as usize)).copied());
            let node = node.ok_or_else(|| invalid(format!("VRM humanoid bone `{name}` names no node of the scene")))?;
            model.humanoid.insert(name.clone(), node);
        }
    }
    let expressions = ["preset", "custom"].iter().filter_map(|k| vrm["expressions"][k].as_object()).flatten();
    for (name, expression) in expressions {
        let mut binds = Vec::new();
        for bind in expression["morphTargetBinds"].as_array().into_iter().flatten() {
            let (Some(node), Some(index)) = (bind["node"].as_u64(), bind["index"].as_u64()) else {
                return Err(invalid(format!("VRM expression `{name}`: a bind without node and index")));
            };
            let base = target_base_of_node
                .get(&(node as usize))
                .ok_or_else(|| invalid(format!("VRM expression `{name}`: node {node} has no mesh")))?;
            let target = base + index as usize;
            if target >= model.targets.len() {
                return Err(invalid(format!("VRM expression `{name}`: node {node} has no morph target {index}")));
            }
            let weight = bind["weight"].as_f64().unwrap_or(1.0) as f32;
            binds.push((target, weight.clamp(0.0, 1.0)));
        }
        let rule = |key: &str| match expression[key].as_str() {
            None | Some("none") => Ok(Override::None),
            Some("block") => Ok(Override::Block),
            Some("blend") => Ok(Override::Blend),
            Some(other) => {
                let shown: String = other.chars().take(20).collect();
                Err(invalid(format!("VRM expression `{name}`: {key} is `{shown}`, not none, block or blend")))
            }
        };
        let overrides = Overrides {
            mouth: rule("overrideMouth")?,
            blink: rule("overrideBlink")?,
            look_at: rule("overrideLookAt")?,
        };
        model.overrides.insert(name.clone(), overrides);
        model.expressions.insert(name.clone(), binds);
    }
    Ok(())
}

/// Smooth normals from the triangles, for meshes that come without.
fn face_normals(positions: &[[f32; 3]], indices: &[u32]) -> Vec<[f32; 3]> {
    let mut sum = vec![[0.0f32; 3]; positions.len()];
    for t in indices.chunks_exact(3) {
        let [a, b, c] = [t[0], t[1], t[2]].map(|i| positions[i as usize]);
        let (u, v) = ([b[0] - a[0], b[1] - a[1], b[2] - a[2]], [c[0] - a[0], c[1] - a[1], c[2] - a[2]]);
        let n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
        for &i in t {
            for k in 0..3 {
                sum[i as usize][k] += n[k];
            }
        }
    }
    sum.into_iter()
        .map(|n| {
            let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
            if len > 1e-12 {
                n.map(|c| c / len)
            } else {
                [0.0, 0.0, 1.0]
            }
        })
        .collect()
}

//! What the `gltf` crate assumes of a file but does not check, checked before it reads one:
//! its validation indexes a primitive's `POSITION` accessor without a bounds check; its index
//! reader treats a non-integer index accessor as unreachable; its accessor readers assume the
//! accessor holds the element type the reader asks for (positions as three floats, …) and a
//! stride at least that wide; its GLB reader subtracts the header from a length it has not
//! checked. Each of these was a panic on a hostile file (found by fuzzing,
//! `fuzz/regressions/gltf/`); checked here on the unvalidated JSON, they are named errors.

use gltf::json::accessor::{ComponentType, Type};
use gltf::json::animation::Property;
use gltf::json::mesh::Semantic;
use gltf::json::validation::Checked;
use gltf::json::{Accessor, Root};

use ComponentType::{F32, I16, I8, U16, U32, U8};

/// The element types a reader accepts for one use of an accessor.
struct Shape(&'static [Type], &'static [ComponentType]);

const VEC3_F32: Shape = Shape(&[Type::Vec3], &[F32]);
const SMALL_OR_F32: &[ComponentType] = &[F32, U8, U16];

fn attribute_shape(semantic: &Semantic) -> Shape {
    match semantic {
        Semantic::Positions | Semantic::Normals => VEC3_F32,
        Semantic::Tangents => Shape(&[Type::Vec4], &[F32]),
        Semantic::Colors(_) => Shape(&[Type::Vec3, Type::Vec4], SMALL_OR_F32),
        Semantic::TexCoords(_) => Shape(&[Type::Vec2], SMALL_OR_F32),
        Semantic::Joints(_) => Shape(&[Type::Vec4], &[U8, U16]),
        Semantic::Weights(_) => Shape(&[Type::Vec4], SMALL_OR_F32),
        #[allow(unreachable_patterns)]
        _ => Shape(&[Type::Scalar, Type::Vec2, Type::Vec3, Type::Vec4], &[F32, I8, U8, I16, U16, U32]),
    }
}

/// The file as the gltf crate may read it, or why not.
pub(crate) fn check(bytes: &[u8]) -> Result<(), String> {
    // The GLB header's total length, less the header, is taken without a check.
    if let Some(length) = bytes.get(8..12).filter(|_| bytes.starts_with(b"glTF")) {
        if u32::from_le_bytes([length[0], length[1], length[2], length[3]]) < 12 {
            return Err("the GLB header gives a length shorter than the header".into());
        }
    }
    // A file that does not parse at all is left to the validating parse, which says why.
    let Ok(gltf) = gltf::Gltf::from_slice_without_validation(bytes) else { return Ok(()) };
    let root = gltf.document.into_json();
    for (i, accessor) in root.accessors.iter().enumerate() {
        well_formed(&root, accessor).map_err(|why| format!("accessor {i}: {why}"))?;
    }
    let used_as = |index: usize, shape: Shape, what: &str| -> Result<(), String> {
        let accessor = root
            .accessors
            .get(index)
            .ok_or_else(|| format!("{what} names accessor {index}, but the file has {}", root.accessors.len()))?;
        let fits = matches!((accessor.type_, accessor.component_type),
            (Checked::Valid(t), Checked::Valid(c)) if shape.0.contains(&t) && shape.1.contains(&c.0));
        if fits {
            Ok(())
        } else {
            Err(format!("{what}: accessor {index} does not hold what it is used for"))
        }
    };
    for (m, mesh) in root.meshes.iter().enumerate() {
        for primitive in &mesh.primitives {
            for (semantic, index) in &primitive.attributes {
                if let Checked::Valid(semantic) = semantic {
                    used_as(index.value(), attribute_shape(semantic), &format!("mesh {m}: an attribute"))?;
                }
            }
            for target in primitive.targets.iter().flatten() {
                for index in [target.positions, target.normals, target.tangents].into_iter().flatten() {
                    used_as(index.value(), VEC3_F32, &format!("mesh {m}: a morph target"))?;
                }
            }
            if let Some(index) = primitive.indices {
                used_as(index.value(), Shape(&[Type::Scalar], &[U8, U16, U32]), &format!("mesh {m}: its indices"))?;
            }
        }
    }
    for (s, skin) in root.skins.iter().enumerate() {
        if let Some(index) = skin.inverse_bind_matrices {
            used_as(index.value(), Shape(&[Type::Mat4], &[F32]), &format!("skin {s}: inverse bind matrices"))?;
        }
    }
    for (a, animation) in root.animations.iter().enumerate() {
        for channel in &animation.channels {
            let Some(sampler) = animation.samplers.get(channel.sampler.value()) else { continue };
            let what = format!("animation {a}");
            used_as(sampler.input.value(), Shape(&[Type::Scalar], &[F32]), &what)?;
            let output = match channel.target.path {
                Checked::Valid(Property::Translation | Property::Scale) => VEC3_F32,
                Checked::Valid(Property::Rotation) => Shape(&[Type::Vec4], &[F32, I8, U8, I16, U16]),
                _ => Shape(&[Type::Scalar], &[F32, I8, U8, I16, U16]),
            };
            used_as(sampler.output.value(), output, &what)?;
        }
    }
    Ok(())
}

/// An accessor the readers can walk: a known element type, at least one element, a stride at
/// least one element wide, and a sparse part with at least one entry.
fn well_formed(root: &Root, accessor: &Accessor) -> Result<(), String> {
    let (Checked::Valid(kind), Checked::Valid(component)) = (accessor.type_, accessor.component_type) else {
        return Err("an unknown element type".into());
    };
    let element = kind.multiplicity() * component.0.size();
    let view = accessor.buffer_view.and_then(|v| root.buffer_views.get(v.value()));
    if let Some(stride) = view.and_then(|v| v.byte_stride) {
        if stride.0 < element {
            return Err(format!("a stride of {} bytes for {element}-byte elements", stride.0));
        }
    }
    // The spec's minimum; the readers subtract one from the count.
    if accessor.count.0 == 0 {
        return Err("no elements".into());
    }
    if accessor.sparse.as_ref().is_some_and(|s| s.count.0 == 0) {
        return Err("a sparse part with no entries".into());
    }
    Ok(())
}

//! Base colour textures of a glTF file, on this machine's Vulkan device: a quad textured with a
//! 2×2 checker shows each texel's colour in its quarter, and a texel cut out by the material's
//! alpha mask shows the background through it.

use emcee_avatar_build::glb::Builder;
use emcee_protocol::CameraPreset;
use emcee_renderer::camera::project;
use emcee_renderer::model::Model;
use emcee_renderer::rig::Framing;
use emcee_renderer::{Pose, Renderer};
use serde_json::json;

const W: u32 = 320;
const H: u32 = 180;

/// A 2×2 quad at the origin facing the camera, textured with `texels` (row-major RGBA, top row
/// first) in alpha mode `alpha_mode`.
fn textured_quad(texels: [[u8; 4]; 4], alpha_mode: &str) -> Vec<u8> {
    let mut png = Vec::new();
    let img = image::RgbaImage::from_fn(2, 2, |x, y| image::Rgba(texels[(y * 2 + x) as usize]));
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let mut b = Builder::default();
    let positions = b.floats(&[[-1.0f32, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]], true);
    let normals = b.floats(&[[0.0f32, 0.0, 1.0]; 4], false);
    let uvs = b.floats(&[[0.0f32, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]], false);
    let indices = b.indices(&[0, 1, 2, 0, 2, 3]);
    let view = b.image(&png);
    b.finish(json!({
        "asset": { "version": "2.0" },
        "scene": 0,
        "scenes": [{ "nodes": [0] }],
        "nodes": [{ "mesh": 0 }],
        "meshes": [{ "primitives": [{
            "attributes": { "POSITION": positions, "NORMAL": normals, "TEXCOORD_0": uvs },
            "indices": indices,
            "material": 0,
        }] }],
        "materials": [{
            "pbrMetallicRoughness": { "baseColorTexture": { "index": 0 }, "metallicFactor": 0.0 },
            "alphaMode": alpha_mode,
        }],
        "textures": [{ "source": 0 }],
        "images": [{ "bufferView": view, "mimeType": "image/png" }],
    }))
}

/// The RGB-ish reading of a pixel from I420: (Y, Cb, Cr).
fn ycbcr(frame: &[u8], (x, y): (f32, f32)) -> (u8, u8, u8) {
    let (x, y) = (x as u32, y as u32);
    let luma = (W * H) as usize;
    let c = ((y / 2) * (W / 2) + x / 2) as usize;
    (frame[(y * W + x) as usize], frame[luma + c], frame[luma + luma / 4 + c])
}

#[test]
fn each_texel_shows_in_its_quarter_and_masked_texels_are_cut_out() {
    let (red, green, blue, clear) = ([230, 20, 20, 255], [20, 200, 20, 255], [20, 20, 230, 255], [255, 255, 255, 0]);
    let model = Model::from_glb(&textured_quad([red, green, blue, clear], "MASK")).unwrap();
    assert_eq!(model.textures.len(), 1);
    let mut r = Renderer::with_model(W, H, [0, 0, 0], model).unwrap();
    let frame = r.render(&Pose::default()).unwrap().to_vec();
    let at = |x: f32, y: f32| ycbcr(&frame, project([x, y, 0.0], CameraPreset::Medium, Framing::UNIT, W, H));
    let (top_left, top_right, bottom_left, bottom_right) = (at(-0.5, 0.5), at(0.5, 0.5), at(-0.5, -0.5), at(0.5, -0.5));
    assert!(top_left.2 > 180, "red texel top left: {top_left:?}");
    assert!(top_right.0 > 80 && top_right.1 < 110 && top_right.2 < 110, "green top right: {top_right:?}");
    assert!(bottom_left.1 > 180, "blue bottom left: {bottom_left:?}");
    assert!(bottom_right.0 <= 17, "cut out: the black background shows: {bottom_right:?}");
}

#[test]
fn a_texture_that_cannot_be_decoded_leaves_the_base_colour() {
    let mut glb = textured_quad([[9, 9, 9, 255]; 4], "OPAQUE");
    // Spoil the PNG signature inside the binary chunk.
    let at = glb.windows(4).position(|w| w == b"\x89PNG").unwrap();
    glb[at + 1] = b'X';
    let model = Model::from_glb(&glb).unwrap();
    assert!(model.textures.is_empty() && model.vertices.iter().all(|v| v.texture.is_none()));
}

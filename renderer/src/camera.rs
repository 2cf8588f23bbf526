//! The camera: framing presets around the avatar's face (column-major matrices, WebGPU clip
//! conventions: y up, depth 0…1; naga adapts the shaders to Vulkan's).

use emcee_protocol::CameraPreset;

use crate::math::{mul, perspective, translation, Mat4};
use crate::rig::Framing;

/// Where the camera stands for each preset, for a head of half-height 1 centred on the origin;
/// it looks straight down −z.
fn eye(camera: CameraPreset) -> [f32; 3] {
    match camera {
        CameraPreset::Close => [0.0, 0.03, 4.1],
        CameraPreset::Medium => [0.0, -0.25, 6.2],
        CameraPreset::Wide => [0.0, -0.75, 9.5],
    }
}

pub fn view_projection(camera: CameraPreset, framing: Framing, width: u32, height: u32) -> Mat4 {
    let aspect = width as f32 / height.max(1) as f32;
    let s = framing.scale;
    let proj = perspective(30f32.to_radians(), aspect, 0.1 * s, 50.0 * s);
    let [x, y, z] = eye(camera);
    let [cx, cy, cz] = framing.center;
    let view = translation([-(cx + x * s), -(cy + y * s), -(cz + z * s)]);
    mul(&proj, &view)
}

/// Projects a model-space point (at rest) to pixel coordinates (x right, y down).
pub fn project(point: [f32; 3], camera: CameraPreset, framing: Framing, width: u32, height: u32) -> (f32, f32) {
    let m = view_projection(camera, framing, width, height);
    let v = [point[0], point[1], point[2], 1.0];
    let clip: Vec<f32> = (0..4).map(|r| (0..4).map(|c| m[c * 4 + r] * v[c]).sum()).collect();
    let (nx, ny) = (clip[0] / clip[3], clip[1] / clip[3]);
    ((nx + 1.0) * 0.5 * width as f32, (1.0 - ny) * 0.5 * height as f32)
}

/// [`project`] for the built-in avatar.
pub fn project_to_pixels(point: [f32; 3], camera: CameraPreset, width: u32, height: u32) -> (f32, f32) {
    project(point, camera, Framing::UNIT, width, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_face_is_centred_and_the_mouth_below_the_centre() {
        let (x, y) = project_to_pixels([0.0, 0.0, 0.8], CameraPreset::Medium, 1280, 720);
        assert!((x - 640.0).abs() < 1.0);
        assert!(y > 250.0 && y < 420.0, "{y}");
        let (_, mouth_y) = project_to_pixels(crate::avatar::MOUTH_CENTER, CameraPreset::Medium, 1280, 720);
        assert!(mouth_y > y + 40.0, "mouth at {mouth_y}");
    }

    #[test]
    fn closer_framings_show_the_face_larger_and_keep_it_in_the_picture() {
        let eye_distance = |f: CameraPreset| {
            let (l, _) = project_to_pixels([-0.3, 0.22, 0.7], f, 1280, 720);
            let (r, _) = project_to_pixels([0.3, 0.22, 0.7], f, 1280, 720);
            r - l
        };
        let (close, medium, wide) =
            (eye_distance(CameraPreset::Close), eye_distance(CameraPreset::Medium), eye_distance(CameraPreset::Wide));
        assert!(close > medium * 1.4 && medium > wide * 1.4, "{close} {medium} {wide}");
        for f in [CameraPreset::Close, CameraPreset::Medium, CameraPreset::Wide] {
            // Top of the hair and the chin are both in the picture.
            let (_, top) = project_to_pixels([0.0, 1.0, 0.0], f, 1280, 720);
            let (_, chin) = project_to_pixels([0.0, -0.85, 0.6], f, 1280, 720);
            assert!(top > 0.0 && chin < 720.0, "{f:?}: {top} {chin}");
        }
    }
}

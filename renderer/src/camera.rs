//! Camera, head motion and the per-frame uniform block (column-major matrices, WebGPU clip
//! conventions: y up, depth 0…1; naga adapts the shaders to Vulkan's).

use emcee_protocol::CameraPreset;

use crate::Pose;

type Mat4 = [[f32; 4]; 4]; // columns

fn mul(a: &Mat4, b: &Mat4) -> Mat4 {
    let mut out = [[0.0; 4]; 4];
    for (c, col) in out.iter_mut().enumerate() {
        for (r, cell) in col.iter_mut().enumerate() {
            *cell = (0..4).map(|k| a[k][r] * b[c][k]).sum();
        }
    }
    out
}

fn translate(x: f32, y: f32, z: f32) -> Mat4 {
    [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [x, y, z, 1.0]]
}

fn rotate_x(a: f32) -> Mat4 {
    let (s, c) = a.sin_cos();
    [[1.0, 0.0, 0.0, 0.0], [0.0, c, s, 0.0], [0.0, -s, c, 0.0], [0.0, 0.0, 0.0, 1.0]]
}

fn rotate_y(a: f32) -> Mat4 {
    let (s, c) = a.sin_cos();
    [[c, 0.0, -s, 0.0], [0.0, 1.0, 0.0, 0.0], [s, 0.0, c, 0.0], [0.0, 0.0, 0.0, 1.0]]
}

fn rotate_z(a: f32) -> Mat4 {
    let (s, c) = a.sin_cos();
    [[c, s, 0.0, 0.0], [-s, c, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
}

fn perspective(fov_y: f32, aspect: f32, near: f32, far: f32) -> Mat4 {
    let f = 1.0 / (fov_y / 2.0).tan();
    let range = far / (near - far);
    [[f / aspect, 0.0, 0.0, 0.0], [0.0, f, 0.0, 0.0], [0.0, 0.0, range, -1.0], [0.0, 0.0, near * range, 0.0]]
}

/// Where the camera stands for each preset; it looks straight down −z.
fn eye(camera: CameraPreset) -> [f32; 3] {
    match camera {
        CameraPreset::Close => [0.0, 0.03, 4.1],
        CameraPreset::Medium => [0.0, -0.25, 6.2],
        CameraPreset::Wide => [0.0, -0.75, 9.5],
    }
}

/// The head turns about the top of the neck.
const NECK_PIVOT: [f32; 3] = [0.0, -0.9, 0.0];

pub fn view_projection(framing: CameraPreset, width: u32, height: u32) -> Mat4 {
    let aspect = width as f32 / height.max(1) as f32;
    let proj = perspective(30f32.to_radians(), aspect, 0.1, 50.0);
    let [x, y, z] = eye(framing);
    let view = translate(-x, -y, -z);
    mul(&proj, &view)
}

pub fn head_matrix(pose: &Pose) -> Mat4 {
    let [px, py, pz] = NECK_PIVOT;
    let rot = mul(&rotate_y(pose.head_yaw), &mul(&rotate_x(pose.head_pitch), &rotate_z(pose.head_roll)));
    mul(&translate(px, py, pz), &mul(&rot, &translate(-px, -py, -pz)))
}

/// The uniform block the avatar shader reads (`Frame` in avatar.wgsl).
pub fn frame_uniforms(pose: &Pose, framing: CameraPreset, width: u32, height: u32) -> Vec<f32> {
    let mut out = Vec::with_capacity(44);
    out.extend(view_projection(framing, width, height).iter().flatten());
    out.extend(head_matrix(pose).iter().flatten());
    out.extend([pose.jaw_open, pose.mouth_spread, pose.blink, pose.breath]);
    out.extend([-0.4, 0.5, 0.9, 1.0 - pose.fade_out.clamp(0.0, 1.0)]);
    out.extend([pose.smile, 0.0, 0.0, 0.0]);
    out
}

/// Projects a model-space point of the head (at rest) to pixel coordinates (x right, y down).
pub fn project_to_pixels(point: [f32; 3], framing: CameraPreset, width: u32, height: u32) -> (f32, f32) {
    let m = view_projection(framing, width, height);
    let v = [point[0], point[1], point[2], 1.0];
    let clip: Vec<f32> = (0..4).map(|r| (0..4).map(|c| m[c][r] * v[c]).sum()).collect();
    let (nx, ny) = (clip[0] / clip[3], clip[1] / clip[3]);
    ((nx + 1.0) * 0.5 * width as f32, (1.0 - ny) * 0.5 * height as f32)
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

    #[test]
    fn head_rotation_keeps_the_pivot_fixed() {
        let pose = Pose { head_yaw: 0.3, head_pitch: -0.2, head_roll: 0.1, ..Pose::default() };
        let m = head_matrix(&pose);
        let p = [NECK_PIVOT[0], NECK_PIVOT[1], NECK_PIVOT[2], 1.0];
        for r in 0..3 {
            let v: f32 = (0..4).map(|c| m[c][r] * p[c]).sum();
            assert!((v - p[r]).abs() < 1e-5);
        }
    }
}

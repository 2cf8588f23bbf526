//! The little linear algebra the renderer needs: column-major 4×4 matrices (as glTF and the
//! shaders store them) and rotation quaternions `[x, y, z, w]`.

/// A column-major 4×4 matrix: element (row r, column c) at `[c * 4 + r]`.
pub type Mat4 = [f32; 16];

pub const IDENTITY: Mat4 = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];

/// A translation by `t`.
pub fn translation(t: [f32; 3]) -> Mat4 {
    let mut m = IDENTITY;
    m[12..15].copy_from_slice(&t);
    m
}

/// A perspective projection (WebGPU clip conventions: depth 0…1), `fov_y` in radians.
pub fn perspective(fov_y: f32, aspect: f32, near: f32, far: f32) -> Mat4 {
    let f = 1.0 / (fov_y / 2.0).tan();
    let range = far / (near - far);
    let mut m = [0.0; 16];
    m[0] = f / aspect;
    m[5] = f;
    m[10] = range;
    m[11] = -1.0;
    m[14] = near * range;
    m
}

pub fn quat_from_euler(yaw: f32, pitch: f32, roll: f32) -> [f32; 4] {
    // Yaw about y, then pitch about x, then roll about z (q = qy · qx · qz).
    let (sy, cy) = (yaw / 2.0).sin_cos();
    let (sx, cx) = (pitch / 2.0).sin_cos();
    let (sz, cz) = (roll / 2.0).sin_cos();
    let qy = [0.0, sy, 0.0, cy];
    let qx = [sx, 0.0, 0.0, cx];
    let qz = [0.0, 0.0, sz, cz];
    quat_mul(quat_mul(qy, qx), qz)
}

pub fn quat_conj(q: [f32; 4]) -> [f32; 4] {
    [-q[0], -q[1], -q[2], q[3]]
}

pub fn quat_mul(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
    [
        a[3] * b[0] + a[0] * b[3] + a[1] * b[2] - a[2] * b[1],
        a[3] * b[1] - a[0] * b[2] + a[1] * b[3] + a[2] * b[0],
        a[3] * b[2] + a[0] * b[1] - a[1] * b[0] + a[2] * b[3],
        a[3] * b[3] - a[0] * b[0] - a[1] * b[1] - a[2] * b[2],
    ]
}

/// T · R · S.
pub fn compose(t: [f32; 3], q: [f32; 4], s: [f32; 3]) -> Mat4 {
    let [x, y, z, w] = q;
    let r = [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + z * w), 2.0 * (x * z - y * w)],
        [2.0 * (x * y - z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + x * w)],
        [2.0 * (x * z + y * w), 2.0 * (y * z - x * w), 1.0 - 2.0 * (x * x + y * y)],
    ];
    [
        r[0][0] * s[0],
        r[0][1] * s[0],
        r[0][2] * s[0],
        0.0,
        r[1][0] * s[1],
        r[1][1] * s[1],
        r[1][2] * s[1],
        0.0,
        r[2][0] * s[2],
        r[2][1] * s[2],
        r[2][2] * s[2],
        0.0,
        t[0],
        t[1],
        t[2],
        1.0,
    ]
}

/// a · b.
pub fn mul(a: &Mat4, b: &Mat4) -> Mat4 {
    let mut out = [0.0; 16];
    for c in 0..4 {
        for r in 0..4 {
            out[c * 4 + r] = (0..4).map(|k| a[k * 4 + r] * b[c * 4 + k]).sum();
        }
    }
    out
}

/// `m` applied to the point `p`.
pub fn transform_point(m: &Mat4, p: [f32; 3]) -> [f32; 3] {
    [0, 1, 2].map(|r| m[r] * p[0] + m[4 + r] * p[1] + m[8 + r] * p[2] + m[12 + r])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_turn_about_y_maps_z_to_x() {
        let m = compose([0.0; 3], quat_from_euler(std::f32::consts::FRAC_PI_2, 0.0, 0.0), [1.0; 3]);
        let p = transform_point(&m, [0.0, 0.0, 1.0]);
        assert!((p[0] - 1.0).abs() < 1e-5 && p[2].abs() < 1e-5, "{p:?}");
        assert_eq!(mul(&IDENTITY, &m), m);
        assert_eq!(transform_point(&translation([1.0, 2.0, 3.0]), [1.0; 3]), [2.0, 3.0, 4.0]);
    }
}

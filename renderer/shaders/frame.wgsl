// Shared by the pose pass (pose.wgsl) and the avatar pass (avatar.wgsl): the per-frame block
// and the morph and skinning data.

struct Frame {
    view_proj: mat4x4<f32>,
    // xyz: key light direction, w: picture level (1 normal … 0 black, for fades)
    light_dir: vec4<f32>,
    // x: how many entries of `morphs` are active
    morph_count: vec4<u32>,
    // Per active target: x first delta (in vec3s), y first vertex, z vertex count, w weight (f32 bits)
    morphs: array<vec4<u32>, 32>,
};

@group(0) @binding(0) var<uniform> frame: Frame;
@group(0) @binding(1) var<storage, read> deltas: array<f32>;
@group(0) @binding(2) var<storage, read> joints: array<mat4x4<f32>>;

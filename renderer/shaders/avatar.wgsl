// Avatar pass: active morph targets blended per vertex, linear-blend skinning, simple key +
// fill + rim light. WebGPU conventions (clip-space y up); naga adjusts them for Vulkan.

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
// Base colour textures, one per layer (sRGB: sampled as linear).
@group(0) @binding(3) var textures: texture_2d_array<f32>;
@group(0) @binding(4) var texture_sampler: sampler;

struct VertexIn {
    @builtin(vertex_index) index: u32,
    @location(0) position: vec3<f32>,
    @location(1) normal: vec3<f32>,
    @location(2) color: vec3<f32>,
    @location(3) joint: vec4<f32>,
    @location(4) weight: vec4<f32>,
    @location(5) uv: vec2<f32>,
    // x: texture layer (negative: none), y: alpha cut-off
    @location(6) material: vec2<f32>,
};

struct VertexOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) normal: vec3<f32>,
    @location(1) color: vec3<f32>,
    @location(2) uv: vec2<f32>,
    @location(3) material: vec2<f32>,
};

@vertex
fn vs_main(v: VertexIn) -> VertexOut {
    var morphed = v.position;
    let count = min(frame.morph_count.x, 32u);
    for (var k = 0u; k < count; k = k + 1u) {
        let m = frame.morphs[k];
        if (v.index >= m.y && v.index < m.y + m.z) {
            let at = (m.x + v.index - m.y) * 3u;
            morphed = morphed + bitcast<f32>(m.w) * vec3<f32>(deltas[at], deltas[at + 1u], deltas[at + 2u]);
        }
    }
    let skin = joints[u32(v.joint.x)] * v.weight.x
        + joints[u32(v.joint.y)] * v.weight.y
        + joints[u32(v.joint.z)] * v.weight.z
        + joints[u32(v.joint.w)] * v.weight.w;
    var out: VertexOut;
    out.clip = frame.view_proj * (skin * vec4<f32>(morphed, 1.0));
    out.normal = (skin * vec4<f32>(v.normal, 0.0)).xyz;
    out.color = v.color;
    out.uv = v.uv;
    out.material = v.material;
    return out;
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    var base = in.color;
    if (in.material.x >= 0.0) {
        // Level 0 explicitly: allowed where the branch is not uniform.
        let texel = textureSampleLevel(textures, texture_sampler, in.uv, i32(in.material.x + 0.5), 0.0);
        if (texel.a < in.material.y) {
            discard;
        }
        base = base * texel.rgb;
    }
    let n = normalize(in.normal);
    let key = max(dot(n, normalize(frame.light_dir.xyz)), 0.0);
    let fill = max(dot(n, normalize(vec3<f32>(0.6, 0.1, 0.8))), 0.0) * 0.25;
    let rim = pow(1.0 - max(n.z, 0.0), 3.0) * 0.25;
    let linear = base * (0.22 + 0.75 * key + fill) + vec3<f32>(rim);
    // The target is UNORM holding display-referred values: encode gamma here.
    let display = pow(clamp(linear, vec3<f32>(0.0), vec3<f32>(1.0)), vec3<f32>(1.0 / 2.2));
    return vec4<f32>(display * frame.light_dir.w, 1.0);
}

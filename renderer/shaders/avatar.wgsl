// Avatar pass: draws the vertices the pose pass (pose.wgsl) morphed and skinned this frame,
// with simple key + fill + rim light. WebGPU conventions (clip-space y up); naga adjusts them for
// Vulkan. `frame.wgsl` comes in front of this file.

@group(0) @binding(5) var<storage, read> posed: array<vec4<f32>>;
// Base colour textures, one per layer (sRGB: sampled as linear).
@group(0) @binding(3) var textures: texture_2d_array<f32>;
@group(0) @binding(4) var texture_sampler: sampler;

// Position, normal, joints and weights (locations 0, 1, 3, 4) are read by the pose pass.
struct VertexIn {
    @builtin(vertex_index) index: u32,
    @location(2) color: vec3<f32>,
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
    var out: VertexOut;
    out.clip = frame.view_proj * posed[2u * v.index];
    out.normal = posed[2u * v.index + 1u].xyz;
    out.color = v.color;
    out.uv = v.uv;
    out.material = v.material;
    return out;
}

fn texel(in: VertexOut) -> vec4<f32> {
    // Level 0 explicitly: allowed where the branch is not uniform.
    return textureSampleLevel(textures, texture_sampler, in.uv, i32(in.material.x + 0.5), 0.0);
}

// Opaque triangles (drawn first): no discard, so the depth test runs before shading and hidden
// surfaces cost nothing — on a software rasterizer that is most of the frame.
@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    var base = in.color;
    if (in.material.x >= 0.0) {
        base = base * texel(in).rgb;
    }
    return shade(in, base);
}

// Alpha-masked triangles (lashes, hair cards), drawn after the opaque ones.
@fragment
fn fs_masked(in: VertexOut) -> @location(0) vec4<f32> {
    let t = texel(in);
    if (t.a < in.material.y) {
        discard;
    }
    return shade(in, in.color * t.rgb);
}

fn shade(in: VertexOut, base: vec3<f32>) -> vec4<f32> {
    let n = normalize(in.normal);
    let key = max(dot(n, normalize(frame.light_dir.xyz)), 0.0);
    let fill = max(dot(n, normalize(vec3<f32>(0.6, 0.1, 0.8))), 0.0) * 0.25;
    let edge = 1.0 - max(n.z, 0.0);
    let rim = edge * edge * edge * 0.25;
    let linear = base * (0.22 + 0.75 * key + fill) + vec3<f32>(rim);
    // The target is UNORM holding display-referred values: encode gamma here.
    let display = pow(clamp(linear, vec3<f32>(0.0), vec3<f32>(1.0)), vec3<f32>(1.0 / 2.2));
    return vec4<f32>(display * frame.light_dir.w, 1.0);
}

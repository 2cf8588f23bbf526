// Pose pass: each vertex once per frame — active morph targets blended, then linear-blend
// skinning — into `posed` (position, normal), which the avatar pass draws. A compute pass runs
// every vertex exactly once and in parallel; done in the vertex shader it ran once per use of
// the vertex, on one thread on lavapipe. `frame.wgsl` comes in front of this file.

// The vertex buffer as floats: 21 per vertex (position 0..3, normal 3..6, colour 6..9, joints
// 9..13, weights 13..17, uv 17..19, material 19..21).
@group(0) @binding(6) var<storage, read> rest: array<f32>;
@group(0) @binding(5) var<storage, read_write> posed: array<vec4<f32>>;

const VERTEX_FLOATS: u32 = 21u;

fn rest_vec3(at: u32) -> vec3<f32> {
    return vec3<f32>(rest[at], rest[at + 1u], rest[at + 2u]);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let index = id.x;
    if (index >= arrayLength(&posed) / 2u) {
        return;
    }
    let base = index * VERTEX_FLOATS;
    var morphed = rest_vec3(base);
    let count = min(frame.morph_count.x, 32u);
    for (var k = 0u; k < count; k = k + 1u) {
        let m = frame.morphs[k];
        if (index >= m.y && index < m.y + m.z) {
            let at = (m.x + index - m.y) * 3u;
            morphed = morphed + bitcast<f32>(m.w) * vec3<f32>(deltas[at], deltas[at + 1u], deltas[at + 2u]);
        }
    }
    let skin = joints[u32(rest[base + 9u])] * rest[base + 13u]
        + joints[u32(rest[base + 10u])] * rest[base + 14u]
        + joints[u32(rest[base + 11u])] * rest[base + 15u]
        + joints[u32(rest[base + 12u])] * rest[base + 16u];
    posed[2u * index] = skin * vec4<f32>(morphed, 1.0);
    posed[2u * index + 1u] = vec4<f32>((skin * vec4<f32>(rest_vec3(base + 3u), 0.0)).xyz, 0.0);
}

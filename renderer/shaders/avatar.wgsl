// Avatar pass: morph targets blended per vertex, rigid head motion, simple key + fill + rim light.
// WebGPU conventions (clip-space y up); naga adjusts the coordinate space for Vulkan.

struct Frame {
    view_proj: mat4x4<f32>,
    head: mat4x4<f32>,
    // x: jaw open, y: lip spread, z: blink, w: breathing
    weights: vec4<f32>,
    // xyz: key light direction, w: picture level (1 normal … 0 black, for fades)
    light_dir: vec4<f32>,
    // x: smile (negative: corners down)
    expression: vec4<f32>,
};

@group(0) @binding(0) var<uniform> frame: Frame;

struct VertexIn {
    @location(0) position: vec3<f32>,
    @location(1) normal: vec3<f32>,
    @location(2) color: vec3<f32>,
    @location(3) jaw: vec3<f32>,
    @location(4) spread: vec3<f32>,
    @location(5) blink: vec3<f32>,
    @location(6) smile: vec3<f32>,
    @location(7) part: f32,
};

struct VertexOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) normal: vec3<f32>,
    @location(1) color: vec3<f32>,
};

@vertex
fn vs_main(v: VertexIn) -> VertexOut {
    let morphed = v.position
        + v.jaw * frame.weights.x
        + v.spread * frame.weights.y
        + v.blink * frame.weights.z
        + v.smile * frame.expression.x;
    var world = vec4<f32>(morphed, 1.0);
    var normal = v.normal;
    if (v.part > 0.5) {
        world = frame.head * world;
        normal = (frame.head * vec4<f32>(v.normal, 0.0)).xyz;
    } else {
        // The torso breathes: a slight rise and widening of the chest.
        world = vec4<f32>(world.x * (1.0 + 0.01 * frame.weights.w), world.y + 0.015 * frame.weights.w, world.z, 1.0);
    }
    var out: VertexOut;
    out.clip = frame.view_proj * world;
    out.normal = normal;
    out.color = v.color;
    return out;
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    let n = normalize(in.normal);
    let key = max(dot(n, normalize(frame.light_dir.xyz)), 0.0);
    let fill = max(dot(n, normalize(vec3<f32>(0.6, 0.1, 0.8))), 0.0) * 0.25;
    let rim = pow(1.0 - max(n.z, 0.0), 3.0) * 0.25;
    let linear = in.color * (0.22 + 0.75 * key + fill) + vec3<f32>(rim);
    // The target is UNORM holding display-referred values: encode gamma here.
    let display = pow(clamp(linear, vec3<f32>(0.0), vec3<f32>(1.0)), vec3<f32>(1.0 / 2.2));
    return vec4<f32>(display * frame.light_dir.w, 1.0);
}

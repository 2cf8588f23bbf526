// Overlay blend, then RGB → YCbCr, BT.709 limited range, into the outputs asked for:
// - I420 (bit 0 of `outputs`): one tightly packed host buffer, Y then U then V (the CPU encoder);
// - NV12 (bit 1): Y then interleaved UV, pitch = width, into an exportable buffer (NVENC).
// Each invocation converts an 8×2 block of pixels: two words of Y on each of the two rows, and
// four chroma samples (2×2 averages). Requires width % 8 == 0 and even height.

struct Dims {
    width: u32,
    height: u32,
    // 1: blend `overlay` over the picture
    overlay_on: u32,
    // picture level (1 normal … 0 black): the overlay fades with the picture
    level: f32,
    // bit 0: write I420 into `yuv`; bit 1: write NV12 into `nv12`
    outputs: u32,
};

@group(0) @binding(0) var frame_in: texture_2d<f32>;
@group(0) @binding(1) var<storage, read_write> yuv: array<u32>;
@group(0) @binding(2) var<uniform> dims: Dims;
// Premultiplied RGBA8 per pixel (subtitles, product card, labels), row-major.
@group(0) @binding(3) var<storage, read> overlay: array<u32>;
@group(0) @binding(4) var<storage, read_write> nv12: array<u32>;

fn pixel(x: u32, y: u32) -> vec3<f32> {
    let c = textureLoad(frame_in, vec2<i32>(i32(x), i32(y)), 0).rgb;
    if (dims.overlay_on == 0u) {
        return c;
    }
    let o = unpack4x8unorm(overlay[y * dims.width + x]) * dims.level;
    return o.rgb + (1.0 - o.a) * c;
}

fn luma(c: vec3<f32>) -> f32 {
    return 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b;
}

fn to_byte(v: f32) -> u32 {
    return u32(clamp(round(v), 0.0, 255.0));
}

fn luma_byte(c: vec3<f32>) -> u32 {
    return to_byte(16.0 + 219.0 * luma(c));
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let blocks_x = dims.width / 8u;
    if (id.x >= blocks_x || id.y >= dims.height / 2u) {
        return;
    }
    let x0 = id.x * 8u;
    let y0 = id.y * 2u;
    // Y words: `top`/`bottom` row, `a` pixels 0..4, `b` pixels 4..8 (scalars, not an array:
    // a dynamically indexed local array costs a software rasterizer a trip through memory).
    var top_a = 0u;
    var top_b = 0u;
    var bottom_a = 0u;
    var bottom_b = 0u;
    var u_word = 0u;
    var v_word = 0u;
    // NV12 chroma: U0 V0 U1 V1 | U2 V2 U3 V3
    var uv_a = 0u;
    var uv_b = 0u;
    for (var pair = 0u; pair < 4u; pair = pair + 1u) {
        let px = x0 + pair * 2u;
        let c00 = pixel(px, y0);
        let c01 = pixel(px + 1u, y0);
        let c10 = pixel(px, y0 + 1u);
        let c11 = pixel(px + 1u, y0 + 1u);
        let shift = (pair % 2u) * 16u;
        let top = (luma_byte(c00) | (luma_byte(c01) << 8u)) << shift;
        let bottom = (luma_byte(c10) | (luma_byte(c11) << 8u)) << shift;
        let avg = (c00 + c01 + c10 + c11) * 0.25;
        let l = luma(avg);
        let cb = to_byte(128.0 + 224.0 * (avg.b - l) / 1.8556);
        let cr = to_byte(128.0 + 224.0 * (avg.r - l) / 1.5748);
        let uv = (cb | (cr << 8u)) << shift;
        if (pair < 2u) {
            top_a = top_a | top;
            bottom_a = bottom_a | bottom;
            uv_a = uv_a | uv;
        } else {
            top_b = top_b | top;
            bottom_b = bottom_b | bottom;
            uv_b = uv_b | uv;
        }
        u_word = u_word | (cb << (pair * 8u));
        v_word = v_word | (cr << (pair * 8u));
    }
    let row_words = dims.width / 4u;
    let y_base = y0 * row_words + id.x * 2u;
    let luma_words = dims.width * dims.height / 4u;
    if ((dims.outputs & 1u) != 0u) {
        yuv[y_base] = top_a;
        yuv[y_base + 1u] = top_b;
        yuv[y_base + row_words] = bottom_a;
        yuv[y_base + row_words + 1u] = bottom_b;
        let chroma_row_words = dims.width / 8u;
        let c_index = id.y * chroma_row_words + id.x;
        yuv[luma_words + c_index] = u_word;
        yuv[luma_words + luma_words / 4u + c_index] = v_word;
    }
    if ((dims.outputs & 2u) != 0u) {
        nv12[y_base] = top_a;
        nv12[y_base + 1u] = top_b;
        nv12[y_base + row_words] = bottom_a;
        nv12[y_base + row_words + 1u] = bottom_b;
        // The UV plane has height/2 rows of `width` bytes: chroma row id.y, 8 bytes per block.
        let uv_index = luma_words + id.y * row_words + id.x * 2u;
        nv12[uv_index] = uv_a;
        nv12[uv_index + 1u] = uv_b;
    }
}

//! A glTF 2.0 binary writer: one buffer (the BIN chunk), buffer views and accessors appended
//! as data is added, then the JSON document and the chunks framed as the spec says (12-byte
//! header, JSON chunk padded with spaces, BIN chunk padded with zeros, 4-byte alignment).

use serde_json::{json, Value};

const ARRAY_BUFFER: u32 = 34962;
const ELEMENT_ARRAY_BUFFER: u32 = 34963;
const FLOAT: u32 = 5126;
const UNSIGNED_SHORT: u32 = 5123;
const UNSIGNED_INT: u32 = 5125;

/// Pads to the 4-byte alignment glTF wants for views and chunks.
fn pad(bytes: &mut Vec<u8>, with: u8) {
    while !bytes.len().is_multiple_of(4) {
        bytes.push(with);
    }
}

/// One triangle, nothing else: the least a renderer can draw. Tests and fuzz seeds start here.
pub fn triangle() -> Vec<u8> {
    let mut b = Builder::default();
    let positions = b.floats(&[[-0.2f32, -0.2, 0.0], [0.2, -0.2, 0.0], [0.0, 0.2, 0.0]], true);
    let indices = b.indices(&[0, 1, 2]);
    b.finish(json!({
        "asset": { "version": "2.0" },
        "scene": 0,
        "scenes": [{ "nodes": [0] }],
        "nodes": [{ "mesh": 0 }],
        "meshes": [{ "primitives": [{ "attributes": { "POSITION": positions }, "indices": indices }] }],
    }))
}

#[derive(Default, Clone)]
pub struct Builder {
    bin: Vec<u8>,
    views: Vec<Value>,
    accessors: Vec<Value>,
}

fn min_max<const N: usize>(data: &[[f32; N]]) -> (Vec<f32>, Vec<f32>) {
    let mut min = vec![f32::INFINITY; N];
    let mut max = vec![f32::NEG_INFINITY; N];
    for v in data {
        for k in 0..N {
            min[k] = min[k].min(v[k]);
            max[k] = max[k].max(v[k]);
        }
    }
    (min, max)
}

fn type_name(n: usize) -> &'static str {
    match n {
        1 => "SCALAR",
        2 => "VEC2",
        3 => "VEC3",
        4 => "VEC4",
        16 => "MAT4",
        _ => unreachable!("no glTF type has {n} components"),
    }
}

impl Builder {
    fn view(&mut self, bytes: &[u8], target: Option<u32>) -> usize {
        pad(&mut self.bin, 0);
        let mut view = json!({ "buffer": 0, "byteOffset": self.bin.len(), "byteLength": bytes.len() });
        if let Some(t) = target {
            view["target"] = t.into();
        }
        self.bin.extend_from_slice(bytes);
        self.views.push(view);
        self.views.len() - 1
    }

    fn accessor(&mut self, accessor: Value) -> usize {
        self.accessors.push(accessor);
        self.accessors.len() - 1
    }

    /// Float vectors (positions, normals, UVs, weights); `bounds` adds min/max (POSITION needs it).
    pub fn floats<const N: usize>(&mut self, data: &[[f32; N]], bounds: bool) -> usize {
        let bytes: Vec<u8> = data.iter().flatten().flat_map(|f| f.to_le_bytes()).collect();
        let view = self.view(&bytes, Some(ARRAY_BUFFER));
        let mut a = json!({ "bufferView": view, "componentType": FLOAT, "count": data.len(), "type": type_name(N) });
        if bounds {
            let (min, max) = min_max(data);
            a["min"] = json!(min);
            a["max"] = json!(max);
        }
        self.accessor(a)
    }

    /// Joint indices, four per vertex.
    pub fn joints(&mut self, data: &[[u16; 4]]) -> usize {
        let bytes: Vec<u8> = data.iter().flatten().flat_map(|j| j.to_le_bytes()).collect();
        let view = self.view(&bytes, Some(ARRAY_BUFFER));
        self.accessor(
            json!({ "bufferView": view, "componentType": UNSIGNED_SHORT, "count": data.len(), "type": "VEC4" }),
        )
    }

    /// Triangle indices.
    pub fn indices(&mut self, data: &[u32]) -> usize {
        let bytes: Vec<u8> = data.iter().flat_map(|i| i.to_le_bytes()).collect();
        let view = self.view(&bytes, Some(ELEMENT_ARRAY_BUFFER));
        self.accessor(
            json!({ "bufferView": view, "componentType": UNSIGNED_INT, "count": data.len(), "type": "SCALAR" }),
        )
    }

    /// Column-major 4×4 matrices (inverse bind matrices).
    pub fn matrices(&mut self, data: &[[f32; 16]]) -> usize {
        let bytes: Vec<u8> = data.iter().flatten().flat_map(|f| f.to_le_bytes()).collect();
        let view = self.view(&bytes, None);
        self.accessor(json!({ "bufferView": view, "componentType": FLOAT, "count": data.len(), "type": "MAT4" }))
    }

    /// A buffer view of `count` zero vectors, the base that sparse accessors of that length
    /// share (readers such as the `gltf` crate want a buffer view even where the spec allows none).
    pub fn zero_vec3s(&mut self, count: usize) -> usize {
        let view = self.view(&vec![0u8; count * 12], Some(ARRAY_BUFFER));
        // Shared by several accessors: the spec then wants the stride spelled out.
        self.views[view]["byteStride"] = 12.into();
        view
    }

    /// Vectors that are zero (`zeros`, from [`Self::zero_vec3s`]) except at `entries` (sorted by
    /// index): a sparse accessor, so a morph target stores only the vertices it moves.
    pub fn sparse_vec3(&mut self, zeros: usize, count: usize, entries: &[(u32, [f32; 3])]) -> usize {
        let mut values: Vec<[f32; 3]> = entries.iter().map(|e| e.1).collect();
        if values.len() < count {
            values.push([0.0; 3]); // the untouched vertices count for min/max
        }
        let (min, max) = min_max(&values);
        let mut a = json!({
            "bufferView": zeros, "componentType": FLOAT, "count": count, "type": "VEC3", "min": min, "max": max,
        });
        if !entries.is_empty() {
            let idx: Vec<u8> = entries.iter().flat_map(|e| e.0.to_le_bytes()).collect();
            let val: Vec<u8> = entries.iter().flat_map(|e| e.1).flat_map(|f| f.to_le_bytes()).collect();
            let (iv, vv) = (self.view(&idx, None), self.view(&val, None));
            a["sparse"] = json!({
                "count": entries.len(),
                "indices": { "bufferView": iv, "componentType": UNSIGNED_INT },
                "values": { "bufferView": vv },
            });
        }
        self.accessor(a)
    }

    /// Embeds an image (PNG or JPEG bytes) and returns its buffer view.
    pub fn image(&mut self, bytes: &[u8]) -> usize {
        self.view(bytes, None)
    }

    /// The `.glb` bytes: `document` gets the buffer, views and accessors added.
    pub fn finish(self, mut document: Value) -> Vec<u8> {
        let mut bin = self.bin;
        pad(&mut bin, 0);
        document["buffers"] = json!([{ "byteLength": bin.len() }]);
        document["bufferViews"] = Value::Array(self.views);
        document["accessors"] = Value::Array(self.accessors);
        let mut text = document.to_string().into_bytes();
        pad(&mut text, b' ');
        let total = 12 + 8 + text.len() + 8 + bin.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(b"glTF");
        out.extend_from_slice(&2u32.to_le_bytes());
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(b"JSON");
        out.extend_from_slice(&text);
        out.extend_from_slice(&(bin.len() as u32).to_le_bytes());
        out.extend_from_slice(b"BIN\0");
        out.extend_from_slice(&bin);
        out
    }
}

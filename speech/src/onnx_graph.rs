//! Just enough of the ONNX protobuf wire format to expose an inner tensor as a graph output.
//!
//! Piper's exported VITS graph outputs audio only, but its one `Ceil` node computes how many
//! 256-sample frames each input phoneme lasts. Appending that node's output to the graph's
//! outputs gives exact phoneme timing from the same run, with no ONNX library: a model is a
//! `ModelProto` whose field 7 is the `GraphProto`; a graph's field 1 repeats `NodeProto`
//! (field 2 outputs, field 4 op type) and field 12 repeats its outputs (`ValueInfoProto`, field
//! 1 the name). Everything else is copied byte for byte.

use std::ops::Range;

const MODEL_GRAPH: u64 = 7;
const GRAPH_NODE: u64 = 1;
const GRAPH_OUTPUT: u64 = 12;
const NODE_OUTPUT: u64 = 2;
const NODE_OP_TYPE: u64 = 4;
const VALUE_INFO_NAME: u64 = 1;
const LENGTH_DELIMITED: u64 = 2;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GraphError {
    #[error("not an ONNX model: {0}")]
    Malformed(&'static str),
    #[error("the graph has {0} `{1}` nodes; exactly one was expected")]
    NodeCount(usize, String),
}

/// One field of a message: its number and, for length-delimited fields, the payload's range.
struct Field {
    number: u64,
    /// The whole field (tag included).
    whole: Range<usize>,
    /// The payload of a length-delimited field.
    payload: Option<Range<usize>>,
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, GraphError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or(GraphError::Malformed("truncated varint"))?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(GraphError::Malformed("varint longer than 10 bytes"))
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes_field(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    put_varint(out, number << 3 | LENGTH_DELIMITED);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// The fields of the message in `bytes`, in order.
fn fields(bytes: &[u8]) -> Result<Vec<Field>, GraphError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let tag = varint(bytes, &mut at)?;
        let payload = match tag & 7 {
            0 => {
                varint(bytes, &mut at)?;
                None
            }
            1 => {
                at += 8;
                None
            }
            2 => {
                let len = usize::try_from(varint(bytes, &mut at)?).map_err(|_| GraphError::Malformed("huge field"))?;
                let end = at.checked_add(len).ok_or(GraphError::Malformed("huge field"))?;
                let range = at..end;
                at = end;
                Some(range)
            }
            5 => {
                at += 4;
                None
            }
            _ => return Err(GraphError::Malformed("unknown wire type")),
        };
        if at > bytes.len() {
            return Err(GraphError::Malformed("field runs past the end"));
        }
        out.push(Field { number: tag >> 3, whole: start..at, payload });
    }
    Ok(out)
}

fn strings(bytes: &[u8], number: u64) -> Result<Vec<String>, GraphError> {
    Ok(fields(bytes)?
        .into_iter()
        .filter(|f| f.number == number)
        .filter_map(|f| f.payload)
        .map(|r| String::from_utf8_lossy(&bytes[r]).into_owned())
        .collect())
}

/// The model with the output of its single `op_type` node appended to the graph outputs, and
/// that output's name. Fails if the graph has no such node or several.
pub fn expose_single_node_output(model: &[u8], op_type: &str) -> Result<(Vec<u8>, String), GraphError> {
    let top = fields(model)?;
    let graph_field =
        top.iter().find(|f| f.number == MODEL_GRAPH && f.payload.is_some()).ok_or(GraphError::Malformed("no graph"))?;
    let graph_range = graph_field.payload.clone().ok_or(GraphError::Malformed("no graph"))?;
    let graph = &model[graph_range];
    let mut found = Vec::new();
    for node in fields(graph)?.into_iter().filter(|f| f.number == GRAPH_NODE) {
        let Some(range) = node.payload else { continue };
        let node = &graph[range];
        if strings(node, NODE_OP_TYPE)?.iter().any(|t| t == op_type) {
            found.push(strings(node, NODE_OUTPUT)?.into_iter().next().unwrap_or_default());
        }
    }
    let [name] = found.as_slice() else {
        return Err(GraphError::NodeCount(found.len(), op_type.to_string()));
    };
    let mut value_info = Vec::new();
    put_bytes_field(&mut value_info, VALUE_INFO_NAME, name.as_bytes());
    let mut new_graph = graph.to_vec();
    put_bytes_field(&mut new_graph, GRAPH_OUTPUT, &value_info);

    let mut out = Vec::with_capacity(model.len() + 64);
    for field in &top {
        if std::ptr::eq(field, graph_field) {
            put_bytes_field(&mut out, MODEL_GRAPH, &new_graph);
        } else {
            out.extend_from_slice(&model[field.whole.clone()]);
        }
    }
    Ok((out, name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(fields: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, payload) in fields {
            put_bytes_field(&mut out, *n, payload);
        }
        out
    }

    fn node(op: &str, output: &str) -> Vec<u8> {
        message(&[
            (1, b"x".to_vec()),
            (NODE_OUTPUT, output.as_bytes().to_vec()),
            (NODE_OP_TYPE, op.as_bytes().to_vec()),
        ])
    }

    fn model(nodes: &[Vec<u8>]) -> Vec<u8> {
        let mut graph: Vec<(u64, Vec<u8>)> = nodes.iter().map(|n| (GRAPH_NODE, n.clone())).collect();
        graph.push((GRAPH_OUTPUT, message(&[(VALUE_INFO_NAME, b"output".to_vec())])));
        let mut m = vec![0x08, 0x07]; // ir_version = 7 (a varint field before the graph)
        m.extend(message(&[(MODEL_GRAPH, message(&graph))]));
        m.extend(message(&[(8, b"opset".to_vec())])); // a field after it
        m
    }

    #[test]
    fn the_single_node_output_becomes_the_last_graph_output() {
        let original = model(&[node("Exp", "/Exp_output_0"), node("Ceil", "/Ceil_output_0")]);
        let (edited, name) = expose_single_node_output(&original, "Ceil").unwrap();
        assert_eq!(name, "/Ceil_output_0");
        let top = fields(&edited).unwrap();
        assert_eq!(top.iter().map(|f| f.number).collect::<Vec<_>>(), vec![1, MODEL_GRAPH, 8]);
        let graph = &edited[top[1].payload.clone().unwrap()];
        let outputs: Vec<String> = fields(graph)
            .unwrap()
            .into_iter()
            .filter(|f| f.number == GRAPH_OUTPUT)
            .map(|f| strings(&graph[f.payload.unwrap()], VALUE_INFO_NAME).unwrap().remove(0))
            .collect();
        assert_eq!(outputs, vec!["output", "/Ceil_output_0"]);
        // Nothing else changed: the fields around the graph are byte-identical.
        assert_eq!(&edited[..2], &original[..2]);
        assert!(edited.ends_with(&message(&[(8, b"opset".to_vec())])));
    }

    #[test]
    fn missing_duplicate_and_damaged_input_are_errors() {
        let none = model(&[node("Exp", "a")]);
        assert_eq!(expose_single_node_output(&none, "Ceil").unwrap_err(), GraphError::NodeCount(0, "Ceil".into()));
        let two = model(&[node("Ceil", "a"), node("Ceil", "b")]);
        assert_eq!(expose_single_node_output(&two, "Ceil").unwrap_err(), GraphError::NodeCount(2, "Ceil".into()));
        let good = model(&[node("Ceil", "a")]);
        for cut in 0..good.len() {
            // Truncated models must fail cleanly (or, where the cut falls between fields, not
            // find a graph) — never panic.
            let _ = expose_single_node_output(&good[..cut], "Ceil");
        }
        assert!(expose_single_node_output(&[0xff; 12], "Ceil").is_err());
    }
}

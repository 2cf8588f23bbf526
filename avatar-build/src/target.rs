//! MakeHuman morph targets: one `index dx dy dz` line per moved vertex (`#` comments).

use std::path::Path;

use crate::BuildError;

/// Offsets of the vertices a target moves, in the base mesh's units.
pub type Offsets = Vec<(u32, [f32; 3])>;

pub fn parse(text: &str, vertex_count: usize, path: &Path) -> Result<Offsets, BuildError> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let bad = |m: String| BuildError::parse(path, n + 1, m);
        let fields: Vec<&str> = raw.split_whitespace().collect();
        let [i, x, y, z] = fields[..] else { return Err(bad(format!("expected `index dx dy dz`, got `{raw}`"))) };
        let i: u32 = i.parse().map_err(|_| bad(format!("bad vertex index `{i}`")))?;
        if i as usize >= vertex_count {
            return Err(bad(format!("vertex {i} is not in the mesh ({vertex_count} vertices)")));
        }
        let mut d = [0.0f32; 3];
        for (slot, f) in d.iter_mut().zip([x, y, z]) {
            *slot = f.parse().ok().filter(|v: &f32| v.is_finite()).ok_or_else(|| bad(format!("bad offset `{f}`")))?;
        }
        out.push((i, d));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_offsets_and_refuses_strangers() {
        let t = parse("# jaw\n35 0 -.001 0\n\n42 .5 0 -1\n", 100, Path::new("j.target")).unwrap();
        assert_eq!(t, vec![(35, [0.0, -0.001, 0.0]), (42, [0.5, 0.0, -1.0])]);
        let e = parse("500 0 0 0\n", 100, Path::new("j.target")).unwrap_err().to_string();
        assert_eq!(e, "j.target:1: vertex 500 is not in the mesh (100 vertices)");
        assert!(parse("1 0 0\n", 100, Path::new("j.target")).is_err());
    }
}

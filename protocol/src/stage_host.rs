//! What the stage takes from the installed configuration file itself, never from the wire:
//! where its control socket is and which shared libraries it loads. A peer on the channel can
//! therefore never make the stage load code of its choosing, and the socket path has one
//! source — `[stage] socket` — for the stage, the control plane, `emcee run` and the units.
//!
//! The control plane checks the same keys with line and column (`emcee check`); the stage
//! reads only these and trusts the rest to that check.

use std::path::{Path, PathBuf};

/// Where the stage listens unless `[stage] socket` says otherwise: its systemd unit's runtime
/// directory.
pub const DEFAULT_STAGE_SOCKET: &str = "/run/emcee-stage/control.sock";

/// The longest path a Unix socket address holds (`sun_path` less its terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The stage's own settings from the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageHost {
    /// The control socket (`[stage] socket`, relative to the file).
    pub socket: PathBuf,
    /// The ONNX Runtime library the Piper voices run on (`[speech] onnxruntime`).
    pub onnxruntime: Option<PathBuf>,
    /// The espeak-ng build directory (`[speech] espeak`).
    pub espeak: Option<PathBuf>,
}

impl Default for StageHost {
    fn default() -> Self {
        Self { socket: PathBuf::from(DEFAULT_STAGE_SOCKET), onnxruntime: None, espeak: None }
    }
}

impl StageHost {
    /// Reads the stage's keys of the configuration file at `path`.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Reads the stage's keys of configuration text; relative paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let doc = toml_edit::ImDocument::parse(text).map_err(|e| format!("not valid TOML: {}", e.message().trim()))?;
        let path_of = |section: &str, key: &str| -> Result<Option<PathBuf>, String> {
            match doc.get(section).and_then(|s| s.get(key)) {
                None => Ok(None),
                Some(item) => match item.as_str() {
                    Some(s) => Ok(Some(base.join(s))),
                    None => Err(format!("[{section}] {key} must be a string")),
                },
            }
        };
        let socket = path_of("stage", "socket")?.unwrap_or_else(|| PathBuf::from(DEFAULT_STAGE_SOCKET));
        check_socket_path(&socket)?;
        Ok(Self { socket, onnxruntime: path_of("speech", "onnxruntime")?, espeak: path_of("speech", "espeak")? })
    }
}

/// A socket path must fit a socket address.
pub fn check_socket_path(path: &Path) -> Result<(), String> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "[stage] socket: {} is {len} bytes long; a Unix socket path holds at most {MAX_SOCKET_PATH}",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_socket_and_libraries_relative_to_the_file() {
        let host = StageHost::parse(
            "[stage]\nsocket = \"run/stage.sock\"\n[speech]\nonnxruntime = \"lib/ort.so\"\n",
            Path::new("/etc/emcee"),
        )
        .unwrap();
        assert_eq!(host.socket, Path::new("/etc/emcee/run/stage.sock"));
        assert_eq!(host.onnxruntime.as_deref(), Some(Path::new("/etc/emcee/lib/ort.so")));
        assert_eq!(host.espeak, None);
        assert_eq!(StageHost::parse("", Path::new("/x")).unwrap(), StageHost::default());
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(StageHost::parse("[stage]\nsocket = 7\n", Path::new("/")).unwrap_err().contains("must be a string"));
        let long = format!("[stage]\nsocket = \"/{}\"\n", "a".repeat(120));
        assert!(StageHost::parse(&long, Path::new("/")).unwrap_err().contains("at most 107"));
        assert!(StageHost::parse("[stage", Path::new("/")).unwrap_err().contains("not valid TOML"));
    }
}

//! Secrets kept out of the configuration file: stream keys (and the API token). A secret is
//! named in the TOML (`[[output]] stream_key = "youtube"`) and read from a systemd credential
//! of that name (`LoadCredential=`, `$CREDENTIALS_DIRECTORY`) or else from a file of that name
//! in the secrets directory (`[secrets] dir`, `/etc/emcee/secrets` by default).
//!
//! A secret file must be private: readable by its owner only (0600 or 0400). One that the
//! group or the world can read is refused — a key that may already have leaked is not used
//! without a word — and the error says how to fix it. New secrets are created 0600.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    #[error("`{0}` is not a secret's name (letters, digits, `-`, `_` and `.`, not starting with `.`)")]
    BadName(String),
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path} is readable by others (mode {mode:04o}): `chmod 600 {path}`, and replace the secret if others may have read it")]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error("{0} is empty")]
    Empty(PathBuf),
}

/// Where named secrets are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secrets {
    /// systemd's credentials directory, when the unit loads credentials.
    pub credentials: Option<PathBuf>,
    /// `[secrets] dir`.
    pub dir: PathBuf,
}

impl Secrets {
    /// Secrets in `dir`, and in systemd's credentials when this process has any.
    pub fn new(dir: PathBuf) -> Self {
        Self { credentials: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from), dir }
    }

    /// The file secret `name` is read from: the credential if there is one, else the file.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, SecretError> {
        let good = !name.is_empty()
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !good {
            return Err(SecretError::BadName(name.to_string()));
        }
        let credential = self.credentials.as_ref().map(|d| d.join(name)).filter(|p| p.exists());
        Ok(credential.unwrap_or_else(|| self.dir.join(name)))
    }

    /// Secret `name`, trimmed.
    pub fn read(&self, name: &str) -> Result<String, SecretError> {
        read_private(&self.path_of(name)?)
    }
}

/// The trimmed contents of `path`, refused when the file is readable by others or empty.
pub fn read_private(path: &Path) -> Result<String, SecretError> {
    let unreadable = |e: std::io::Error| SecretError::Unreadable { path: path.to_path_buf(), reason: e.to_string() };
    let mode = std::fs::metadata(path).map_err(unreadable)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(SecretError::NotPrivate { path: path.to_path_buf(), mode: mode & 0o7777 });
    }
    let text = crate::files::read_regular(path).map_err(unreadable)?.trim().to_string();
    if text.is_empty() {
        return Err(SecretError::Empty(path.to_path_buf()));
    }
    Ok(text)
}

/// Writes a new secret file, 0600 from its creation (never briefly readable by others); fails
/// if it exists.
pub fn create_private(path: &Path, secret: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    writeln!(file, "{secret}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_by_name_and_refused_when_others_can_read_them() {
        let dir = std::env::temp_dir().join(format!("emcee-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let secrets = Secrets { credentials: None, dir: dir.clone() };
        create_private(&dir.join("youtube"), "abcd-efgh").unwrap();
        assert_eq!(secrets.read("youtube").unwrap(), "abcd-efgh");
        assert!(create_private(&dir.join("youtube"), "again").is_err(), "never overwritten");
        std::fs::set_permissions(dir.join("youtube"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = secrets.read("youtube").unwrap_err();
        assert!(matches!(refused, SecretError::NotPrivate { mode: 0o644, .. }), "{refused}");
        assert!(refused.to_string().contains("chmod 600"));
        std::fs::set_permissions(dir.join("youtube"), std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(secrets.read("youtube").unwrap(), "abcd-efgh", "read-only for the owner is fine");
        for bad in ["", "../etc/shadow", ".hidden", "a/b"] {
            assert_eq!(secrets.read(bad), Err(SecretError::BadName(bad.to_string())));
        }
        assert!(matches!(secrets.read("twitch"), Err(SecretError::Unreadable { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_credential_wins_over_the_file() {
        let dir = std::env::temp_dir().join(format!("emcee-credentials-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        create_private(&dir.join("files/key"), "from-the-file").unwrap();
        create_private(&dir.join("credentials/key"), "from-systemd").unwrap();
        let secrets = Secrets { credentials: Some(dir.join("credentials")), dir: dir.join("files") };
        assert_eq!(secrets.read("key").unwrap(), "from-systemd");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

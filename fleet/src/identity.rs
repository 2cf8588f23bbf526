//! Who a device is: an Ed25519 key pair it makes itself at enrolment, whose private half never
//! leaves its file (mode 0600, in the state directory). On every connection the cloud sends a
//! fresh random challenge and the device signs it; the cloud checks the signature with the
//! public key it registered at enrolment.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// What a signature covers besides the challenge: a signature made for anything else is no
/// proof here.
const DOMAIN: &[u8] = b"emcee-fleet-v1 challenge\0";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("device key {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("device key {0}: not an Ed25519 key (PKCS#8)")]
    Invalid(PathBuf),
    #[error("device key {0}: readable by others; it must be mode 0600")]
    Exposed(PathBuf),
    #[error("no randomness from the system")]
    Random,
}

/// The device's key pair.
pub struct DeviceKey {
    pair: Ed25519KeyPair,
}

impl DeviceKey {
    /// Reads the key at `path`, refusing one others may read.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| IdentityError::Io { path: path.into(), source };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(IdentityError::Exposed(path.into()));
        }
        let pkcs8 = std::fs::read(path).map_err(io)?;
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| IdentityError::Invalid(path.into()))?;
        Ok(Self { pair })
    }

    /// Makes a new key and writes it to `path` (mode 0600, never over an existing file).
    pub fn create(path: &Path) -> Result<Self, IdentityError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| IdentityError::Random)?;
        let io = |source| IdentityError::Io { path: path.into(), source };
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
        file.write_all(pkcs8.as_ref()).and_then(|_| file.sync_all()).map_err(io)?;
        Self::load(path)
    }

    pub fn public_key_hex(&self) -> String {
        hex(self.pair.public_key().as_ref())
    }

    /// The proof for the cloud's challenge `nonce`.
    pub fn sign(&self, nonce: &str) -> String {
        hex(self.pair.sign(&[DOMAIN, nonce.as_bytes()].concat()).as_ref())
    }
}

/// Whether `signature` (hex) is the key `public_key` (hex)'s proof for `nonce`.
pub fn verify(public_key: &str, nonce: &str, signature: &str) -> bool {
    let (Some(key), Some(signature)) = (unhex(public_key), unhex(signature)) else { return false };
    UnparsedPublicKey::new(&ED25519, key).verify(&[DOMAIN, nonce.as_bytes()].concat(), &signature).is_ok()
}

/// `bytes` random bytes as hex: challenges, one-time codes, device ids.
pub fn random_hex(bytes: usize) -> Result<String, IdentityError> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new().fill(&mut buf).map_err(|_| IdentityError::Random)?;
    Ok(hex(&buf))
}

/// SHA-256 of `text`, hex: one-time codes are stored only as this.
pub fn digest_hex(text: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_for_its_key_and_challenge_only() {
        let dir = std::env::temp_dir().join(format!("emcee-fleet-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = DeviceKey::create(&dir.join("device.key")).unwrap();
        let other = DeviceKey::create(&dir.join("other.key")).unwrap();
        assert!(DeviceKey::create(&dir.join("device.key")).is_err(), "never over an existing key");
        let proof = key.sign("abc123");
        assert!(verify(&key.public_key_hex(), "abc123", &proof));
        assert!(!verify(&key.public_key_hex(), "abc124", &proof), "another challenge");
        assert!(!verify(&other.public_key_hex(), "abc123", &proof), "another key");
        assert!(!verify(&key.public_key_hex(), "abc123", "zz"), "not hex");
        let again = DeviceKey::load(&dir.join("device.key")).unwrap();
        assert_eq!(again.public_key_hex(), key.public_key_hex());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("device.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(DeviceKey::load(&dir.join("device.key")), Err(IdentityError::Exposed(_))));
        assert_eq!(digest_hex("abc").len(), 64);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

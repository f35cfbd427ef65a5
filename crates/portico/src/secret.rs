//! The site's secret key, and the keys derived from it.
//!
//! One random 64-byte secret signs everything a site hands out (cookie signatures, CSRF token keys).
//! Each use gets its own key derived with HMAC-SHA512 under a label, so a value signed for one
//! purpose is never valid for another. [`SecretKey::load_or_create`] keeps the secret in a file
//! readable by its owner only.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha512;

/// The site's secret key.
///
/// ```
/// use portico::secret::SecretKey;
/// let key = SecretKey::generate();
/// assert_ne!(key.derive("cookies"), key.derive("csrf"));
/// ```
#[derive(Clone)]
pub struct SecretKey([u8; 64]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Why a secret key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read or written.
    #[error("cannot use the secret key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The text is not a key.
    #[error("the secret key must be at least 32 bytes written as hex (64 or more hex digits)")]
    Format,
}

impl SecretKey {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut b = [0u8; 64];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Self(b)
    }

    /// Parses a hex key of at least 32 bytes; longer or shorter keys are stretched to 64 bytes.
    /// Surrounding whitespace (a file's final newline) is ignored.
    ///
    /// # Errors
    ///
    /// Returns [`SecretError::Format`] when `text` is not hex or holds fewer than 32 bytes: the
    /// site must not start with a key that short.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::secret::{SecretError, SecretKey};
    /// let key = SecretKey::from_hex(&"ab".repeat(32))?;
    /// # let _ = key;
    /// assert!(matches!(SecretKey::from_hex("abcd"), Err(SecretError::Format)));
    /// # Ok::<(), SecretError>(())
    /// ```
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        let raw = hex::decode(text.trim()).map_err(|_| SecretError::Format)?;
        if raw.len() < 32 {
            return Err(SecretError::Format);
        }
        if let Ok(exact) = <[u8; 64]>::try_from(raw.as_slice()) {
            return Ok(Self(exact));
        }
        Ok(Self(hmac_sha512(&raw, b"portico.secret.stretch")))
    }

    /// Reads the key from `path`, or creates it there (mode 0600) when the file does not exist.
    ///
    /// # Errors
    ///
    /// Returns [`SecretError::Io`] when the file cannot be read, or cannot be created or written
    /// (its directory is missing or read-only, say), and [`SecretError::Format`] when the file
    /// exists but does not hold a key (see [`SecretKey::from_hex`]); an existing file is never
    /// overwritten.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::secret::SecretKey;
    /// let path = std::env::temp_dir().join(format!("portico-doc-{}.key", std::process::id()));
    /// let created = SecretKey::load_or_create(&path)?;
    /// let loaded = SecretKey::load_or_create(&path)?;
    /// assert_eq!(created.derive("cookies"), loaded.derive("cookies"));
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), portico::secret::SecretError>(())
    /// ```
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let io = |source| SecretError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_hex(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut f = options.open(path).map_err(io)?;
                f.write_all(hex::encode(key.0).as_bytes()).map_err(io)?;
                f.write_all(b"\n").map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A 64-byte key for one purpose, named by `label`.
    pub fn derive(&self, label: &str) -> [u8; 64] {
        hmac_sha512(&self.0, label.as_bytes())
    }
}

fn hmac_sha512(key: &[u8], data: &[u8]) -> [u8; 64] {
    // HMAC accepts keys of any length, so new_from_slice cannot fail here.
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_key_file_is_private_and_reloads_the_same() {
        let dir = std::env::temp_dir().join(format!("portico-secret-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret_key");
        let a = SecretKey::load_or_create(&path).unwrap();
        let b = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(a.derive("x"), b.derive("x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn short_or_garbage_keys_are_refused() {
        assert!(SecretKey::from_hex("abcd").is_err());
        assert!(SecretKey::from_hex(&"zz".repeat(40)).is_err());
        assert!(SecretKey::from_hex(&"ab".repeat(32)).is_ok());
    }
}

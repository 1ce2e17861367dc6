//! Secrets at rest in memory: broker passwords are kept only as AES-256-GCM
//! ciphertext under a per-process random key, and plaintext lives in
//! zeroize-on-drop buffers for exactly as long as a (re)connect needs it.
//!
//! Nothing here implements `Display`, and every `Debug` is redacted, so a secret
//! cannot reach a log line or an error message by accident.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use serde::{Deserialize, Deserializer};
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// A string that must never be printed: tool arguments marked `writeOnly` in
/// the schema (passwords) deserialize into this.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps a plaintext secret; the caller's copy should be dropped soon after.
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    /// Borrows the plaintext, for encryption or for the CONNECT packet only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString::new)
    }
}

/// Why a sealed secret could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretError {
    /// The ciphertext or its tag was altered, or it was sealed by another vault.
    #[error("sealed secret failed authentication (tampered or foreign)")]
    Tampered,
    /// The operating system could not provide random bytes.
    #[error("no randomness available from the operating system")]
    NoRandomness,
}

/// The per-process key. Created once at start; it never leaves memory.
pub struct Vault {
    /// The AES-256-GCM cipher keyed with 32 random bytes; the aes crate zeroizes
    /// its round keys on drop (feature `zeroize`).
    cipher: Aes256Gcm,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault(<key redacted>)")
    }
}

/// A secret encrypted by a [`Vault`]: 96-bit random nonce plus ciphertext and tag.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Unique per sealing; GCM breaks if a nonce repeats under one key.
    nonce: [u8; 12],
    /// Ciphertext followed by the 16-byte tag.
    ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.ciphertext.len())
    }
}

impl Vault {
    /// A vault with a fresh random key.
    pub fn new() -> Result<Self, SecretError> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).map_err(|_| SecretError::NoRandomness)?;
        let key = Key::<Aes256Gcm>::from(*key);
        Ok(Self {
            cipher: Aes256Gcm::new(&key),
        })
    }

    /// Encrypts `plain`; the result is safe to keep for the session's lifetime.
    pub fn seal(&self, plain: &str) -> Result<Sealed, SecretError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|_| SecretError::NoRandomness)?;
        let ciphertext = self
            .cipher
            .encrypt(&Nonce::from(nonce), plain.as_bytes())
            .map_err(|_| SecretError::Tampered)?;
        Ok(Sealed { nonce, ciphertext })
    }

    /// Decrypts a sealed secret into a buffer that is wiped when dropped.
    pub fn open(&self, sealed: &Sealed) -> Result<SecretString, SecretError> {
        let mut plain = self
            .cipher
            .decrypt(&Nonce::from(sealed.nonce), sealed.ciphertext.as_slice())
            .map_err(|_| SecretError::Tampered)?;
        let s = match String::from_utf8(std::mem::take(&mut plain)) {
            Ok(s) => s,
            Err(e) => {
                let mut bytes = e.into_bytes();
                bytes.zeroize();
                return Err(SecretError::Tampered);
            }
        };
        Ok(SecretString::new(s))
    }
}

/// Random identifiers with at least 128 bits of entropy (session ids, client ids).
pub fn random_hex(bytes: usize) -> Result<String, SecretError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|_| SecretError::NoRandomness)?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = Vault::new().unwrap();
        let s = v.seal("hunter2-secret").unwrap();
        assert_eq!(v.open(&s).unwrap().expose(), "hunter2-secret");
        assert!(!s.ciphertext.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn nonces_differ() {
        let v = Vault::new().unwrap();
        assert_ne!(v.seal("x").unwrap(), v.seal("x").unwrap());
    }

    #[test]
    fn tampering_detected() {
        let v = Vault::new().unwrap();
        let mut s = v.seal("secret").unwrap();
        s.ciphertext[0] ^= 1;
        assert_eq!(v.open(&s), Err(SecretError::Tampered));
        let mut s = v.seal("secret").unwrap();
        s.nonce[0] ^= 1;
        assert_eq!(v.open(&s), Err(SecretError::Tampered));
        let mut s = v.seal("secret").unwrap();
        let last = s.ciphertext.len() - 1;
        s.ciphertext[last] ^= 0x80;
        assert_eq!(v.open(&s), Err(SecretError::Tampered));
    }

    #[test]
    fn foreign_vault_cannot_open() {
        let a = Vault::new().unwrap();
        let b = Vault::new().unwrap();
        assert_eq!(
            b.open(&a.seal("secret").unwrap()),
            Err(SecretError::Tampered)
        );
    }

    #[test]
    fn debug_is_redacted() {
        let v = Vault::new().unwrap();
        let s = SecretString::new("topsecret".into());
        let sealed = v.seal("topsecret").unwrap();
        for text in [format!("{s:?}"), format!("{v:?}"), format!("{sealed:?}")] {
            assert!(!text.contains("topsecret"), "{text}");
        }
    }

    #[test]
    fn ids_are_long_and_distinct() {
        let a = random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_hex(16).unwrap());
    }
}

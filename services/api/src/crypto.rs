//! Secrets at rest: tenant tokens are stored as SHA-256 hashes (they are random, so a fast
//! hash is enough and only a bearer ever needs checking); app key secrets are sealed with
//! XChaCha20-Poly1305 under the master key, because edges need the secret itself to verify
//! HS256 client tokens. The key id is the associated data, so a sealed secret cannot be
//! moved to another key's row.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

const NONCE_LEN: usize = 24;

/// The operator's master key.
#[derive(Clone)]
pub struct MasterKey(XChaCha20Poly1305);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the master key must be 32 bytes, base64-encoded")]
    BadMasterKey,
    #[error("a sealed secret could not be opened (wrong master key, or tampered data)")]
    Unseal,
}

impl MasterKey {
    /// Parses a base64-encoded 32-byte key.
    pub fn from_base64(encoded: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD.decode(encoded.trim()).map_err(|_| CryptoError::BadMasterKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self(XChaCha20Poly1305::new(&key.into())))
    }

    /// A new random key, base64-encoded (for `serve`'s first start).
    pub fn generate_base64() -> String {
        STANDARD.encode(rand::random::<[u8; 32]>())
    }

    /// Encrypts `secret`, bound to `context` (the key id).
    pub fn seal(&self, secret: &[u8], context: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        // Encryption with a valid key and nonce cannot fail.
        let ciphertext =
            self.0.encrypt(&XNonce::from(nonce), Payload { msg: secret, aad: context.as_bytes() }).unwrap_or_default();
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        STANDARD.encode(sealed)
    }

    pub fn unseal(&self, sealed: &str, context: &str) -> Result<Vec<u8>, CryptoError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| CryptoError::Unseal)?;
        if bytes.len() < NONCE_LEN {
            return Err(CryptoError::Unseal);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Unseal)?;
        self.0
            .decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: context.as_bytes() })
            .map_err(|_| CryptoError::Unseal)
    }
}

/// The stored form of a bearer token.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two secrets (compared as hashes, so lengths leak nothing).
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

/// The associated data of the master key's check value (no key or webhook id looks like it).
const CHECK_CONTEXT: &str = "signalbox master key check";
const CHECK_VALUE: &[u8] = b"signalbox";

/// Why a start with this master key is refused.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyCheckError {
    #[error(
        "the master key is not the one this database's secrets were sealed with ({found}): start with the \
         original key (--master-key / SIGNALBOX_MASTER_KEY, or master.key in the data directory); with another \
         key every app key and webhook secret would fail to open"
    )]
    Mismatch { found: &'static str },
    #[error("cannot check the master key against the database: {0}")]
    Store(#[from] signalbox_store::StoreError),
}

/// Proves that `key` is the master key the database's secrets are sealed with, before anything
/// is served: it must open the check value stored at the first start (stored now if there is
/// none) and, for a database older than the check value, one stored secret.
pub async fn verify_master_key(store: &signalbox_store::Store, key: &MasterKey) -> Result<(), MasterKeyCheckError> {
    let opens_check = |sealed: &str| key.unseal(sealed, CHECK_CONTEXT).is_ok_and(|v| v == CHECK_VALUE);
    if let Some(sealed) = store.master_key_check().await? {
        return if opens_check(&sealed) {
            Ok(())
        } else {
            Err(MasterKeyCheckError::Mismatch { found: "it does not open the check value stored at the first start" })
        };
    }
    if let Some(sample) = store.sealed_sample().await?
        && key.unseal(&sample.sealed, &sample.context).is_err()
    {
        return Err(MasterKeyCheckError::Mismatch { found: "it does not open the stored secrets" });
    }
    let sealed = key.seal(CHECK_VALUE, CHECK_CONTEXT);
    if !store.create_master_key_check(&sealed, signalbox_core::clock::unix_millis()).await? {
        // Another node stored its check value first: this key must open it.
        let stored = store.master_key_check().await?.unwrap_or_default();
        if !opens_check(&stored) {
            return Err(MasterKeyCheckError::Mismatch { found: "another node started with a different key" });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_tamper_detection() {
        let key = MasterKey::from_base64(&MasterKey::generate_base64()).expect("key");
        let sealed = key.seal(b"s3cret", "key_1");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(key.unseal(&sealed, "key_1").expect("open"), b"s3cret");
        assert!(key.unseal(&sealed, "key_2").is_err(), "bound to its key id");
        let other = MasterKey::from_base64(&MasterKey::generate_base64()).expect("key");
        assert!(other.unseal(&sealed, "key_1").is_err(), "wrong master key");
        assert!(key.unseal("AAAA", "key_1").is_err());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
    }

    #[test]
    fn hashing_and_comparison() {
        assert_eq!(hash_token("abc").len(), 64);
        assert_ne!(hash_token("abc"), hash_token("abd"));
        assert!(secrets_equal(b"same", b"same"));
        assert!(!secrets_equal(b"same", b"different length"));
    }
}

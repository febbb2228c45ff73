//! Verifying that a webhook request came from Signalbox: the `Signalbox-Signature` header is
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, with one `v1=` per live
//! secret while the app rotates its secret.
//!
//! ```
//! use signalbox_sdk::webhook::{sign, verify};
//! let header = sign(&[b"whsec_x"], 1_700_000_000, b"{}");
//! assert!(verify(b"whsec_x", &header, b"{}", 1_700_000_010, 300).is_ok());
//! assert!(verify(b"whsec_x", &header, b"{\"tampered\":1}", 1_700_000_010, 300).is_err());
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's name.
pub const HEADER: &str = "Signalbox-Signature";

/// Why a request is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the timestamp is outside the tolerance (a replay, or a wrong clock)")]
    Expired,
    #[error("no signature matches the secret")]
    Mismatch,
}

/// Checks `header` for `body` against `secret`, refusing timestamps further than
/// `tolerance_seconds` from `now` (Unix seconds) — the replay protection.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64, tolerance_seconds: u64) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<u64>().map_err(|_| VerifyError::Malformed)?),
            Some(("v1", hex)) => signatures.push(decode_hex(hex).ok_or(VerifyError::Malformed)?),
            // Unknown schemes are ignored, so new ones can be added.
            Some(_) => {}
            None => return Err(VerifyError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
    if timestamp.abs_diff(now) > tolerance_seconds {
        return Err(VerifyError::Expired);
    }
    for signature in signatures {
        // `verify_slice` compares in constant time.
        if mac(secret, timestamp, body).verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::Mismatch)
}

/// A header value signing `body` at `timestamp` with each secret (what Signalbox sends).
pub fn sign(secrets: &[&[u8]], timestamp: u64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        let digest = mac(secret, timestamp, body).finalize().into_bytes();
        header.push_str(",v1=");
        header.extend(digest.iter().map(|b| format!("{b:02x}")));
    }
    header
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_live_secret_verifies_and_tampering_does_not() {
        let header = sign(&[b"new", b"old"], 100, b"body");
        assert_eq!(verify(b"old", &header, b"body", 100, 300), Ok(()));
        assert_eq!(verify(b"new", &header, b"body", 100, 300), Ok(()));
        assert_eq!(verify(b"other", &header, b"body", 100, 300), Err(VerifyError::Mismatch));
        assert_eq!(verify(b"new", &header, b"bodx", 100, 300), Err(VerifyError::Mismatch));
        assert_eq!(verify(b"new", &header, b"body", 1000, 300), Err(VerifyError::Expired));
        assert_eq!(verify(b"new", "v1=zz", b"body", 100, 300), Err(VerifyError::Malformed));
        assert_eq!(verify(b"new", "t=100", b"body", 100, 300), Err(VerifyError::Mismatch));
    }
}

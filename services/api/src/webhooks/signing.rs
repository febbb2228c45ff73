//! The `Signalbox-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
//! with one `v1=` per live secret while a secret is being rotated. Receivers recompute the
//! HMAC with their secret, compare in constant time, and refuse old timestamps (replay).

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER: &str = "signalbox-signature";

/// The header's value for `body` sent at `timestamp`, signed with every secret.
pub fn signature(secrets: &[Vec<u8>], timestamp: u64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex(&mac(secret, timestamp, body)));
    }
    header
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_reference_hmac() {
        // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec_test'
        let header = signature(&[b"whsec_test".to_vec()], 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(header, "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");
    }

    #[test]
    fn one_signature_per_live_secret() {
        let header = signature(&[b"new".to_vec(), b"old".to_vec()], 5, b"x");
        assert_eq!(header.matches(",v1=").count(), 2);
        assert!(header.starts_with("t=5,v1="));
    }
}

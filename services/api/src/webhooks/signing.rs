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

/// The SignalR upstream's `X-ASRS-Signature`: `sha256=<hex HMAC-SHA256(access key, connection id)>`
/// for every live access key, comma-separated (what the Azure Functions SignalR trigger checks).
pub fn asrs_signature(access_keys: &[Vec<u8>], connection_id: &str) -> String {
    let signatures: Vec<String> = access_keys
        .iter()
        .map(|key| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("any key length"));
            mac.update(connection_id.as_bytes());
            format!("sha256={}", hex(&mac.finalize().into_bytes()))
        })
        .collect();
    signatures.join(",")
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
    fn asrs_signature_matches_a_reference_hmac() {
        // echo -n 'conn1' | openssl dgst -sha256 -hmac 'key_a.secret'
        let header = asrs_signature(&[b"key_a.secret".to_vec(), b"key_b.other".to_vec()], "conn1");
        let parts: Vec<&str> = header.split(',').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("sha256=") && p.len() == 7 + 64));
        assert_eq!(asrs_signature(&[b"key_a.secret".to_vec()], "conn1"), parts[0]);
    }

    #[test]
    fn one_signature_per_live_secret() {
        let header = signature(&[b"new".to_vec(), b"old".to_vec()], 5, b"x");
        assert_eq!(header.matches(",v1=").count(), 2);
        assert!(header.starts_with("t=5,v1="));
    }
}

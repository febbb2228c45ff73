//! Pusher Channels compatibility: the credentials a Pusher library is given, and the
//! signatures it makes.
//!
//! - **Credentials.** A Signalbox app key *is* a Pusher key: `key` = the key id, `secret` =
//!   the key's secret; `app_id` is a number derived from the Signalbox app id (Pusher's server
//!   libraries want digits), checked against the app of the key that signs each request.
//! - **Socket ids** are `{digits}.{digits}` (the libraries refuse anything else); the
//!   connection id behind one is the same with a `-`, which ids may contain.
//! - **Signatures** are lowercase hex HMAC-SHA256 with the key's secret: over
//!   `socket_id:channel[:channel_data]` for a subscription, `socket_id::user::user_data` for a
//!   sign-in, and `METHOD\npath\nsorted query` for an HTTP API request.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::ids::{AppId, ConnectionId};

/// Pusher's presence channels: their members are users, named by the backend's signature.
pub const PRESENCE_PREFIX: &str = "presence-";

/// The Pusher `app_id` of a Signalbox app: 48 bits of SHA-256 of its id, in decimal (a
/// number every JavaScript client holds exactly).
pub fn app_number(app: &AppId) -> u64 {
    let digest = Sha256::digest(app.as_str().as_bytes());
    digest[..6].iter().fold(0, |n, byte| (n << 8) | u64::from(*byte))
}

/// A fresh connection id for a Pusher connection: two random numbers (its socket id, with a
/// `-` for the `.`).
pub fn connection_id() -> ConnectionId {
    let (a, b) = (rand::random::<u32>(), rand::random::<u32>());
    ConnectionId::new(format!("{a}-{b}")).unwrap_or_else(|_| ConnectionId::generate_signalr())
}

/// The socket id a Pusher client knows a connection by.
pub fn socket_id(connection: &ConnectionId) -> String {
    connection.as_str().replacen('-', ".", 1)
}

/// The connection a socket id names, if it is one (`{digits}.{digits}`).
pub fn connection_of(socket_id: &str) -> Option<ConnectionId> {
    let (a, b) = socket_id.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(a) && digits(b)).then(|| ConnectionId::new(format!("{a}-{b}")).ok()).flatten()
}

/// Lowercase hex HMAC-SHA256 of `message` with `secret`.
pub fn sign(secret: &[u8], message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(message.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Whether `signature` (hex) is the HMAC-SHA256 of `message` with `secret`; in constant time.
pub fn verify(secret: &[u8], message: &str, signature: &str) -> bool {
    let expected = sign(secret, message);
    expected.len() == signature.len()
        && subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), signature.to_ascii_lowercase().as_bytes()).into()
}

/// What a subscription's `auth` signs: `socket_id:channel`, and `:channel_data` when given
/// (the exact string the client sent).
pub fn subscription_payload(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// What an HTTP API request's `auth_signature` signs: the method, the path and every query
/// parameter but the signature, keys lower-cased, sorted, `k=v` joined with `&`, unescaped.
pub fn request_payload<'a>(method: &str, path: &str, params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .into_iter()
        .filter(|(key, _)| !key.eq_ignore_ascii_case("auth_signature"))
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.into_iter().map(|(key, value)| format!("{key}={value}")).collect();
    format!("{}\n{path}\n{}", method.to_ascii_uppercase(), query.join("&"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pusher's own worked example (REST API reference, "Authentication").
    #[test]
    fn request_signatures_match_pushers_worked_example() {
        let params = [
            ("auth_key", "278d425bdf160c739803"),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
        ];
        let payload = request_payload("POST", "/apps/3/events", params);
        assert_eq!(
            payload,
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        let signature = sign(b"7ad3773142a6692b25b8", &payload);
        assert_eq!(signature, "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c");
        assert!(verify(b"7ad3773142a6692b25b8", &payload, &signature.to_ascii_uppercase()));
        assert!(!verify(b"another secret", &payload, &signature));
        // The signature itself never signs; key case does not matter; order does not.
        let shuffled = [
            ("Body_MD5", "ec365a775a4cd0599faeb73354201b6f"),
            ("auth_signature", "x"),
            params[0],
            params[1],
            params[2],
        ];
        assert_eq!(request_payload("post", "/apps/3/events", shuffled), payload);
    }

    #[test]
    fn socket_ids_are_digits_and_name_their_connection() {
        let connection = connection_id();
        let socket = socket_id(&connection);
        assert!(socket.split_once('.').is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok()));
        assert_eq!(connection_of(&socket), Some(connection));
        for bad in ["", "1", "1.", ".1", "a.1", "1.2.3", "1-2", "１.2"] {
            assert_eq!(connection_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn app_numbers_are_stable_and_fit_a_javascript_number() {
        let app = AppId::new("app_0123abc").unwrap();
        assert_eq!(app_number(&app), app_number(&app));
        assert!(app_number(&app) < (1 << 53));
        assert_ne!(app_number(&app), app_number(&AppId::new("app_0123abd").unwrap()));
    }

    #[test]
    fn subscription_payloads_keep_channel_data_as_sent() {
        assert_eq!(subscription_payload("1.2", "private-a", None), "1.2:private-a");
        assert_eq!(
            subscription_payload("1.2", "presence-a", Some("{\"user_id\":1}")),
            "1.2:presence-a:{\"user_id\":1}"
        );
    }
}

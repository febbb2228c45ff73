//! Tokens of the SignalR adapter.
//!
//! - The **connection token** that negotiate hands out binds a connection id to its app, hub
//!   and user: HS256 with the app key that signed the client's access token, so every edge
//!   can check it and a known connection id alone cannot take over a connection.
//! - **Azure SignalR-style access tokens**, as Azure's server SDKs and negotiate functions
//!   mint them: HS256 with the whole access key of the connection string (`{key_id}.{secret}`
//!   here) as the HMAC key, `kid` = the key id, `aud` = the URL called, the user in `nameid`
//!   (or `sub`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::ids::{AppId, ConnectionId, KeyId};
use crate::token::{LEEWAY_SECONDS, TokenError};

/// What a connection token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionTokenClaims {
    pub app: AppId,
    pub cid: ConnectionId,
    /// The hub, lower-case.
    pub hub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// When negotiate issued it (Unix seconds): a connection may be opened with it only for
    /// [`OPEN_WITHIN_SECONDS`], so an ended connection cannot be brought back with an old token.
    pub iat: u64,
    /// Negotiate agreed to stateful reconnect: the connection's WebSocket may drop and resume
    /// without losing a message.
    #[serde(default, rename = "sr", skip_serializing_if = "std::ops::Not::not")]
    pub resumable: bool,
}

/// How long after negotiate a connection token may open its connection.
pub const OPEN_WITHIN_SECONDS: u64 = 120;

impl ConnectionTokenClaims {
    /// Whether the token may still open its connection at `now` (Unix seconds).
    pub fn may_open(&self, now: u64) -> bool {
        now.saturating_sub(self.iat) <= OPEN_WITHIN_SECONDS && self.iat <= now + LEEWAY_SECONDS
    }
}

/// Signs a connection token with the key that signed the client's access token.
pub fn sign_connection_token(claims: &ConnectionTokenClaims, key_id: &KeyId, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key_id.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap_or_default()
}

/// Checks a connection token's signature; it does not expire (the connection it names does).
pub fn verify_connection_token(token: &str, secret: &[u8]) -> Result<ConnectionTokenClaims, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.set_required_spec_claims::<&str>(&[]);
    jsonwebtoken::decode::<ConnectionTokenClaims>(token, &DecodingKey::from_secret(secret), &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            _ => TokenError::Malformed,
        })
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

/// The `kid` of an HS256 token, before anything is verified.
pub fn peek_key_id(token: &str) -> Result<KeyId, TokenError> {
    let header = token.split('.').next().ok_or(TokenError::Malformed)?;
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| TokenError::Malformed)?;
    let header: RawHeader = serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(TokenError::DisallowedAlgorithm);
    }
    KeyId::new(header.kid.ok_or(TokenError::MissingKeyId)?).map_err(|_| TokenError::UnknownKey)
}

/// Whether a token carries Signalbox's `app` claim (a Signalbox client token) rather than
/// being an Azure SignalR-style token.
pub fn has_app_claim(token: &str) -> bool {
    #[derive(Deserialize)]
    struct AppClaim {
        app: Option<serde_json::Value>,
    }
    token
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|payload| serde_json::from_slice::<AppClaim>(&payload).ok())
        .is_some_and(|claims| claims.app.is_some())
}

/// An app key as Azure's SDKs hold it (the connection string's `AccessKey`): `{key_id}.{secret}`,
/// which is the HMAC key of Azure-style tokens and of upstream signatures.
pub fn access_key(key_id: &KeyId, secret: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(key_id.as_str().len() + 1 + secret.len());
    key.extend_from_slice(key_id.as_str().as_bytes());
    key.push(b'.');
    key.extend_from_slice(secret);
    key
}

/// The claims Signalbox reads from an Azure SignalR-style token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AzureClaims {
    pub exp: u64,
    /// Issued-at: checked like a client token's.
    #[serde(default)]
    iat: Option<u64>,
    /// One URL or several.
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    nameid: Option<String>,
    #[serde(default)]
    sub: Option<String>,
}

impl AzureClaims {
    /// The user id: `nameid` (what Azure's SDKs set), else `sub`.
    pub fn user(&self) -> Option<&str> {
        self.nameid.as_deref().or(self.sub.as_deref()).filter(|u| !u.is_empty())
    }
}

/// The path of a URL, without its query and trailing slashes (`https://h/api/x/?a=1` → `/api/x`).
fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.trim_end_matches('/')
}

/// Verifies an Azure SignalR-style token: HS256 with `access_key`, not expired, and an
/// audience whose path (query ignored) is `path`.
pub fn verify_azure(token: &str, access_key: &[u8], path: &str) -> Result<AzureClaims, TokenError> {
    peek_key_id(token)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<AzureClaims>(token, &DecodingKey::from_secret(access_key), &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::MissingRequiredClaim(claim) => TokenError::InvalidClaims(format!("missing {claim}")),
            ErrorKind::Json(e) => TokenError::InvalidClaims(e.to_string()),
            _ => TokenError::Malformed,
        })?
        .claims;
    let wanted = path.trim_end_matches('/');
    let matches = |aud: &serde_json::Value| aud.as_str().is_some_and(|aud| url_path(aud) == wanted);
    let audience_ok = match &claims.aud {
        Some(serde_json::Value::Array(auds)) => auds.iter().any(matches),
        Some(aud) => matches(aud),
        None => false,
    };
    if !audience_ok {
        return Err(TokenError::WrongAudience);
    }
    crate::token::check_issued_at(claims.iat, crate::clock::unix_seconds())?;
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::unix_seconds;

    fn azure_token(key: &[u8], aud: &str, exp: u64) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("key_abc".into());
        let claims = serde_json::json!({"aud": aud, "exp": exp, "nameid": "alice"});
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key)).expect("encode")
    }

    #[test]
    fn connection_tokens_round_trip_and_resist_forgery() {
        let claims = ConnectionTokenClaims {
            resumable: true,
            app: AppId::generate(),
            cid: ConnectionId::generate_signalr(),
            hub: "chat".into(),
            sub: Some("alice".into()),
            iat: unix_seconds(),
        };
        assert!(claims.may_open(claims.iat + 60) && !claims.may_open(claims.iat + OPEN_WITHIN_SECONDS + 1));
        let token = sign_connection_token(&claims, &KeyId::generate(), b"secret");
        assert_eq!(verify_connection_token(&token, b"secret"), Ok(claims));
        assert_eq!(verify_connection_token(&token, b"other"), Err(TokenError::BadSignature));
        assert_eq!(verify_connection_token("nope", b"secret"), Err(TokenError::Malformed));
        assert!(has_app_claim(&token));
    }

    #[test]
    fn azure_tokens_check_key_expiry_and_audience_without_query() {
        let now = unix_seconds();
        let token = azure_token(
            b"key_abc.s3cret",
            "https://sb.example.com/api/hubs/chat/:send?api-version=2022-06-01",
            now + 60,
        );
        assert_eq!(peek_key_id(&token).expect("kid").as_str(), "key_abc");
        assert!(!has_app_claim(&token));
        let claims = verify_azure(&token, b"key_abc.s3cret", "/api/hubs/chat/:send").expect("valid");
        assert_eq!(claims.user(), Some("alice"));
        assert_eq!(verify_azure(&token, b"wrong", "/api/hubs/chat/:send"), Err(TokenError::BadSignature));
        assert_eq!(verify_azure(&token, b"key_abc.s3cret", "/api/hubs/other/:send"), Err(TokenError::WrongAudience));
        let old = azure_token(b"k", "http://h/client/?hub=chat", now - 3600);
        assert_eq!(verify_azure(&old, b"k", "/client"), Err(TokenError::Expired));
        let client = azure_token(b"k", "http://h/client/?hub=chat", now + 60);
        assert!(verify_azure(&client, b"k", "/client/").is_ok());
    }
}

//! Client tokens: HS256 JWTs signed with an app key's secret, `kid` = the key id.
//!
//! Only HS256 is accepted; `none`, any asymmetric algorithm (the classic algorithm-confusion
//! attack) and any other header value are refused before a signature is even checked.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::ids::{AppId, GroupName, KeyId, UserId};
use crate::permission::{Permission, Permissions};

/// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: u64 = 30;

/// The claims of a client token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientClaims {
    /// The user id; absent for anonymous connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<UserId>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued-at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The app the token is for; must be the app of the key that signed it.
    pub app: AppId,
    /// Groups joined when the connection opens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupName>,
    /// Grants such as `join:room-*` or `publish:room-*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Permission>,
    /// Public information about the user, shown to others (presence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

impl ClientClaims {
    pub fn permissions(&self) -> Permissions {
        Permissions::new(self.permissions.clone())
    }
}

/// Why a token was refused. The `Display` text is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not allowed (only HS256 is)")]
    DisallowedAlgorithm,
    #[error("the token names no key (kid)")]
    MissingKeyId,
    #[error("the token's key is unknown")]
    UnknownKey,
    #[error("the token's key has been revoked")]
    KeyRevoked,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future (is the signer's clock right?)")]
    IssuedInFuture,
    #[error("the token is for another app")]
    WrongApp,
    #[error("the token's audience is not this URL")]
    WrongAudience,
    #[error("the token's claims are invalid: {0}")]
    InvalidClaims(String),
}

/// What can be read from a token before its signature is checked: just enough to find the
/// key. Nothing here may be trusted until [`verify`] succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedHeader {
    pub key_id: KeyId,
    /// The `app` claim, to know which app to ask about the key.
    pub app: AppId,
}

#[derive(Deserialize)]
struct RawAppClaim {
    app: String,
}

/// The header fields we read ourselves: jsonwebtoken refuses `alg: none` as a parse
/// error, and we want to name it as what it is.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

/// Reads the header, refusing any algorithm but HS256.
pub fn peek(token: &str) -> Result<UnverifiedHeader, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| TokenError::Malformed)?;
    let header: RawHeader = serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(TokenError::DisallowedAlgorithm);
    }
    let kid = header.kid.ok_or(TokenError::MissingKeyId)?;
    let key_id = KeyId::new(kid).map_err(|_| TokenError::UnknownKey)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
    let claim: RawAppClaim =
        serde_json::from_slice(&payload).map_err(|_| TokenError::InvalidClaims("missing app".into()))?;
    let app = AppId::new(claim.app).map_err(|_| TokenError::WrongApp)?;
    Ok(UnverifiedHeader { key_id, app })
}

/// Verifies signature, algorithm, expiry and app; returns the claims.
pub fn verify(token: &str, secret: &[u8], app: &AppId) -> Result<ClientClaims, TokenError> {
    peek(token)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp"]);
    let data = jsonwebtoken::decode::<ClientClaims>(token, &DecodingKey::from_secret(secret), &validation).map_err(
        |e| match e.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::DisallowedAlgorithm,
            ErrorKind::MissingRequiredClaim(claim) => TokenError::InvalidClaims(format!("missing {claim}")),
            ErrorKind::Json(e) => TokenError::InvalidClaims(e.to_string()),
            _ => TokenError::Malformed,
        },
    )?;
    if &data.claims.app != app {
        return Err(TokenError::WrongApp);
    }
    check_issued_at(data.claims.iat, crate::clock::unix_seconds())?;
    Ok(data.claims)
}

/// `iat`, when present, may not be later than `now` by more than the tolerated skew: a
/// token from the future is forged, or signed by a host whose clock is wrong (and whose
/// `exp` cannot be trusted either). jsonwebtoken does not check it.
pub fn check_issued_at(iat: Option<u64>, now: u64) -> Result<(), TokenError> {
    match iat {
        Some(iat) if iat > now.saturating_add(LEEWAY_SECONDS) => Err(TokenError::IssuedInFuture),
        _ => Ok(()),
    }
}

/// Signs `claims` with an app key: what `POST /v1/apps/{app}/tokens` and the SDKs do.
pub fn sign(claims: &ClientClaims, key_id: &KeyId, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key_id.to_string());
    // Serializing our own claims into a JWT with an HMAC key cannot fail.
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::unix_seconds as unix_now;

    fn encode_segment(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn claims(app: &AppId, exp: u64) -> ClientClaims {
        ClientClaims {
            sub: Some(UserId::new("alice").expect("valid")),
            exp,
            iat: None,
            app: app.clone(),
            groups: vec![GroupName::new("room-1").expect("valid")],
            permissions: vec![Permission::parse("join:room-*").expect("valid")],
            info: None,
        }
    }

    #[test]
    fn round_trip() {
        let app = AppId::generate();
        let kid = KeyId::generate();
        let token = sign(&claims(&app, unix_now() + 60), &kid, b"secret");
        let header = peek(&token).expect("header");
        assert_eq!((header.key_id, header.app), (kid, app.clone()));
        let verified = verify(&token, b"secret", &app).expect("valid");
        assert_eq!(verified.sub.expect("sub").as_str(), "alice");
    }

    #[test]
    fn refuses_bad_tokens() {
        let app = AppId::generate();
        let kid = KeyId::generate();
        let good = sign(&claims(&app, unix_now() + 60), &kid, b"secret");
        assert_eq!(verify(&good, b"other", &app), Err(TokenError::BadSignature));
        assert_eq!(verify(&good, b"secret", &AppId::generate()), Err(TokenError::WrongApp));
        let expired = sign(&claims(&app, unix_now() - 3600), &kid, b"secret");
        assert_eq!(verify(&expired, b"secret", &app), Err(TokenError::Expired));
        assert_eq!(verify("garbage", b"secret", &app), Err(TokenError::Malformed));
        assert_eq!(verify("a.b.c", b"secret", &app), Err(TokenError::Malformed));

        let body = encode_segment(serde_json::to_string(&claims(&app, unix_now() + 60)).expect("json").as_bytes());
        for header in
            [r#"{"alg":"none","kid":"key_x"}"#, r#"{"alg":"RS256","kid":"key_x"}"#, r#"{"alg":"HS512","kid":"key_x"}"#]
        {
            let forged = format!("{}.{body}.", encode_segment(header.as_bytes()));
            assert_eq!(peek(&forged), Err(TokenError::DisallowedAlgorithm), "{header}");
            assert_eq!(verify(&forged, b"secret", &app), Err(TokenError::DisallowedAlgorithm), "{header}");
        }
        let no_kid = format!("{}.{body}.sig", encode_segment(br#"{"alg":"HS256"}"#));
        assert_eq!(peek(&no_kid), Err(TokenError::MissingKeyId));
    }

    #[test]
    fn refuses_a_token_issued_in_the_future_beyond_the_skew() {
        let app = AppId::generate();
        let kid = KeyId::generate();
        let now = unix_now();
        let issued = |iat: u64| sign(&ClientClaims { iat: Some(iat), ..claims(&app, now + 3600) }, &kid, b"secret");
        assert!(verify(&issued(now), b"secret", &app).is_ok());
        assert!(verify(&issued(now + LEEWAY_SECONDS / 2), b"secret", &app).is_ok(), "within the skew");
        assert_eq!(verify(&issued(now + 600), b"secret", &app), Err(TokenError::IssuedInFuture));
        assert_eq!(check_issued_at(Some(now + LEEWAY_SECONDS + 1), now), Err(TokenError::IssuedInFuture));
        assert_eq!(check_issued_at(Some(now + LEEWAY_SECONDS), now), Ok(()));
        assert_eq!(check_issued_at(None, now), Ok(()));
    }

    #[test]
    fn refuses_invalid_claims() {
        let app = AppId::generate();
        let kid = KeyId::generate();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_string());
        let key = EncodingKey::from_secret(b"s");
        let bad_perm = serde_json::json!({"exp": unix_now() + 60, "app": app, "permissions": ["fly:*"]});
        let token = jsonwebtoken::encode(&header, &bad_perm, &key).expect("encode");
        assert!(matches!(verify(&token, b"s", &app), Err(TokenError::InvalidClaims(_))));
        let bad_group = serde_json::json!({"exp": unix_now() + 60, "app": app, "groups": [""]});
        let token = jsonwebtoken::encode(&header, &bad_group, &key).expect("encode");
        assert!(matches!(verify(&token, b"s", &app), Err(TokenError::InvalidClaims(_))));
        let no_exp = serde_json::json!({"app": app});
        let token = jsonwebtoken::encode(&header, &no_exp, &key).expect("encode");
        assert!(matches!(verify(&token, b"s", &app), Err(TokenError::InvalidClaims(_))));
    }
}

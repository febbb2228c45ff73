//! Authenticating a client token: find its key (cached), check the key is live, verify the
//! signature, algorithm, expiry and app. Every failure maps to a close code the client can
//! act on.

use std::sync::Arc;

use signalbox_core::token::{self, TokenError};
use signalbox_core::{ClientClaims, CloseCode, KeyId};

use crate::directory::{Directory, KeyEntry, LookupError};

/// A verified token and the key that signed it.
#[derive(Debug)]
pub(crate) struct Authorized {
    pub(crate) claims: ClientClaims,
    pub(crate) key_id: KeyId,
    pub(crate) key: Arc<KeyEntry>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("no token: pass access_token in the query or an Authorization: Bearer header")]
    Missing,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the token cannot be checked right now; retry later")]
    Unavailable,
}

impl AuthError {
    pub(crate) fn close_code(&self) -> CloseCode {
        match self {
            Self::Missing => CloseCode::InvalidToken,
            Self::Token(TokenError::Expired) => CloseCode::TokenExpired,
            Self::Token(TokenError::KeyRevoked) => CloseCode::KeyRevoked,
            Self::Token(_) => CloseCode::InvalidToken,
            Self::Unavailable => CloseCode::TryAgainLater,
        }
    }
}

pub(crate) async fn authenticate(directory: &Directory, token: Option<&str>) -> Result<Authorized, AuthError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
    let header = token::peek(token)?;
    let key = directory.key(&header.app, &header.key_id).await.map_err(|e| match e {
        LookupError::NotFound => AuthError::Token(TokenError::UnknownKey),
        LookupError::Unavailable => AuthError::Unavailable,
    })?;
    if key.revoked {
        return Err(TokenError::KeyRevoked.into());
    }
    let claims = token::verify(token, &key.secret, &key.app)?;
    Ok(Authorized { claims, key_id: header.key_id, key })
}

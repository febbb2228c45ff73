//! Who is calling: the operator (platform admin token), a tenant (its management token), or
//! an app key (`Bearer {key_id}.{secret}`). Each is an extractor; a handler names the one it
//! accepts, and app-key handlers check the app and scope with [`AppKey::require`].

use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::header;
use http::request::Parts;
use signalbox_core::admission::PendingAuth;
use signalbox_core::{AppId, KeyId, KeyScope};
use signalbox_store::TenantRecord;

use crate::ApiState;
use crate::cache::OpenKey;
use crate::crypto::{hash_token, secrets_equal};
use crate::error::ApiError;

/// Tenant management tokens start with this, so a token's kind is known without a lookup.
pub(crate) const TENANT_TOKEN_PREFIX: &str = "sbt_";

/// Marks the request authenticated: the HTTP server stops counting it against its source's
/// unauthenticated requests (`signalbox_core::admission`). Every extractor here calls it on
/// success — extractors run before the body is read, so no body is read without a credential.
pub(crate) fn authenticated(parts: &Parts) {
    if let Some(pending) = parts.extensions.get::<PendingAuth>() {
        pending.authenticated();
    }
}

pub(crate) fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized("missing bearer token (Authorization: Bearer …)"))
}

/// The platform operator.
#[derive(Debug)]
pub(crate) struct Operator;

impl FromRequestParts<Arc<ApiState>> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if secrets_equal(token.as_bytes(), state.admin_token.as_bytes()) {
            authenticated(parts);
            Ok(Self)
        } else {
            Err(ApiError::Unauthorized("this call needs the operator token"))
        }
    }
}

/// A tenant, by its management token.
#[derive(Debug)]
pub(crate) struct Tenant(pub(crate) TenantRecord);

async fn tenant_from_token(state: &ApiState, token: &str) -> Result<TenantRecord, ApiError> {
    if !token.starts_with(TENANT_TOKEN_PREFIX) {
        return Err(ApiError::Unauthorized("this call needs a tenant token"));
    }
    state.store.tenant_by_token_hash(&hash_token(token)).await?.ok_or(ApiError::Unauthorized("unknown tenant token"))
}

impl FromRequestParts<Arc<ApiState>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        let tenant = tenant_from_token(state, bearer(parts)?).await?;
        authenticated(parts);
        Ok(Self(tenant))
    }
}

/// An app key.
#[derive(Debug)]
pub(crate) struct AppKey(pub(crate) Arc<OpenKey>);

async fn key_from_token(state: &ApiState, token: &str) -> Result<Arc<OpenKey>, ApiError> {
    let (id, secret) = token.split_once('.').ok_or(ApiError::Unauthorized("this call needs an app key"))?;
    let id = KeyId::new(id).map_err(|_| ApiError::Unauthorized("invalid app key"))?;
    state.cache.sync_epoch(state.bus.epoch());
    let key = state.cache.key(&state.store, &state.master_key, &id).await?;
    match key {
        Some(key) if secrets_equal(&key.secret, secret.as_bytes()) => {
            if key.record.revoked_at.is_some() {
                Err(ApiError::Unauthorized("this app key has been revoked"))
            } else {
                Ok(key)
            }
        }
        _ => Err(ApiError::Unauthorized("invalid app key")),
    }
}

impl FromRequestParts<Arc<ApiState>> for AppKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        let key = key_from_token(state, bearer(parts)?).await?;
        authenticated(parts);
        Ok(Self(key))
    }
}

impl AppKey {
    /// Checks the key is for `app` and has `scope`.
    pub(crate) fn require(&self, app: &AppId, scope: KeyScope) -> Result<(), ApiError> {
        if &self.0.record.app_id != app {
            return Err(ApiError::Forbidden("this key is not valid for this app"));
        }
        if !self.0.record.scopes.contains(scope) {
            return Err(ApiError::Forbidden("this key lacks the scope this call needs"));
        }
        Ok(())
    }
}

/// Either an app key or a tenant token (minting client tokens takes both).
#[derive(Debug)]
pub(crate) enum KeyOrTenant {
    Key(Arc<OpenKey>),
    Tenant(TenantRecord),
}

impl FromRequestParts<Arc<ApiState>> for KeyOrTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let caller = if token.starts_with(TENANT_TOKEN_PREFIX) {
            Self::Tenant(tenant_from_token(state, token).await?)
        } else {
            Self::Key(key_from_token(state, token).await?)
        };
        authenticated(parts);
        Ok(caller)
    }
}

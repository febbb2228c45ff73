//! `POST /v1/apps/{app}/tokens`: mint a client token, for backends that would rather not
//! sign one themselves (`docs/tokens.md` shows how to sign one locally).

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use signalbox_core::token::{self, ClientClaims};
use signalbox_core::{AppId, GroupName, KeyId, KeyScope, Permission, UserId, clock};
use signalbox_store::PageRequest;
use utoipa::ToSchema;

use super::{Body, Path, app_id};
use crate::ApiState;
use crate::auth::{AppKey, KeyOrTenant};
use crate::cache::OpenKey;
use crate::error::{ApiError, Problem};

/// Default and longest lifetime of a minted token.
const DEFAULT_TTL_SECONDS: u64 = 3600;
const MAX_TTL_SECONDS: u64 = 86_400;
/// Largest `info` accepted, in bytes of JSON (it travels in every connect URL).
const MAX_INFO_BYTES: usize = 1024;
const MAX_PERMISSIONS: usize = 64;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "alice", "groups": ["room-1"], "permissions": ["join:room-*", "publish:room-*"], "ttl_seconds": 3600}))]
pub(crate) struct MintToken {
    /// The user the connection acts as (`sub`); anonymous when absent.
    #[schema(value_type = Option<UserId>)]
    user_id: Option<String>,
    /// Groups joined when the connection opens (at most the app's `max_groups_per_connection`).
    #[serde(default)]
    #[schema(value_type = Vec<GroupName>, max_items = 1000)]
    groups: Vec<String>,
    /// Grants such as `join:room-*`, `leave:lobby`, `publish:room-*`.
    #[serde(default)]
    #[schema(schema_with = super::schemas::permissions)]
    permissions: Vec<String>,
    /// Lifetime in seconds (1-86400, default 3600).
    #[schema(minimum = 1, maximum = 86400)]
    #[serde(default, deserialize_with = "whole_seconds")]
    ttl_seconds: Option<u64>,
    /// Public information about the user (at most 1 KiB of JSON).
    #[schema(value_type = Option<Object>)]
    info: Option<serde_json::Value>,
    /// With a tenant token: the key that signs (default: the newest active key).
    #[schema(value_type = Option<KeyId>)]
    key_id: Option<String>,
}

/// A whole number of seconds, also when written as a decimal (`60.0`), as JSON Schema's
/// `integer` allows.
fn whole_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
    if let Some(whole) = number.as_u64() {
        return Ok(Some(whole));
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=9.0e15).contains(&f) => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!("{number} is not a whole number of seconds"))),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MintedToken {
    /// Pass as `access_token` when connecting.
    token: String,
    /// Seconds since the Unix epoch.
    expires_at: u64,
    /// The key that signed it.
    key_id: KeyId,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AppPath {
    app: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ApiError {
    ApiError::InvalidField { field, reason: reason.into() }
}

/// The key that signs: the caller's own key, or one of the tenant's app.
async fn signing_key(
    state: &ApiState,
    caller: KeyOrTenant,
    app: &AppId,
    wanted: Option<&str>,
) -> Result<Arc<OpenKey>, ApiError> {
    match caller {
        KeyOrTenant::Key(key) => {
            let key = AppKey(key);
            key.require(app, KeyScope::Tokens)?;
            Ok(key.0)
        }
        KeyOrTenant::Tenant(tenant) => {
            state.store.app_of_tenant(&tenant.id, app).await?.ok_or(ApiError::NotFound("app"))?;
            let id = match wanted {
                Some(raw) => KeyId::new(raw).map_err(|_| invalid("key_id", "not a key id"))?,
                None => {
                    let keys = state.store.list_keys(app, &PageRequest::first(PageRequest::MAX_LIMIT)).await?;
                    keys.items
                        .iter()
                        .rev()
                        .find(|k| k.revoked_at.is_none())
                        .map(|k| k.id.clone())
                        .ok_or(ApiError::Conflict("the app has no active key; create one first"))?
                }
            };
            let key = state.cache.key(&state.store, &state.master_key, &id).await?;
            match key {
                Some(key) if &key.record.app_id == app && key.record.revoked_at.is_none() => Ok(key),
                _ => Err(ApiError::NotFound("active key with this key_id in this app")),
            }
        }
    }
}

/// Mint a client token.
#[utoipa::path(
    post, path = "/v1/apps/{app}/tokens", tag = "tokens",
    params(("app" = String, Path, description = "App id")),
    request_body = MintToken,
    security(("app_key" = []), ("tenant" = [])),
    responses(
        (status = 200, body = MintedToken),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn mint_token(
    State(state): State<Arc<ApiState>>,
    caller: KeyOrTenant,
    Path(path): Path<AppPath>,
    Body(body): Body<MintToken>,
) -> Result<axum::Json<MintedToken>, ApiError> {
    let app = app_id(&path.app)?;
    let key = signing_key(&state, caller, &app, body.key_id.as_deref()).await?;
    let settings = state.cache.app(&state.store, &app).await?.ok_or(ApiError::NotFound("app"))?.settings.clone();

    let ttl = body.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
    if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
        return Err(invalid("ttl_seconds", format!("must be between 1 and {MAX_TTL_SECONDS}")));
    }
    let sub = body.user_id.as_deref().map(UserId::new).transpose()?;
    let groups = body.groups.iter().map(GroupName::new).collect::<Result<Vec<_>, _>>()?;
    let max_groups = settings.limits.max_groups_per_connection as usize;
    if groups.len() > max_groups {
        return Err(invalid("groups", format!("at most {max_groups} groups (the app's max_groups_per_connection)")));
    }
    if body.permissions.len() > MAX_PERMISSIONS {
        return Err(invalid("permissions", format!("at most {MAX_PERMISSIONS} permissions")));
    }
    let permissions = body
        .permissions
        .iter()
        .map(|p| Permission::parse(p).map_err(|e| invalid("permissions", e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(info) = &body.info
        && info.to_string().len() > MAX_INFO_BYTES
    {
        return Err(invalid("info", format!("at most {MAX_INFO_BYTES} bytes of JSON")));
    }
    let now = clock::unix_seconds();
    let claims = ClientClaims { sub, exp: now + ttl, iat: Some(now), app, groups, permissions, info: body.info };
    let token = token::sign(&claims, &key.record.id, &key.secret);
    Ok(axum::Json(MintedToken { token, expires_at: claims.exp, key_id: key.record.id.clone() }))
}

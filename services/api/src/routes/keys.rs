//! App keys: `POST/GET /v1/apps/{app}/keys`, `DELETE /v1/apps/{app}/keys/{key}`.
//! A key's secret is shown once, at creation; revoking a key stops it at once for REST
//! calls and closes the connections whose tokens it signed.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use signalbox_core::{KeyId, KeyScope, KeyScopes, clock, ids};
use signalbox_proto::wire::ConfigChangeKind;
use signalbox_store::KeyRecord;
use utoipa::ToSchema;

use super::{Page, PageQuery, Path, Query, app_id, encode_cursor};
use crate::ApiState;
use crate::auth::Tenant;
use crate::error::{ApiError, Problem};

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    /// A label for humans (default: empty).
    #[serde(default)]
    #[schema(schema_with = super::schemas::key_label_or_null)]
    name: Option<String>,
    /// What the key may do; all scopes when absent.
    #[serde(default)]
    scopes: Option<Vec<KeyScope>>,
}

/// A key as listed (never with its secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Key {
    id: KeyId,
    name: String,
    scopes: Vec<KeyScope>,
    created_at: i64,
    /// When it was revoked, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<i64>,
}

impl From<&KeyRecord> for Key {
    fn from(key: &KeyRecord) -> Self {
        Self {
            id: key.id.clone(),
            name: key.name.clone(),
            scopes: key.scopes.iter().collect(),
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// A new key, with its secret: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedKey {
    #[serde(flatten)]
    key: Key,
    /// The secret: signs client tokens (HS256, `kid` = the key id).
    secret: String,
    /// The REST credential: `Authorization: Bearer {credential}` (`{id}.{secret}`).
    credential: String,
    /// The same key as Pusher's libraries take it (docs/pusher.md).
    pusher: PusherCredentials,
}

/// A key as Pusher Channels credentials: `app_id` a number derived from the app id, `key` the
/// key id, `secret` the key's secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PusherCredentials {
    #[schema(example = "93485730276381")]
    app_id: String,
    key: String,
    secret: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AppPath {
    app: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct KeyPath {
    app: String,
    key: String,
}

async fn owned_app_id(
    state: &ApiState,
    tenant: &signalbox_store::TenantRecord,
    raw: &str,
) -> Result<signalbox_core::AppId, ApiError> {
    let id = app_id(raw)?;
    state.store.app_of_tenant(&tenant.id, &id).await?.map(|a| a.id).ok_or(ApiError::NotFound("app"))
}

/// Create a key.
#[utoipa::path(
    post, path = "/v1/apps/{app}/keys", tag = "keys",
    params(("app" = String, Path, description = "App id")),
    request_body = CreateKey,
    security(("tenant" = [])),
    responses(
        (status = 201, description = "Created; the secret is shown only now", body = CreatedKey),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`limit_reached`: the app has as many live (unrevoked) keys as the operator allows (10 by default)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_key(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(path): Path<AppPath>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let app = owned_app_id(&state, &tenant, &path.app).await?;
    // The body is optional: an empty one means a key with every scope.
    let body: CreateKey = super::optional_body(&body)?;
    let name = match body.name {
        Some(name) if name.chars().count() > 200 || name.chars().any(char::is_control) => {
            return Err(ApiError::InvalidField {
                field: "name",
                reason: "at most 200 characters, no control characters".into(),
            });
        }
        Some(name) => name,
        None => String::new(),
    };
    let scopes = match body.scopes {
        Some(scopes) if scopes.is_empty() => {
            return Err(ApiError::InvalidField {
                field: "scopes",
                reason: "give at least one scope, or omit it".into(),
            });
        }
        Some(scopes) => scopes.into_iter().collect(),
        None => KeyScopes::all(),
    };
    let limit = state.limits.live_keys_per_app;
    if state.store.count_live_keys(&app).await? >= i64::from(limit) {
        return Err(ApiError::LimitReached(format!(
            "the app has {limit} live keys, the most the operator allows: revoke one first"
        )));
    }
    let id = KeyId::generate();
    let secret = ids::random_token(43);
    let record = KeyRecord {
        secret_sealed: state.master_key.seal(secret.as_bytes(), id.as_str()),
        id,
        app_id: app,
        tenant_id: tenant.id,
        name,
        scopes,
        created_at: clock::unix_millis(),
        revoked_at: None,
    };
    state.store.create_key(&record).await?;
    tracing::info!(app = %record.app_id, key = %record.id, "key created");
    let credential = format!("{}.{secret}", record.id);
    let pusher = PusherCredentials {
        app_id: signalbox_core::pusher::app_number(&record.app_id).to_string(),
        key: record.id.to_string(),
        secret: secret.clone(),
    };
    Ok((StatusCode::CREATED, axum::Json(CreatedKey { key: Key::from(&record), secret, credential, pusher })))
}

/// List an app's keys, revoked ones included, oldest first.
#[utoipa::path(
    get, path = "/v1/apps/{app}/keys", tag = "keys",
    params(("app" = String, Path, description = "App id"), PageQuery),
    security(("tenant" = [])),
    responses((status = 200, body = Page<Key>), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub(crate) async fn list_keys(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(path): Path<AppPath>,
    Query(query): Query<PageQuery>,
) -> Result<axum::Json<Page<Key>>, ApiError> {
    let app = owned_app_id(&state, &tenant, &path.app).await?;
    let page = state.store.list_keys(&app, &query.request()?).await?;
    Ok(axum::Json(Page {
        items: page.items.iter().map(Key::from).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    }))
}

/// Revoke a key: REST calls with it fail at once, and connections whose tokens it signed
/// are closed (4403) on every edge.
#[utoipa::path(
    delete, path = "/v1/apps/{app}/keys/{key}", tag = "keys",
    params(("app" = String, Path, description = "App id"), ("key" = String, Path, description = "Key id")),
    security(("tenant" = [])),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub(crate) async fn revoke_key(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(path): Path<KeyPath>,
) -> Result<StatusCode, ApiError> {
    let app = owned_app_id(&state, &tenant, &path.app).await?;
    let key = KeyId::new(&path.key).map_err(|_| ApiError::NotFound("key"))?;
    if !state.store.revoke_key(&app, &key, clock::unix_millis()).await? {
        return Err(ApiError::NotFound("key"));
    }
    state.cache.forget_key(&key);
    state.announce(&app, ConfigChangeKind::KeyRevoked(key.to_string())).await;
    tracing::info!(app = %app, key = %key, "key revoked");
    Ok(StatusCode::NO_CONTENT)
}

//! Apps: `POST/GET /v1/apps`, `GET/PATCH/DELETE /v1/apps/{app}`. An app's settings appear
//! at the top level of its representation, and `PATCH` is a JSON merge patch of them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use signalbox_bus::Retention;
use signalbox_core::{AppId, AppSettings, clock};
use signalbox_proto::wire::ConfigChangeKind;
use signalbox_store::AppRecord;
use utoipa::ToSchema;

use super::tenants::display_name;
use super::{Body, Page, PageQuery, Path, Query, app_id, encode_cursor};
use crate::ApiState;
use crate::auth::Tenant;
use crate::error::{ApiError, Problem};

/// An app and its settings.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct App {
    id: AppId,
    name: String,
    /// Milliseconds since the Unix epoch.
    created_at: i64,
    updated_at: i64,
    #[serde(flatten)]
    settings: AppSettings,
}

impl From<&AppRecord> for App {
    fn from(app: &AppRecord) -> Self {
        Self {
            id: app.id.clone(),
            name: app.name.clone(),
            created_at: app.created_at,
            updated_at: app.updated_at,
            settings: app.settings.clone(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CreateApp {
    /// A display name (1-200 characters).
    name: String,
    /// Any settings (e.g. `limits`); the rest take their defaults.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    settings: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AppPath {
    app: String,
}

/// Create an app.
#[utoipa::path(
    post, path = "/v1/apps", tag = "apps",
    request_body = CreateApp,
    security(("tenant" = [])),
    responses(
        (status = 201, body = App),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`limit_reached`: the tenant has as many apps as the operator allows (100 by default)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or settings", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_app(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Body(body): Body<CreateApp>,
) -> Result<impl IntoResponse, ApiError> {
    let name = display_name(&body.name)?;
    let settings = AppSettings::from_json(serde_json::Value::Object(body.settings))?;
    let limit = state.limits.apps_per_tenant;
    if state.store.count_apps(&tenant.id).await? >= i64::from(limit) {
        return Err(ApiError::LimitReached(format!(
            "the tenant has {limit} apps, the most the operator allows: delete one first"
        )));
    }
    let now = clock::unix_millis();
    let app =
        AppRecord { id: AppId::generate(), tenant_id: tenant.id, name, settings, created_at: now, updated_at: now };
    state.store.create_app(&app).await?;
    tracing::info!(tenant = %app.tenant_id, app = %app.id, "app created");
    Ok((StatusCode::CREATED, axum::Json(App::from(&app))))
}

/// List the tenant's apps, oldest first.
#[utoipa::path(
    get, path = "/v1/apps", tag = "apps",
    params(PageQuery),
    security(("tenant" = [])),
    responses((status = 200, body = Page<App>), (status = 401, body = Problem, content_type = "application/problem+json"))
)]
pub(crate) async fn list_apps(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Query(query): Query<PageQuery>,
) -> Result<axum::Json<Page<App>>, ApiError> {
    let page = state.store.list_apps(&tenant.id, &query.request()?).await?;
    Ok(axum::Json(Page {
        items: page.items.iter().map(App::from).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    }))
}

async fn owned_app(state: &ApiState, tenant: &signalbox_store::TenantRecord, raw: &str) -> Result<AppRecord, ApiError> {
    let id = app_id(raw)?;
    state.store.app_of_tenant(&tenant.id, &id).await?.ok_or(ApiError::NotFound("app"))
}

/// Get an app.
#[utoipa::path(
    get, path = "/v1/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "App id")),
    security(("tenant" = [])),
    responses((status = 200, body = App), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub(crate) async fn get_app(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(path): Path<AppPath>,
) -> Result<axum::Json<App>, ApiError> {
    Ok(axum::Json(App::from(&owned_app(&state, &tenant, &path.app).await?)))
}

/// Rename an app or change its settings (a JSON merge patch: `null` resets a setting).
#[utoipa::path(
    patch, path = "/v1/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "App id")),
    request_body(content = Object, description = "`name` and/or settings to merge", content_type = "application/json"),
    security(("tenant" = [])),
    responses(
        (status = 200, body = App),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update_app(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(path): Path<AppPath>,
    Body(patch): Body<serde_json::Map<String, serde_json::Value>>,
) -> Result<axum::Json<App>, ApiError> {
    let mut app = owned_app(&state, &tenant, &path.app).await?;
    let mut patch = patch;
    if let Some(name) = patch.remove("name") {
        let name = name.as_str().ok_or(ApiError::InvalidField { field: "name", reason: "must be a string".into() })?;
        app.name = display_name(name)?;
    }
    app.settings = app.settings.merge_patch(&serde_json::Value::Object(patch))?;
    app.updated_at = clock::unix_millis();
    if !state.store.update_app(&app).await? {
        return Err(ApiError::NotFound("app"));
    }
    state.cache.forget_app(&app.id);
    if app.settings.history.is_enabled() {
        // New retention applies to the stored messages now, not at the next publish.
        state.journal.configure(&app.id, Retention::from(&app.settings.history)).await?;
    }
    state.announce(&app.id, ConfigChangeKind::SettingsChanged(true)).await;
    Ok(axum::Json(App::from(&app)))
}

/// Delete an app, its keys and memberships; its connections are closed (4001).
#[utoipa::path(
    delete, path = "/v1/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "App id")),
    security(("tenant" = [])),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub(crate) async fn delete_app(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(path): Path<AppPath>,
) -> Result<StatusCode, ApiError> {
    let id = app_id(&path.app)?;
    if !state.store.delete_app(&tenant.id, &id).await? {
        return Err(ApiError::NotFound("app"));
    }
    state.cache.forget_app(&id);
    if let Err(err) = state.journal.remove(&id).await {
        tracing::warn!(app = %id, error = %err, "could not remove a deleted app's history");
    }
    state.announce(&id, ConfigChangeKind::AppDeleted(true)).await;
    tracing::info!(tenant = %tenant.id, app = %id, "app deleted");
    Ok(StatusCode::NO_CONTENT)
}

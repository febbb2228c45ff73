//! An app's webhooks: `POST/GET /v1/apps/{app}/webhooks`, `GET/PATCH/DELETE …/{id}`, the
//! delivery log at `…/{id}/deliveries` and a test call at `…/{id}/test`. Managed with the
//! tenant token. The signing secret is shown when created and when rotated, never again.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use signalbox_core::{AppId, WebhookEvent, WebhookEvents, WebhookId, clock, ids};
use signalbox_proto::wire::ConfigChangeKind;
use signalbox_store::{AttemptRecord, WebhookRecord};
use utoipa::{IntoParams, ToSchema};

use super::{Body, Page, PageQuery, Path, Query, app_id, encode_cursor};
use crate::ApiState;
use crate::auth::Tenant;
use crate::error::{ApiError, Problem};
use crate::webhooks::client::Call;
use crate::webhooks::targets;

/// Webhooks one app may have.
const MAX_WEBHOOKS_PER_APP: usize = 10;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateWebhook {
    /// Where events are POSTed: `https://…` (or `http://`).
    #[schema(max_length = 2048)]
    url: String,
    /// The events to send: `connect`, `connected`, `disconnected`, `event`.
    #[schema(min_items = 1)]
    events: Vec<WebhookEvent>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateWebhook {
    #[schema(max_length = 2048)]
    url: Option<String>,
    #[schema(min_items = 1)]
    events: Option<Vec<WebhookEvent>>,
    /// Makes a new secret (shown in the answer). The current one stays valid beside it until
    /// `drop_previous_secret`, so receivers can switch without a gap.
    #[serde(default)]
    rotate_secret: bool,
    /// Ends a rotation: only the newest secret signs from now on.
    #[serde(default)]
    drop_previous_secret: bool,
}

/// A webhook (never with its secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Webhook {
    id: WebhookId,
    url: String,
    events: Vec<WebhookEvent>,
    /// A rotation is under way: requests carry two signatures.
    rotating: bool,
    created_at: i64,
    updated_at: i64,
}

impl From<&WebhookRecord> for Webhook {
    fn from(w: &WebhookRecord) -> Self {
        Self {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w.events.iter().collect(),
            rotating: w.previous_secret_sealed.is_some(),
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A webhook with its (new) secret: shown only now.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookWithSecret {
    #[serde(flatten)]
    webhook: Webhook,
    /// Verifies the `Signalbox-Signature` of every request (see docs/webhooks.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AppPath {
    app: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WebhookPath {
    app: String,
    webhook: String,
}

async fn owned_app(state: &ApiState, tenant: &signalbox_store::TenantRecord, raw: &str) -> Result<AppId, ApiError> {
    let id = app_id(raw)?;
    state.store.app_of_tenant(&tenant.id, &id).await?.map(|a| a.id).ok_or(ApiError::NotFound("app"))
}

async fn owned_webhook(
    state: &ApiState,
    tenant: &signalbox_store::TenantRecord,
    path: &WebhookPath,
) -> Result<WebhookRecord, ApiError> {
    let app = owned_app(state, tenant, &path.app).await?;
    let id = WebhookId::new(&path.webhook).map_err(|_| ApiError::NotFound("webhook"))?;
    state.store.webhook(&app, &id).await?.ok_or(ApiError::NotFound("webhook"))
}

fn events_of(events: Vec<WebhookEvent>) -> Result<WebhookEvents, ApiError> {
    if events.is_empty() {
        return Err(ApiError::InvalidField { field: "events", reason: "name at least one event".into() });
    }
    Ok(events.into_iter().collect())
}

async fn checked_url(state: &ApiState, url: &str) -> Result<String, ApiError> {
    targets::check_url(url, state.webhook_client.policy())
        .await
        .map(|u| u.to_string())
        .map_err(|e| ApiError::InvalidField { field: "url", reason: e.to_string() })
}

fn new_secret() -> String {
    format!("whsec_{}", ids::random_token(32))
}

/// Create a webhook.
#[utoipa::path(
    post, path = "/v1/apps/{app}/webhooks", tag = "webhooks",
    params(("app" = String, Path, description = "App id")),
    request_body = CreateWebhook,
    security(("tenant" = [])),
    responses(
        (status = 201, description = "Created; the secret is shown only now", body = WebhookWithSecret),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The app has the maximum number of webhooks", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_webhook(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(path): Path<AppPath>,
    Body(body): Body<CreateWebhook>,
) -> Result<impl IntoResponse, ApiError> {
    let app = owned_app(&state, &tenant, &path.app).await?;
    let events = events_of(body.events)?;
    let url = checked_url(&state, &body.url).await?;
    if state.store.webhooks_of_app(&app).await?.len() >= MAX_WEBHOOKS_PER_APP {
        return Err(ApiError::Conflict("an app has at most 10 webhooks"));
    }
    let id = WebhookId::generate();
    let secret = new_secret();
    let now = clock::unix_millis();
    let record = WebhookRecord {
        secret_sealed: state.master_key.seal(secret.as_bytes(), id.as_str()),
        id,
        app_id: app.clone(),
        url,
        events,
        previous_secret_sealed: None,
        created_at: now,
        updated_at: now,
    };
    state.store.create_webhook(&record).await?;
    changed(&state, &app).await;
    tracing::info!(app = %app, webhook = %record.id, events = %record.events.to_list(), "webhook created");
    Ok((StatusCode::CREATED, axum::Json(WebhookWithSecret { webhook: Webhook::from(&record), secret: Some(secret) })))
}

/// List an app's webhooks, oldest first.
#[utoipa::path(
    get, path = "/v1/apps/{app}/webhooks", tag = "webhooks",
    params(("app" = String, Path, description = "App id"), PageQuery),
    security(("tenant" = [])),
    responses((status = 200, body = Page<Webhook>), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub(crate) async fn list_webhooks(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(path): Path<AppPath>,
    Query(query): Query<PageQuery>,
) -> Result<axum::Json<Page<Webhook>>, ApiError> {
    let app = owned_app(&state, &tenant, &path.app).await?;
    let page = state.store.list_webhooks(&app, &query.request()?).await?;
    Ok(axum::Json(Page {
        items: page.items.iter().map(Webhook::from).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    }))
}

/// A webhook.
#[utoipa::path(
    get, path = "/v1/apps/{app}/webhooks/{webhook}", tag = "webhooks",
    params(("app" = String, Path, description = "App id"), ("webhook" = String, Path, description = "Webhook id")),
    security(("tenant" = [])),
    responses((status = 200, body = Webhook), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub(crate) async fn get_webhook(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(path): Path<WebhookPath>,
) -> Result<axum::Json<Webhook>, ApiError> {
    Ok(axum::Json(Webhook::from(&owned_webhook(&state, &tenant, &path).await?)))
}

/// Change a webhook's URL or events, or rotate its secret.
#[utoipa::path(
    patch, path = "/v1/apps/{app}/webhooks/{webhook}", tag = "webhooks",
    params(("app" = String, Path, description = "App id"), ("webhook" = String, Path, description = "Webhook id")),
    request_body = UpdateWebhook,
    security(("tenant" = [])),
    responses(
        (status = 200, description = "Updated; `secret` is present when it was rotated", body = WebhookWithSecret),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update_webhook(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(path): Path<WebhookPath>,
    Body(body): Body<UpdateWebhook>,
) -> Result<axum::Json<WebhookWithSecret>, ApiError> {
    let mut record = owned_webhook(&state, &tenant, &path).await?;
    if body.rotate_secret && body.drop_previous_secret {
        return Err(ApiError::InvalidField {
            field: "rotate_secret",
            reason: "rotate, then drop the previous secret once receivers use the new one".into(),
        });
    }
    if let Some(url) = &body.url {
        record.url = checked_url(&state, url).await?;
    }
    if let Some(events) = body.events {
        record.events = events_of(events)?;
    }
    let mut secret = None;
    if body.rotate_secret {
        let fresh = new_secret();
        record.previous_secret_sealed = Some(std::mem::replace(
            &mut record.secret_sealed,
            state.master_key.seal(fresh.as_bytes(), record.id.as_str()),
        ));
        secret = Some(fresh);
    }
    if body.drop_previous_secret {
        record.previous_secret_sealed = None;
    }
    record.updated_at = clock::unix_millis();
    if !state.store.update_webhook(&record).await? {
        return Err(ApiError::NotFound("webhook"));
    }
    changed(&state, &record.app_id).await;
    tracing::info!(app = %record.app_id, webhook = %record.id, rotated = secret.is_some(), "webhook updated");
    Ok(axum::Json(WebhookWithSecret { webhook: Webhook::from(&record), secret }))
}

/// Delete a webhook, with the deliveries it is still owed.
#[utoipa::path(
    delete, path = "/v1/apps/{app}/webhooks/{webhook}", tag = "webhooks",
    params(("app" = String, Path, description = "App id"), ("webhook" = String, Path, description = "Webhook id")),
    security(("tenant" = [])),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub(crate) async fn delete_webhook(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(path): Path<WebhookPath>,
) -> Result<StatusCode, ApiError> {
    let record = owned_webhook(&state, &tenant, &path).await?;
    if !state.store.delete_webhook(&record.app_id, &record.id).await? {
        return Err(ApiError::NotFound("webhook"));
    }
    changed(&state, &record.app_id).await;
    tracing::info!(app = %record.app_id, webhook = %record.id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Edges learn which events the app's webhooks want; api nodes drop their cached webhooks.
async fn changed(state: &ApiState, app: &AppId) {
    state.cache.forget_app(app);
    state.announce(app, ConfigChangeKind::SettingsChanged(true)).await;
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AttemptsQuery {
    /// Attempts per page (1-100, default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The `next` of the previous page.
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    before: Option<i64>,
}

/// One attempt to deliver an event (or one blocking call).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Attempt {
    id: i64,
    /// The CloudEvents id (`ce-id`).
    event_id: String,
    event: String,
    /// 1 for the first attempt.
    attempt: i32,
    /// `delivered`, `failed` (to be retried), `gave_up`, or `answered` (a blocking call).
    outcome: String,
    /// The HTTP status the webhook answered with, if it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<i32>,
    latency_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Unix milliseconds.
    at: i64,
}

impl From<AttemptRecord> for Attempt {
    fn from(a: AttemptRecord) -> Self {
        Self {
            id: a.id,
            event_id: a.event_id,
            event: a.event_type,
            attempt: a.attempt,
            outcome: a.outcome,
            status: a.status,
            latency_ms: a.latency_ms,
            error: a.error,
            at: a.at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Attempts {
    /// Newest first.
    items: Vec<Attempt>,
    /// Pass as `before` for older attempts; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<i64>,
}

/// The delivery log: the webhook's last 100 attempts, newest first.
#[utoipa::path(
    get, path = "/v1/apps/{app}/webhooks/{webhook}/deliveries", tag = "webhooks",
    params(("app" = String, Path, description = "App id"), ("webhook" = String, Path, description = "Webhook id"), AttemptsQuery),
    security(("tenant" = [])),
    responses((status = 200, body = Attempts), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub(crate) async fn list_deliveries(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(path): Path<WebhookPath>,
    Query(query): Query<AttemptsQuery>,
) -> Result<axum::Json<Attempts>, ApiError> {
    let record = owned_webhook(&state, &tenant, &path).await?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::InvalidField { field: "limit", reason: "must be 1-100".into() });
    }
    if query.before.is_some_and(|before| !(0..=super::MAX_QUERY_INTEGER as i64).contains(&before)) {
        return Err(ApiError::InvalidQuery(format!("before must be 0-{}", super::MAX_QUERY_INTEGER)));
    }
    let items = state.store.attempts(&record.id, query.before, limit).await?;
    let next = (items.len() as i64 == limit).then(|| items.last().map(|a| a.id)).flatten();
    Ok(axum::Json(Attempts { items: items.into_iter().map(Attempt::from).collect(), next }))
}

/// What a test call got.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TestResult {
    /// The webhook answered with a 2xx.
    delivered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    latency_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Send a `signalbox.ping` event to the webhook now, and say what happened.
#[utoipa::path(
    post, path = "/v1/apps/{app}/webhooks/{webhook}/test", tag = "webhooks",
    params(("app" = String, Path, description = "App id"), ("webhook" = String, Path, description = "Webhook id")),
    security(("tenant" = [])),
    responses((status = 200, body = TestResult), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub(crate) async fn test_webhook(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(path): Path<WebhookPath>,
) -> Result<axum::Json<TestResult>, ApiError> {
    let record = owned_webhook(&state, &tenant, &path).await?;
    let webhook =
        state.cache.webhook(&state.store, &state.master_key, &record.id).await?.ok_or(ApiError::NotFound("webhook"))?;
    let id = ids::event_id();
    let body = serde_json::json!({"webhook_id": record.id}).to_string();
    let call = Call {
        url: &webhook.record.url,
        secrets: &webhook.secrets,
        app: &record.app_id,
        kind: "signalbox.ping",
        id: &id,
        time_millis: clock::unix_millis(),
        subject: None,
        user: None,
        body: body.as_bytes(),
        timeout: std::time::Duration::from_secs(10),
        extra_headers: &[],
    };
    let result = match state.webhook_client.call(&call).await {
        Ok(answer) => TestResult {
            delivered: answer.is_success(),
            status: Some(answer.status),
            latency_ms: i64::try_from(answer.latency.as_millis()).unwrap_or(i64::MAX),
            error: None,
        },
        Err(err) => TestResult { delivered: false, status: None, latency_ms: 0, error: Some(err.to_string()) },
    };
    let attempt = AttemptRecord {
        id: 0,
        webhook_id: record.id.clone(),
        event_id: id,
        event_type: "ping".into(),
        attempt: 1,
        outcome: if result.delivered { "delivered".into() } else { "failed".into() },
        status: result.status.map(i32::from),
        latency_ms: result.latency_ms,
        error: result.error.clone(),
        at: clock::unix_millis(),
    };
    state.store.record_attempt(&attempt).await?;
    Ok(axum::Json(result))
}

//! Publishing: to every connection of the app, a user, a group or one connection.
//!
//! A `202` means the routing plane took the message: it reaches the connections that are
//! in the target at that moment, at most once, in publish order per publisher. For a group
//! with history it also means the message is stored (its `position` is in the answer) and
//! recoverable by every member that reconnects within the retention window. A `503` with
//! `Retry-After` means it was not taken (almost always: it went nowhere) and may be retried —
//! with the same `Idempotency-Key`, so that a retry of a request that did go through is not
//! published twice.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use signalbox_bus::Retention;
use signalbox_core::{AppId, ConnectionId, EventName, KeyScope, Scope, clock, ids};
use signalbox_proto::Subject;
use signalbox_proto::wire::{self, Body as Packet, DataKind, Envelope, Target};
use utoipa::ToSchema;

use super::{Body, Path, app_id, connection_id, group_name, user_id};
use crate::ApiState;
use crate::auth::AppKey;
use crate::error::{ApiError, Problem};
use crate::idempotency;

/// Connection ids one publish may exclude.
const MAX_EXCLUDE: usize = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event": "chat", "data": {"text": "hello, room"}}))]
pub(crate) struct Publish {
    /// The event name (1-128 characters).
    #[schema(value_type = signalbox_core::EventName)]
    pub(crate) event: String,
    /// Any JSON value; `null` when absent. At most the app's `max_message_bytes`.
    #[schema(value_type = serde_json::Value)]
    pub(crate) data: Option<Box<RawValue>>,
    /// Connection ids that must not receive the message.
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    /// The message id.
    id: String,
    /// For groups with history: the message's position (stored: recoverable).
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AppPath {
    app: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UserPath {
    app: String,
    user: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GroupPath {
    app: String,
    group: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConnectionPath {
    app: String,
    connection: String,
}

pub(crate) type Published = Result<Response, ApiError>;

/// Where a message goes: its live subject, or its group's history.
pub(crate) struct Route {
    pub(crate) target: Target,
    pub(crate) subject: Subject,
    /// The history subject and retention, for groups that keep history.
    pub(crate) history: Option<(Subject, Retention)>,
}

/// Checks the key and the message, then hands it to the routing plane — once per
/// `Idempotency-Key`. When traces are exported, this is the `publish` span, whose context
/// the envelope carries to the edges' delivery spans.
pub(crate) async fn publish(
    state: &ApiState,
    key: &AppKey,
    scope: &Scope,
    route: Route,
    body: Publish,
    headers: &HeaderMap,
) -> Published {
    let span = if signalbox_bus::trace::enabled() {
        tracing::info_span!("publish", otel.kind = "producer", app = %scope.app, subject = %route.subject, message_id = tracing::field::Empty)
    } else {
        tracing::Span::none()
    };
    tracing::Instrument::instrument(publish_in_span(state, key, scope, route, body, headers, span.clone()), span).await
}

async fn publish_in_span(
    state: &ApiState,
    key: &AppKey,
    scope: &Scope,
    route: Route,
    body: Publish,
    headers: &HeaderMap,
    span: tracing::Span,
) -> Published {
    let app = &scope.app;
    key.require(app, KeyScope::Publish)?;
    let settings = &state.cache.app(&state.store, app).await?.ok_or(ApiError::NotFound("app"))?.settings;
    let event = EventName::new(&body.event)?;
    let data =
        body.data.map_or_else(|| bytes::Bytes::from_static(b"null"), |raw| bytes::Bytes::from(raw.get().to_owned()));
    let limit = settings.limits.max_message_bytes as usize;
    if data.len() > limit {
        return Err(ApiError::PayloadTooLarge { size: data.len(), limit });
    }
    signalbox_core::json::check(&data)?;
    if body.exclude.len() > MAX_EXCLUDE {
        return Err(ApiError::InvalidField {
            field: "exclude",
            reason: format!("at most {MAX_EXCLUDE} connection ids"),
        });
    }
    let exclude = body
        .exclude
        .iter()
        .map(|id| ConnectionId::new(id).map(|id| id.to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::InvalidField { field: "exclude", reason: e.to_string() })?;
    let idempotency_key = idempotency::key(headers, app)?;
    let (traceparent, tracestate) = signalbox_bus::trace::context_of(&span);
    let envelope = Envelope {
        app: app.to_string(),
        hub: scope.hub.to_string(),
        target: Some(route.target),
        exclude,
        event: event.to_string(),
        data,
        data_kind: DataKind::Json as i32,
        id: ids::message_id(),
        position: None,
        published_at_micros: clock::unix_micros(),
        traceparent,
        tracestate,
        origin_connection: None,
        origin_user: None,
    };
    span.record("message_id", envelope.id.as_str());
    let Some(idempotency_key) = idempotency_key else {
        let accepted = deliver(state, app, envelope, route.subject, route.history, None).await?;
        return Ok((StatusCode::ACCEPTED, axum::Json(accepted)).into_response());
    };
    let fingerprint = idempotency::fingerprint(&[
        route.subject.as_str().as_bytes(),
        envelope.event.as_bytes(),
        &envelope.data,
        envelope.exclude.join(",").as_bytes(),
    ]);
    let dedup_id = format!("idem:{}", idempotency_key.raw);
    idempotency::once(state.idempotency.as_ref(), &idempotency_key, fingerprint, || {
        deliver(state, app, envelope, route.subject, route.history, Some(dedup_id))
    })
    .await
}

/// Publishes live, or appends to the group's history (then delivered live by the journal).
async fn deliver(
    state: &ApiState,
    app: &AppId,
    envelope: Envelope,
    subject: Subject,
    history: Option<(Subject, Retention)>,
    dedup_id: Option<String>,
) -> Result<Accepted, ApiError> {
    let id = envelope.id.clone();
    let packet = wire::encode(Packet::Message(envelope));
    let position = match history {
        Some((history, retention)) => {
            let dedup_id = dedup_id.unwrap_or_else(|| id.clone());
            let appended = state.journal.append(app, retention, history, packet, dedup_id).await?;
            Some(appended.seq)
        }
        None => {
            state.bus.publish(subject, packet).await?;
            None
        }
    };
    metrics::counter!("signalbox_messages_in_total", "source" => "rest").increment(1);
    tracing::debug!(app = %app, message_id = %id, position, "message published");
    Ok(Accepted { id, position })
}

/// Send to every connection of the app.
#[utoipa::path(
    post, path = "/v1/apps/{app}/broadcast", tag = "messages",
    params(("app" = String, Path, description = "App id"), ("Idempotency-Key" = Option<String>, Header, description = "Publishes once per key (10 minutes, across api nodes); a repeat gets the first answer")),
    request_body = Publish,
    security(("app_key" = [])),
    responses(
        (status = 202, body = Accepted),
        (status = 400, description = "Not JSON, or JSON nested deeper than 64 levels or holding a number with no finite value (`invalid_json`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is still being handled", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not routed; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn broadcast(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<AppPath>,
    headers: HeaderMap,
    Body(body): Body<Publish>,
) -> Published {
    let app = app_id(&path.app)?;
    let route =
        Route { target: Target::All(true), subject: state.subjects.all(&Scope::native(app.clone())), history: None };
    publish(&state, &key, &Scope::native(app), route, body, &headers).await
}

/// Send to every connection of a user.
#[utoipa::path(
    post, path = "/v1/apps/{app}/users/{user}/messages", tag = "messages",
    params(("app" = String, Path, description = "App id"), ("user" = signalbox_core::UserId, Path, description = "User id"), ("Idempotency-Key" = Option<String>, Header, description = "Publishes once per key (10 minutes, across api nodes); a repeat gets the first answer")),
    request_body = Publish,
    security(("app_key" = [])),
    responses(
        (status = 202, body = Accepted),
        (status = 400, description = "Not JSON, or JSON nested deeper than 64 levels or holding a number with no finite value (`invalid_json`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is still being handled", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn to_user(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<UserPath>,
    headers: HeaderMap,
    Body(body): Body<Publish>,
) -> Published {
    let app = app_id(&path.app)?;
    let user = user_id(&path.user)?;
    let subject = state.subjects.user(&Scope::native(app.clone()), &user);
    let route = Route { target: Target::User(user.to_string()), subject, history: None };
    publish(&state, &key, &Scope::native(app), route, body, &headers).await
}

/// Send to every connection in a group.
#[utoipa::path(
    post, path = "/v1/apps/{app}/groups/{group}/messages", tag = "messages",
    params(("app" = String, Path, description = "App id"), ("group" = signalbox_core::GroupName, Path, description = "Group name"), ("Idempotency-Key" = Option<String>, Header, description = "Publishes once per key (10 minutes, across api nodes); a repeat gets the first answer")),
    request_body = Publish,
    security(("app_key" = [])),
    responses(
        (status = 202, body = Accepted),
        (status = 400, description = "Not JSON, or JSON nested deeper than 64 levels or holding a number with no finite value (`invalid_json`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is still being handled", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn to_group(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<GroupPath>,
    headers: HeaderMap,
    Body(body): Body<Publish>,
) -> Published {
    let app = app_id(&path.app)?;
    let group = group_name(&path.group)?;
    let scope = Scope::native(app.clone());
    let history = match state.cache.app(&state.store, &app).await? {
        Some(record) if record.settings.history.keeps(&group) => {
            Some((state.subjects.history(&scope, &group), Retention::from(&record.settings.history)))
        }
        _ => None,
    };
    let route =
        Route { target: Target::Group(group.to_string()), subject: state.subjects.group(&scope, &group), history };
    publish(&state, &key, &Scope::native(app), route, body, &headers).await
}

/// Send to one connection.
#[utoipa::path(
    post, path = "/v1/apps/{app}/connections/{connection}/messages", tag = "messages",
    params(("app" = String, Path, description = "App id"), ("connection" = String, Path, description = "Connection id"), ("Idempotency-Key" = Option<String>, Header, description = "Publishes once per key (10 minutes, across api nodes); a repeat gets the first answer")),
    request_body = Publish,
    security(("app_key" = [])),
    responses(
        (status = 202, body = Accepted),
        (status = 400, description = "Not JSON, or JSON nested deeper than 64 levels or holding a number with no finite value (`invalid_json`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is still being handled", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not a connection id", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn to_connection(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<ConnectionPath>,
    headers: HeaderMap,
    Body(body): Body<Publish>,
) -> Published {
    let app = app_id(&path.app)?;
    let connection = connection_id(&path.connection)?;
    let route = Route {
        target: Target::Connection(connection.to_string()),
        subject: state.connection_subject(&app, &connection),
        history: None,
    };
    publish(&state, &key, &Scope::native(app), route, body, &headers).await
}

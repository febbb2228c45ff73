//! Publishing: to every connection of the app, a user, a group or one connection.
//!
//! A `202` means the routing plane took the message: it reaches the connections that are
//! in the target at that moment, at most once, in publish order per publisher. A `503` with
//! `Retry-After` means it went nowhere and may be retried.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use signalbox_core::{AppId, ConnectionId, EventName, KeyScope, Scope, clock, ids};
use signalbox_proto::Subject;
use signalbox_proto::wire::{self, Body as Packet, DataKind, Envelope, Target};
use utoipa::ToSchema;

use super::{Body, Path, app_id, connection_id, group_name, user_id};
use crate::ApiState;
use crate::auth::AppKey;
use crate::error::{ApiError, Problem};

/// Connection ids one publish may exclude.
const MAX_EXCLUDE: usize = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Publish {
    /// The event name (1-128 characters).
    event: String,
    /// Any JSON value; `null` when absent. At most the app's `max_message_bytes`.
    #[schema(value_type = Option<Object>)]
    data: Option<Box<RawValue>>,
    /// Connection ids that must not receive the message.
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    /// The message id.
    id: String,
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

type Published = Result<(StatusCode, axum::Json<Accepted>), ApiError>;

/// Checks the key and the message, then hands it to the routing plane.
async fn publish(
    state: &ApiState,
    key: &AppKey,
    app: &AppId,
    target: Target,
    subject: Subject,
    body: Publish,
) -> Published {
    key.require(app, KeyScope::Publish)?;
    let settings = &state.cache.app(&state.store, app).await?.ok_or(ApiError::NotFound("app"))?.settings;
    let event = EventName::new(&body.event)?;
    let data =
        body.data.map_or_else(|| bytes::Bytes::from_static(b"null"), |raw| bytes::Bytes::from(raw.get().to_owned()));
    let limit = settings.limits.max_message_bytes as usize;
    if data.len() > limit {
        return Err(ApiError::PayloadTooLarge { size: data.len(), limit });
    }
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
    let id = ids::message_id();
    let envelope = Envelope {
        app: app.to_string(),
        hub: signalbox_core::HubName::native().to_string(),
        target: Some(target),
        exclude,
        event: event.to_string(),
        data,
        data_kind: DataKind::Json as i32,
        id: id.clone(),
        position: None,
        published_at_micros: clock::unix_micros(),
        traceparent: String::new(),
        tracestate: String::new(),
        origin_connection: None,
    };
    state.bus.publish(subject, wire::encode(Packet::Message(envelope))).await?;
    metrics::counter!("signalbox_messages_in_total", "source" => "rest").increment(1);
    Ok((StatusCode::ACCEPTED, axum::Json(Accepted { id })))
}

/// Send to every connection of the app.
#[utoipa::path(
    post, path = "/v1/apps/{app}/broadcast", tag = "messages",
    params(("app" = String, Path, description = "App id")),
    request_body = Publish,
    security(("app_key" = [])),
    responses(
        (status = 202, body = Accepted),
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
    Body(body): Body<Publish>,
) -> Published {
    let app = app_id(&path.app)?;
    let subject = state.subjects.all(&Scope::native(app.clone()));
    publish(&state, &key, &app, Target::All(true), subject, body).await
}

/// Send to every connection of a user.
#[utoipa::path(
    post, path = "/v1/apps/{app}/users/{user}/messages", tag = "messages",
    params(("app" = String, Path, description = "App id"), ("user" = String, Path, description = "User id")),
    request_body = Publish,
    security(("app_key" = [])),
    responses(
        (status = 202, body = Accepted),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn to_user(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<UserPath>,
    Body(body): Body<Publish>,
) -> Published {
    let app = app_id(&path.app)?;
    let user = user_id(&path.user)?;
    let subject = state.subjects.user(&Scope::native(app.clone()), &user);
    publish(&state, &key, &app, Target::User(user.to_string()), subject, body).await
}

/// Send to every connection in a group.
#[utoipa::path(
    post, path = "/v1/apps/{app}/groups/{group}/messages", tag = "messages",
    params(("app" = String, Path, description = "App id"), ("group" = String, Path, description = "Group name")),
    request_body = Publish,
    security(("app_key" = [])),
    responses(
        (status = 202, body = Accepted),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn to_group(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<GroupPath>,
    Body(body): Body<Publish>,
) -> Published {
    let app = app_id(&path.app)?;
    let group = group_name(&path.group)?;
    let subject = state.subjects.group(&Scope::native(app.clone()), &group);
    publish(&state, &key, &app, Target::Group(group.to_string()), subject, body).await
}

/// Send to one connection.
#[utoipa::path(
    post, path = "/v1/apps/{app}/connections/{connection}/messages", tag = "messages",
    params(("app" = String, Path, description = "App id"), ("connection" = String, Path, description = "Connection id")),
    request_body = Publish,
    security(("app_key" = [])),
    responses(
        (status = 202, body = Accepted),
        (status = 404, description = "Not a connection id", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn to_connection(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<ConnectionPath>,
    Body(body): Body<Publish>,
) -> Published {
    let app = app_id(&path.app)?;
    let connection = connection_id(&path.connection)?;
    let node = connection.node().ok_or(ApiError::NotFound("connection"))?;
    let subject = state.subjects.node(&node, &app);
    publish(&state, &key, &app, Target::Connection(connection.to_string()), subject, body).await
}

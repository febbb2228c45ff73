//! Azure SignalR Service's data-plane REST API, so that serverless backends written for it
//! (the Management SDK, Azure Functions output bindings, plain REST) work by changing the
//! endpoint and key. Both dialects: `/api/v1/hubs/{hub}/…` and `/api/hubs/{hub}/…/:send?
//! api-version=…`. A hub is a namespace inside the app that signed the request.
//!
//! Auth is Azure's: `Authorization: Bearer <JWT>`, HS256 with the access key `{key_id}.{secret}`,
//! `kid` = the key id, `aud` = the URL called (compared without the query string).
//! Messages are `{"target": …, "arguments": […]}` and reach SignalR clients as Invocations.
//!
//! axum cannot route a literal segment such as `:send`, so actions are captured and matched.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, head, post, put};
use http::request::Parts;
use serde::Deserialize;
use serde_json::value::RawValue;
use signalbox_core::signalr::{access_key, peek_key_id, verify_azure};
use signalbox_core::token::TokenError;
use signalbox_core::{CloseCode, ConnectionId, GroupName, HubName, KeyScope, Scope, UserId, clock};
use signalbox_proto::wire::{CloseOp, ControlOp, PresenceQuery, Target};

use super::messages::{Publish, Published, Route, publish};
use super::{Path, Query, connection_id, group_name, user_id};
use crate::ApiState;
use crate::auth::AppKey;
use crate::error::ApiError;

/// The longest user-group membership `ttl` (seconds), as for `/v1`.
const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;

/// The Azure SignalR REST routes.
pub(crate) fn router() -> Router<Arc<ApiState>> {
    Router::new()
        // /api/v1/hubs/{hub}/…
        .route("/api/v1/hubs/{hub}", post(v1_broadcast))
        .route("/api/v1/hubs/{hub}/users/{user}", post(v1_to_user).head(user_exists))
        .route("/api/v1/hubs/{hub}/groups/{group}", post(v1_to_group).head(group_exists))
        .route(
            "/api/v1/hubs/{hub}/connections/{connection}",
            post(v1_to_connection).head(connection_exists).delete(close_connection),
        )
        .route(
            "/api/v1/hubs/{hub}/groups/{group}/connections/{connection}",
            put(add_connection_to_group).delete(remove_connection_from_group),
        )
        .route("/api/v1/hubs/{hub}/groups/{group}/users/{user}", put(add_user_to_group).delete(remove_user_from_group))
        .route(
            "/api/v1/hubs/{hub}/users/{user}/groups/{group}",
            put(add_user_to_group).delete(remove_user_from_group).head(user_in_group),
        )
        .route("/api/v1/hubs/{hub}/users/{user}/groups", delete(remove_user_from_all_groups))
        // /api/hubs/{hub}/…/:send?api-version=…
        .route("/api/hubs/{hub}/{action}", post(hub_action))
        .route("/api/hubs/{hub}/users/{user}", head(user_exists))
        .route("/api/hubs/{hub}/users/{user}/{action}", post(user_action).delete(user_groups_action))
        .route("/api/hubs/{hub}/groups/{group}", head(group_exists))
        .route("/api/hubs/{hub}/groups/{group}/{action}", post(group_action))
        .route("/api/hubs/{hub}/connections/{connection}", head(connection_exists).delete(close_connection))
        .route("/api/hubs/{hub}/connections/{connection}/{action}", post(connection_action))
        .route(
            "/api/hubs/{hub}/groups/{group}/connections/{connection}",
            put(add_connection_to_group).delete(remove_connection_from_group),
        )
        .route(
            "/api/hubs/{hub}/users/{user}/groups/{group}",
            put(add_user_to_group).delete(remove_user_from_group).head(user_in_group),
        )
        .route("/api/health", head(healthy).get(healthy))
        .route("/api/v1/health", head(healthy).get(healthy))
}

async fn healthy() -> StatusCode {
    StatusCode::OK
}

/// An app key proven by an Azure-style JWT.
pub(crate) struct AzureKey {
    key: AppKey,
    app: signalbox_core::AppId,
}

impl FromRequestParts<Arc<ApiState>> for AzureKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        let token = crate::auth::bearer(parts)?;
        let invalid = |err: TokenError| {
            tracing::debug!(error = %err, "refused an Azure SignalR REST token");
            match err {
                TokenError::Expired => ApiError::Unauthorized("the token has expired"),
                TokenError::WrongAudience => ApiError::Unauthorized("the token's audience is not this URL"),
                _ => ApiError::Unauthorized("invalid token"),
            }
        };
        let key_id = peek_key_id(token).map_err(invalid)?;
        state.cache.sync_epoch(state.bus.epoch());
        let key = state
            .cache
            .key(&state.store, &state.master_key, &key_id)
            .await?
            .ok_or(ApiError::Unauthorized("the token's key (kid) is unknown"))?;
        if key.record.revoked_at.is_some() {
            return Err(ApiError::Unauthorized("this app key has been revoked"));
        }
        verify_azure(token, &access_key(&key_id, &key.secret), parts.uri.path()).map_err(invalid)?;
        let app = key.record.app_id.clone();
        crate::auth::authenticated(parts);
        Ok(Self { key: AppKey(key), app })
    }
}

impl AzureKey {
    fn scope(&self, hub: &str, needs: KeyScope) -> Result<Scope, ApiError> {
        self.key.require(&self.app, needs)?;
        let hub = HubName::new(hub).map_err(|e| ApiError::InvalidField { field: "hub", reason: e.to_string() })?;
        Ok(Scope { app: self.app.clone(), hub })
    }
}

/// Azure's message body.
#[derive(Debug, Deserialize)]
struct PayloadMessage {
    target: String,
    #[serde(default)]
    arguments: Option<Box<RawValue>>,
}

#[derive(Debug, Default, Deserialize)]
struct SendQuery {
    /// Connection ids that must not receive the message (repeatable).
    #[serde(default)]
    excluded: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct TtlQuery {
    ttl: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct ReasonQuery {
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HubPath {
    hub: String,
}

#[derive(Debug, Deserialize)]
struct HubActionPath {
    hub: String,
    action: String,
}

#[derive(Debug, Deserialize)]
struct UserPath {
    hub: String,
    user: String,
}

#[derive(Debug, Deserialize)]
struct UserActionPath {
    hub: String,
    user: String,
    action: String,
}

#[derive(Debug, Deserialize)]
struct GroupPath {
    hub: String,
    group: String,
}

#[derive(Debug, Deserialize)]
struct GroupActionPath {
    hub: String,
    group: String,
    action: String,
}

#[derive(Debug, Deserialize)]
struct ConnectionPath {
    hub: String,
    connection: String,
}

#[derive(Debug, Deserialize)]
struct ConnectionActionPath {
    hub: String,
    connection: String,
    action: String,
}

#[derive(Debug, Deserialize)]
struct GroupConnectionPath {
    hub: String,
    group: String,
    connection: String,
}

#[derive(Debug, Deserialize)]
struct UserGroupPath {
    hub: String,
    user: String,
    group: String,
}

fn unknown_action() -> ApiError {
    ApiError::NotFound("route")
}

/// The JSON body of a send: `{target, arguments}`.
fn payload(body: &[u8]) -> Result<Publish, ApiError> {
    let message: PayloadMessage = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidBody(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })?;
    let arguments = message.arguments.filter(|a| a.get() != "null");
    if arguments.as_ref().is_some_and(|a| !a.get().trim_start().starts_with('[')) {
        return Err(ApiError::InvalidField { field: "arguments", reason: "must be an array".into() });
    }
    let data = match arguments {
        Some(arguments) => arguments,
        None => RawValue::from_string("[]".into()).map_err(|e| ApiError::InvalidBody(e.to_string()))?,
    };
    Ok(Publish { event: message.target, data: Some(data), exclude: Vec::new() })
}

async fn send(
    state: &ApiState,
    key: &AzureKey,
    scope: &Scope,
    route: Route,
    excluded: Vec<String>,
    body: &[u8],
    headers: &HeaderMap,
) -> Published {
    let mut message = payload(body)?;
    message.exclude = excluded;
    let response = publish(state, &key.key, scope, route, message, headers).await?;
    // Azure answers a send with 202 and no body.
    Ok((response.status(), ()).into_response())
}

async fn broadcast(
    state: &ApiState,
    key: &AzureKey,
    hub: &str,
    excluded: Vec<String>,
    body: &[u8],
    headers: &HeaderMap,
) -> Published {
    let scope = key.scope(hub, KeyScope::Publish)?;
    let subject = state.subjects.all(&scope);
    send(state, key, &scope, Route { target: Target::All(true), subject, history: None }, excluded, body, headers).await
}

async fn to_user(
    state: &ApiState,
    key: &AzureKey,
    hub: &str,
    user: &str,
    body: &[u8],
    headers: &HeaderMap,
) -> Published {
    let scope = key.scope(hub, KeyScope::Publish)?;
    let user = user_id(user)?;
    let subject = state.subjects.user(&scope, &user);
    send(
        state,
        key,
        &scope,
        Route { target: Target::User(user.to_string()), subject, history: None },
        Vec::new(),
        body,
        headers,
    )
    .await
}

async fn to_group(
    state: &ApiState,
    key: &AzureKey,
    hub: &str,
    group: &str,
    excluded: Vec<String>,
    body: &[u8],
    headers: &HeaderMap,
) -> Published {
    let scope = key.scope(hub, KeyScope::Publish)?;
    let group = group_name(group)?;
    let subject = state.subjects.group(&scope, &group);
    send(
        state,
        key,
        &scope,
        Route { target: Target::Group(group.to_string()), subject, history: None },
        excluded,
        body,
        headers,
    )
    .await
}

async fn to_connection(
    state: &ApiState,
    key: &AzureKey,
    hub: &str,
    connection: &str,
    body: &[u8],
    headers: &HeaderMap,
) -> Published {
    let scope = key.scope(hub, KeyScope::Publish)?;
    let connection = connection_id(connection)?;
    let subject = state.connection_subject(&scope.app, &connection);
    send(
        state,
        key,
        &scope,
        Route { target: Target::Connection(connection.to_string()), subject, history: None },
        Vec::new(),
        body,
        headers,
    )
    .await
}

async fn v1_broadcast(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<HubPath>,
    Query(query): Query<SendQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Published {
    broadcast(&state, &key, &path.hub, query.excluded, &body, &headers).await
}

async fn v1_to_user(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<UserPath>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Published {
    to_user(&state, &key, &path.hub, &path.user, &body, &headers).await
}

async fn v1_to_group(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<GroupPath>,
    Query(query): Query<SendQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Published {
    to_group(&state, &key, &path.hub, &path.group, query.excluded, &body, &headers).await
}

async fn v1_to_connection(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<ConnectionPath>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Published {
    to_connection(&state, &key, &path.hub, &path.connection, &body, &headers).await
}

/// `POST /api/hubs/{hub}/:send` and `/:closeConnections`.
async fn hub_action(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<HubActionPath>,
    Query(query): Query<SendQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Published {
    match path.action.as_str() {
        ":send" => broadcast(&state, &key, &path.hub, query.excluded, &body, &headers).await,
        ":closeConnections" => Err(ApiError::NotImplemented(
            "closing every connection of a hub is not supported; close users', groups' or single connections",
        )),
        _ => Err(unknown_action()),
    }
}

/// `POST /api/hubs/{hub}/users/{user}/:send` and `/:closeConnections`.
async fn user_action(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<UserActionPath>,
    Query(reason): Query<ReasonQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Published {
    match path.action.as_str() {
        ":send" => to_user(&state, &key, &path.hub, &path.user, &body, &headers).await,
        ":closeConnections" => {
            let scope = key.scope(&path.hub, KeyScope::Groups)?;
            let user = user_id(&path.user)?;
            state.control_user(&scope, &user, close_op(reason.reason)).await?;
            Ok(StatusCode::OK.into_response())
        }
        _ => Err(unknown_action()),
    }
}

/// `DELETE /api/hubs/{hub}/users/{user}/groups`: the user leaves every group.
async fn user_groups_action(
    state: State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<UserActionPath>,
) -> Result<StatusCode, ApiError> {
    if path.action != "groups" {
        return Err(unknown_action());
    }
    remove_from_all(&state, &key, &path.hub, &path.user).await
}

/// `POST /api/hubs/{hub}/groups/{group}/:send` and `/:closeConnections`.
async fn group_action(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<GroupActionPath>,
    Query(query): Query<SendQuery>,
    Query(reason): Query<ReasonQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Published {
    match path.action.as_str() {
        ":send" => to_group(&state, &key, &path.hub, &path.group, query.excluded, &body, &headers).await,
        ":closeConnections" => {
            let scope = key.scope(&path.hub, KeyScope::Groups)?;
            let group = group_name(&path.group)?;
            let members = state
                .presence(&scope, PresenceQuery { group: Some(group.to_string()), user: None, prefix: None })
                .await;
            for member in members {
                let Ok(id) = ConnectionId::new(&member.connection_id) else { continue };
                if query.excluded.contains(&member.connection_id) {
                    continue;
                }
                // A connection gone meanwhile is what was asked for.
                let _ = state.control_connection(&scope, &id, close_op(reason.reason.clone())).await;
            }
            Ok(StatusCode::OK.into_response())
        }
        _ => Err(unknown_action()),
    }
}

/// `POST /api/hubs/{hub}/connections/{connection}/:send`; `DELETE …/groups` (leave all groups).
async fn connection_action(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<ConnectionActionPath>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Published {
    match path.action.as_str() {
        ":send" => to_connection(&state, &key, &path.hub, &path.connection, &body, &headers).await,
        _ => Err(unknown_action()),
    }
}

fn close_op(reason: Option<String>) -> ControlOp {
    let code = CloseCode::ClosedByBackend;
    let reason = reason.map_or_else(|| code.default_reason().to_owned(), |r| r.chars().take(120).collect());
    ControlOp::Close(CloseOp { code: u32::from(code.code()), reason })
}

async fn connection_exists(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<ConnectionPath>,
) -> Result<StatusCode, ApiError> {
    let scope = key.scope(&path.hub, KeyScope::Read)?;
    let id = connection_id(&path.connection)?;
    state.control_connection(&scope, &id, ControlOp::Query(true)).await?;
    Ok(StatusCode::OK)
}

async fn close_connection(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<ConnectionPath>,
    Query(reason): Query<ReasonQuery>,
) -> Result<StatusCode, ApiError> {
    let scope = key.scope(&path.hub, KeyScope::Groups)?;
    let id = connection_id(&path.connection)?;
    match state.control_connection(&scope, &id, close_op(reason.reason)).await {
        // Closing a connection that is gone is done.
        Ok(_) | Err(ApiError::NotFound(_)) => Ok(StatusCode::OK),
        Err(err) => Err(err),
    }
}

async fn group_exists(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<GroupPath>,
) -> Result<StatusCode, ApiError> {
    let scope = key.scope(&path.hub, KeyScope::Read)?;
    let group = group_name(&path.group)?;
    let members =
        state.presence(&scope, PresenceQuery { group: Some(group.to_string()), user: None, prefix: None }).await;
    Ok(if members.is_empty() { StatusCode::NOT_FOUND } else { StatusCode::OK })
}

async fn user_exists(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<UserPath>,
) -> Result<StatusCode, ApiError> {
    let scope = key.scope(&path.hub, KeyScope::Read)?;
    let user = user_id(&path.user)?;
    let connections =
        state.presence(&scope, PresenceQuery { group: None, user: Some(user.to_string()), prefix: None }).await;
    Ok(if connections.is_empty() { StatusCode::NOT_FOUND } else { StatusCode::OK })
}

async fn add_connection_to_group(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<GroupConnectionPath>,
) -> Result<StatusCode, ApiError> {
    let scope = key.scope(&path.hub, KeyScope::Groups)?;
    let group = group_name(&path.group)?;
    let id = connection_id(&path.connection)?;
    state.control_connection(&scope, &id, ControlOp::Join(group.to_string())).await?;
    Ok(StatusCode::OK)
}

async fn remove_connection_from_group(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<GroupConnectionPath>,
) -> Result<StatusCode, ApiError> {
    let scope = key.scope(&path.hub, KeyScope::Groups)?;
    let group = group_name(&path.group)?;
    let id = connection_id(&path.connection)?;
    state.control_connection(&scope, &id, ControlOp::Leave(group.to_string())).await?;
    Ok(StatusCode::OK)
}

async fn join_user(
    state: &ApiState,
    scope: &Scope,
    user: &UserId,
    group: &GroupName,
    ttl: Option<u64>,
) -> Result<StatusCode, ApiError> {
    let now = clock::unix_millis();
    let expires_at = match ttl {
        Some(ttl) if ttl > MAX_TTL_SECONDS => {
            return Err(ApiError::InvalidField { field: "ttl", reason: format!("must be 0-{MAX_TTL_SECONDS}") });
        }
        Some(ttl) => Some(now + i64::try_from(ttl * 1000).unwrap_or(i64::MAX)),
        None => None,
    };
    state.store.add_user_group(&scope.app, &scope.hub, user, group, expires_at, now).await?;
    state.control_user(scope, user, ControlOp::Join(group.to_string())).await?;
    Ok(StatusCode::OK)
}

async fn leave_user(state: &ApiState, scope: &Scope, user: &UserId, group: &GroupName) -> Result<StatusCode, ApiError> {
    state.store.remove_user_group(&scope.app, &scope.hub, user, group).await?;
    state.control_user(scope, user, ControlOp::Leave(group.to_string())).await?;
    Ok(StatusCode::OK)
}

async fn add_user_to_group(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<UserGroupPath>,
    Query(query): Query<TtlQuery>,
) -> Result<StatusCode, ApiError> {
    let scope = key.scope(&path.hub, KeyScope::Groups)?;
    join_user(&state, &scope, &user_id(&path.user)?, &group_name(&path.group)?, query.ttl).await
}

async fn remove_user_from_group(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<UserGroupPath>,
) -> Result<StatusCode, ApiError> {
    let scope = key.scope(&path.hub, KeyScope::Groups)?;
    leave_user(&state, &scope, &user_id(&path.user)?, &group_name(&path.group)?).await
}

async fn user_in_group(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<UserGroupPath>,
) -> Result<StatusCode, ApiError> {
    let scope = key.scope(&path.hub, KeyScope::Read)?;
    let (user, group) = (user_id(&path.user)?, group_name(&path.group)?);
    let groups = state.store.user_groups(&scope.app, &scope.hub, &user, clock::unix_millis()).await?;
    Ok(if groups.contains(&group) { StatusCode::OK } else { StatusCode::NOT_FOUND })
}

async fn remove_from_all(state: &ApiState, key: &AzureKey, hub: &str, user: &str) -> Result<StatusCode, ApiError> {
    let scope = key.scope(hub, KeyScope::Groups)?;
    let user = user_id(user)?;
    for group in state.store.user_groups(&scope.app, &scope.hub, &user, clock::unix_millis()).await? {
        leave_user(state, &scope, &user, &group).await?;
    }
    Ok(StatusCode::OK)
}

async fn remove_user_from_all_groups(
    State(state): State<Arc<ApiState>>,
    key: AzureKey,
    Path(path): Path<UserPath>,
) -> Result<StatusCode, ApiError> {
    remove_from_all(&state, &key, &path.hub, &path.user).await
}

//! Connections, wherever they are: `GET`/`DELETE /v1/apps/{app}/connections/{connection}`,
//! and closing every connection of a user.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use signalbox_core::{CloseCode, ConnectionId, GroupName, KeyScope, Scope, UserId};
use signalbox_proto::wire::{CloseOp, ControlOp};
use utoipa::{IntoParams, ToSchema};

use super::{Path, Query, app_id, connection_id, user_id};
use crate::ApiState;
use crate::auth::AppKey;
use crate::error::{ApiError, Problem};

/// Longest close reason (a WebSocket close frame holds 123 bytes of it).
const MAX_REASON_CHARS: usize = 123;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Connection {
    id: ConnectionId,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<UserId>,
    groups: Vec<GroupName>,
    /// `signalbox.json.v1`, …
    protocol: String,
    /// `websocket`, …
    transport: String,
    /// The edge node holding it.
    node: String,
    /// Seconds since the Unix epoch.
    connected_at: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConnectionPath {
    app: String,
    connection: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UserPath {
    app: String,
    user: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CloseQuery {
    /// Told to the client in the close frame (at most 123 characters; cut to the close
    /// frame's 123 bytes on the wire).
    #[param(max_length = 123)]
    reason: Option<String>,
}

fn close_op(query: CloseQuery) -> Result<ControlOp, ApiError> {
    let reason = query.reason.unwrap_or_else(|| CloseCode::ClosedByBackend.default_reason().to_owned());
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::InvalidField {
            field: "reason",
            reason: format!("at most {MAX_REASON_CHARS} characters"),
        });
    }
    Ok(ControlOp::Close(CloseOp { code: u32::from(CloseCode::ClosedByBackend.code()), reason }))
}

/// Get a connection.
#[utoipa::path(
    get, path = "/v1/apps/{app}/connections/{connection}", tag = "connections",
    params(("app" = String, Path, description = "App id"), ("connection" = String, Path, description = "Connection id")),
    security(("app_key" = [])),
    responses(
        (status = 200, body = Connection),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_connection(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<ConnectionPath>,
) -> Result<axum::Json<Connection>, ApiError> {
    let app = app_id(&path.app)?;
    key.require(&app, KeyScope::Read)?;
    let id = connection_id(&path.connection)?;
    let info = state
        .control_connection(&Scope::native(app.clone()), &id, ControlOp::Query(true))
        .await?
        .ok_or(ApiError::NotFound("connection"))?;
    Ok(axum::Json(Connection {
        id,
        user_id: info.user.and_then(|u| UserId::new(u).ok()),
        groups: info.groups.iter().filter_map(|g| GroupName::new(g).ok()).collect(),
        protocol: info.protocol,
        transport: info.transport,
        node: info.node,
        connected_at: info.connected_at,
    }))
}

/// Close a connection (close code 4000, with the reason given).
#[utoipa::path(
    delete, path = "/v1/apps/{app}/connections/{connection}", tag = "connections",
    params(("app" = String, Path, description = "App id"), ("connection" = String, Path, description = "Connection id"), CloseQuery),
    security(("app_key" = [])),
    responses(
        (status = 204, description = "The connection is closing"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn close_connection(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<ConnectionPath>,
    Query(query): Query<CloseQuery>,
) -> Result<StatusCode, ApiError> {
    let app = app_id(&path.app)?;
    key.require(&app, KeyScope::Groups)?;
    let id = connection_id(&path.connection)?;
    state.control_connection(&Scope::native(app.clone()), &id, close_op(query)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Close every connection of a user, on every node.
#[utoipa::path(
    delete, path = "/v1/apps/{app}/users/{user}/connections", tag = "connections",
    params(("app" = String, Path, description = "App id"), ("user" = signalbox_core::UserId, Path, description = "User id"), CloseQuery),
    security(("app_key" = [])),
    responses(
        (status = 204, description = "The user's connections are closing"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn close_user_connections(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<UserPath>,
    Query(query): Query<CloseQuery>,
) -> Result<StatusCode, ApiError> {
    let app = app_id(&path.app)?;
    key.require(&app, KeyScope::Groups)?;
    let user = user_id(&path.user)?;
    state.control_user(&Scope::native(app), &user, close_op(query)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

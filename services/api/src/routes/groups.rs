//! Group membership: a connection (on whichever node holds it) or a user (every current and
//! future connection of the user, until removed or until `ttl_seconds` pass).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use signalbox_core::{HubName, KeyScope, Scope, clock};
use signalbox_proto::wire::ControlOp;
use utoipa::ToSchema;

use super::{Path, app_id, connection_id, group_name, user_id};
use crate::ApiState;
use crate::auth::AppKey;
use crate::error::{ApiError, Problem};

/// Longest membership TTL: a year.
const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;

#[derive(Debug, Deserialize)]
pub(crate) struct ConnectionPath {
    app: String,
    group: String,
    connection: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UserPath {
    app: String,
    group: String,
    user: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserMembership {
    /// Remove the membership after this many seconds (default: until removed).
    ttl_seconds: Option<u64>,
}

/// Add a connection to a group.
#[utoipa::path(
    put, path = "/v1/apps/{app}/groups/{group}/connections/{connection}", tag = "groups",
    params(
        ("app" = String, Path, description = "App id"),
        ("group" = signalbox_core::GroupName, Path, description = "Group name"),
        ("connection" = String, Path, description = "Connection id"),
    ),
    security(("app_key" = [])),
    responses(
        (status = 204, description = "The connection is in the group"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The connection is in its maximum number of groups", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn add_connection(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<ConnectionPath>,
) -> Result<StatusCode, ApiError> {
    let app = app_id(&path.app)?;
    key.require(&app, KeyScope::Groups)?;
    let group = group_name(&path.group)?;
    let connection = connection_id(&path.connection)?;
    state.control_connection(&Scope::native(app), &connection, ControlOp::Join(group.to_string())).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a connection from a group.
#[utoipa::path(
    delete, path = "/v1/apps/{app}/groups/{group}/connections/{connection}", tag = "groups",
    params(
        ("app" = String, Path, description = "App id"),
        ("group" = signalbox_core::GroupName, Path, description = "Group name"),
        ("connection" = String, Path, description = "Connection id"),
    ),
    security(("app_key" = [])),
    responses(
        (status = 204, description = "The connection is not in the group"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_connection(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<ConnectionPath>,
) -> Result<StatusCode, ApiError> {
    let app = app_id(&path.app)?;
    key.require(&app, KeyScope::Groups)?;
    let group = group_name(&path.group)?;
    let connection = connection_id(&path.connection)?;
    state.control_connection(&Scope::native(app), &connection, ControlOp::Leave(group.to_string())).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a user to a group: every connection of the user, now and until removed.
#[utoipa::path(
    put, path = "/v1/apps/{app}/groups/{group}/users/{user}", tag = "groups",
    params(
        ("app" = String, Path, description = "App id"),
        ("group" = signalbox_core::GroupName, Path, description = "Group name"),
        ("user" = signalbox_core::UserId, Path, description = "User id"),
    ),
    request_body(content = Option<UserMembership>, description = "Optional TTL"),
    security(("app_key" = [])),
    responses(
        (status = 204, description = "The user is in the group"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn add_user(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<UserPath>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let app = app_id(&path.app)?;
    key.require(&app, KeyScope::Groups)?;
    let group = group_name(&path.group)?;
    let user = user_id(&path.user)?;
    let membership: UserMembership = super::optional_body(&body)?;
    let now = clock::unix_millis();
    let expires_at = match membership.ttl_seconds {
        Some(ttl) if ttl == 0 || ttl > MAX_TTL_SECONDS => {
            return Err(ApiError::InvalidField {
                field: "ttl_seconds",
                reason: format!("must be 1-{MAX_TTL_SECONDS}"),
            });
        }
        Some(ttl) => Some(now + i64::try_from(ttl * 1000).unwrap_or(i64::MAX)),
        None => None,
    };
    let hub = HubName::native();
    state.store.add_user_group(&app, &hub, &user, &group, expires_at, now).await?;
    state.control_user(&Scope::native(app), &user, ControlOp::Join(group.to_string())).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a user from a group: from every connection of the user, and for the future.
#[utoipa::path(
    delete, path = "/v1/apps/{app}/groups/{group}/users/{user}", tag = "groups",
    params(
        ("app" = String, Path, description = "App id"),
        ("group" = signalbox_core::GroupName, Path, description = "Group name"),
        ("user" = signalbox_core::UserId, Path, description = "User id"),
    ),
    security(("app_key" = [])),
    responses(
        (status = 204, description = "The user is not in the group"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_user(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<UserPath>,
) -> Result<StatusCode, ApiError> {
    let app = app_id(&path.app)?;
    key.require(&app, KeyScope::Groups)?;
    let group = group_name(&path.group)?;
    let user = user_id(&path.user)?;
    state.store.remove_user_group(&app, &HubName::native(), &user, &group).await?;
    state.control_user(&Scope::native(app), &user, ControlOp::Leave(group.to_string())).await?;
    Ok(StatusCode::NO_CONTENT)
}

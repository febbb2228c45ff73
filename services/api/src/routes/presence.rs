//! Presence: `GET /v1/apps/{app}/groups/{group}/presence` (members, paged by user id) and
//! `GET /v1/apps/{app}/users/{user}/presence`. Asked of every edge at the time of the call.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use signalbox_core::{KeyScope, Scope};
use signalbox_proto::presence::PresenceSummary;
use signalbox_proto::wire::PresenceQuery;
use utoipa::{IntoParams, ToSchema};

use super::{Path, Query, app_id, group_name, user_id};
use crate::ApiState;
use crate::auth::AppKey;
use crate::error::{ApiError, Problem};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
pub(crate) struct GroupPath {
    app: String,
    group: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UserPath {
    app: String,
    user: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MembersQuery {
    /// Members per page (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Only members whose user id sorts after this one (the `next` of the previous page).
    after: Option<String>,
}

/// A user in a group.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Member {
    user_id: String,
    /// The user's connections in the group.
    connections: usize,
    /// The `info` of the user's token, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    info: Option<Box<RawValue>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GroupPresence {
    /// Users in the group.
    count: usize,
    /// Connections in the group, anonymous ones included.
    connections: usize,
    /// Users, ordered by user id.
    members: Vec<Member>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// Who is in a group, right now, on every edge.
#[utoipa::path(
    get, path = "/v1/apps/{app}/groups/{group}/presence", tag = "presence",
    params(("app" = String, Path, description = "App id"), ("group" = signalbox_core::GroupName, Path, description = "Group name"), MembersQuery),
    security(("app_key" = [])),
    responses(
        (status = 200, body = GroupPresence),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn group_presence(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<GroupPath>,
    Query(query): Query<MembersQuery>,
) -> Result<axum::Json<GroupPresence>, ApiError> {
    let app = app_id(&path.app)?;
    key.require(&app, KeyScope::Read)?;
    let group = group_name(&path.group)?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidField { field: "limit", reason: format!("must be 1-{MAX_LIMIT}") });
    }
    let entries = state
        .presence(&Scope::native(app), PresenceQuery { group: Some(group.to_string()), user: None, prefix: None })
        .await;
    let summary = PresenceSummary::from_entries(&entries);
    let (count, connections) = (summary.count(), summary.connections);
    let after = query.after.unwrap_or_default();
    let mut members: Vec<Member> = summary
        .members
        .into_iter()
        .filter(|m| m.user_id.as_str() > after.as_str())
        .take(limit + 1)
        .map(|m| Member {
            info: m.info_json.and_then(|i| RawValue::from_string(i).ok()),
            user_id: m.user_id,
            connections: m.connections,
        })
        .collect();
    let next = (members.len() > limit).then(|| {
        members.truncate(limit);
        members.last().map(|m| m.user_id.clone())
    });
    Ok(axum::Json(GroupPresence { count, connections, members, next: next.flatten() }))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserPresence {
    online: bool,
    /// The user's open connections.
    connections: usize,
}

/// Whether a user is online, right now, on any edge.
#[utoipa::path(
    get, path = "/v1/apps/{app}/users/{user}/presence", tag = "presence",
    params(("app" = String, Path, description = "App id"), ("user" = signalbox_core::UserId, Path, description = "User id")),
    security(("app_key" = [])),
    responses(
        (status = 200, body = UserPresence),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn user_presence(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<UserPath>,
) -> Result<axum::Json<UserPresence>, ApiError> {
    let app = app_id(&path.app)?;
    key.require(&app, KeyScope::Read)?;
    let user = user_id(&path.user)?;
    let entries = state
        .presence(&Scope::native(app), PresenceQuery { group: None, user: Some(user.to_string()), prefix: None })
        .await;
    Ok(axum::Json(UserPresence { online: !entries.is_empty(), connections: entries.len() }))
}

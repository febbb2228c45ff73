//! `GET /v1/apps/{app}/groups/{group}/history?after=&limit=`: a group's stored messages,
//! oldest first, with cursor pagination by position.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use signalbox_core::{KeyScope, Scope};
use signalbox_proto::wire::{self, Body as Packet};
use utoipa::{IntoParams, ToSchema};

use super::{Path, Query, app_id, group_name};
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Only messages after this position (default 0: everything kept).
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_u64)]
    after: Option<u64>,
    /// Messages per page (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A stored message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryItem {
    position: u64,
    id: String,
    event: String,
    /// The message's data as it was published: any JSON value.
    #[schema(value_type = serde_json::Value)]
    data: Box<RawValue>,
    /// Microseconds since the Unix epoch.
    published_at: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct History {
    items: Vec<HistoryItem>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<u64>,
}

/// A group's history.
#[utoipa::path(
    get, path = "/v1/apps/{app}/groups/{group}/history", tag = "messages",
    params(("app" = String, Path, description = "App id"), ("group" = signalbox_core::GroupName, Path, description = "Group name"), HistoryQuery),
    security(("app_key" = [])),
    responses(
        (status = 200, body = History),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn history(
    State(state): State<Arc<ApiState>>,
    key: AppKey,
    Path(path): Path<GroupPath>,
    Query(query): Query<HistoryQuery>,
) -> Result<axum::Json<History>, ApiError> {
    let app = app_id(&path.app)?;
    key.require(&app, KeyScope::Read)?;
    let group = group_name(&path.group)?;
    if query.after.is_some_and(|after| after > super::MAX_QUERY_INTEGER) {
        return Err(ApiError::InvalidQuery(format!("after must be at most {}", super::MAX_QUERY_INTEGER)));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidField { field: "limit", reason: format!("must be 1-{MAX_LIMIT}") });
    }
    let subject = state.subjects.history(&Scope::native(app.clone()), &group);
    let stored = state.journal.read(&app, &subject, query.after.unwrap_or(0), limit).await?;
    let items: Vec<HistoryItem> = stored
        .into_iter()
        .filter_map(|stored| match wire::decode(stored.payload) {
            Ok(Packet::Message(envelope)) => Some(HistoryItem {
                position: stored.position.seq,
                data: RawValue::from_string(String::from_utf8_lossy(&envelope.data).into_owned()).ok()?,
                id: envelope.id,
                event: envelope.event,
                published_at: envelope.published_at_micros,
            }),
            _ => None,
        })
        .collect();
    let next = (items.len() == limit).then(|| items.last().map(|i| i.position)).flatten();
    Ok(axum::Json(History { items, next }))
}

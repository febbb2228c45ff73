//! Pusher Channels' HTTP API, so that Pusher's server libraries (npm `pusher`, PyPI `pusher`,
//! …) trigger events by changing only their host (docs/pusher.md).
//!
//! Auth is Pusher's: query parameters `auth_key` (a Signalbox key id), `auth_timestamp`
//! (within 600 s), `auth_version=1.0`, `body_md5` and `auth_signature`, the HMAC-SHA256 of
//! `METHOD\npath\nsorted query` with the key's secret. The signature is checked before the
//! body is read; the body then must match `body_md5`. The path's app id is the number Pusher
//! libraries are given for the key's app (`signalbox_core::pusher::app_number`).
//!
//! Answers are Pusher's: `200` with a JSON body on success (the Python library takes nothing
//! else), and a plain-text explanation with `400`, `401`, `403`, `404` or `413` otherwise.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use md5::Digest as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use signalbox_bus::Retention;
use signalbox_core::{AppId, GroupName, KeyId, KeyScope, Scope, UserId, clock, pusher};
use signalbox_proto::presence::PresenceSummary;
use signalbox_proto::wire::{CloseOp, ControlOp, PresenceQuery, Target};

use super::messages::{Publish, Route, publish};
use crate::ApiState;
use crate::auth::AppKey;
use crate::error::ApiError;

/// How far `auth_timestamp` may be from now.
const TIMESTAMP_WINDOW_SECONDS: u64 = 600;
/// Channels one trigger may name.
const MAX_CHANNELS: usize = 100;
/// Events one batch may hold.
const MAX_BATCH: usize = 10;
/// Largest request body.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Longest event and channel names the libraries send.
const MAX_NAME_CHARS: usize = 200;

/// The Pusher HTTP API routes.
pub(crate) fn router() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/apps/{app}/events", post(trigger))
        .route("/apps/{app}/batch_events", post(trigger_batch))
        .route("/apps/{app}/channels", get(channels))
        .route("/apps/{app}/channels/{channel}", get(channel_info))
        .route("/apps/{app}/channels/{channel}/users", get(channel_users))
        .route("/apps/{app}/users/{user}/terminate_connections", post(terminate_app_user))
        // The Python library posts here, without the app (its bug; the key names the app).
        .route("/users/{user}/terminate_connections", post(terminate_user))
}

/// A refusal, as Pusher words it: a status and plain text.
#[derive(Debug)]
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], self.1).into_response()
    }
}

impl From<ApiError> for Refusal {
    fn from(err: ApiError) -> Self {
        let status = match err.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            status => status,
        };
        Self(status, err.to_string())
    }
}

fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, message.into())
}

fn unauthorized(message: impl Into<String>) -> Refusal {
    Refusal(StatusCode::UNAUTHORIZED, message.into())
}

type Answer = Result<Response, Refusal>;

fn ok(body: Value) -> Answer {
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// A signed request: the key that signed it, its app, and the body (checked against
/// `body_md5`).
struct Signed {
    key: AppKey,
    app: AppId,
    body: bytes::Bytes,
}

/// Checks the signature (before reading the body), the app in the path, the timestamp, then
/// reads the body and checks its MD5.
async fn signed(state: &ApiState, app_in_path: Option<&str>, request: Request) -> Result<Signed, Refusal> {
    let (parts, body) = request.into_parts();
    let axum::extract::Query(params) = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map_err(|_| bad_request("the query string cannot be read"))?;
    let param = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let (Some(key_id), Some(timestamp), Some(signature)) =
        (param("auth_key"), param("auth_timestamp"), param("auth_signature"))
    else {
        return Err(unauthorized("Missing auth_key, auth_timestamp or auth_signature"));
    };
    if param("auth_version").is_some_and(|v| v != "1.0") {
        return Err(unauthorized("auth_version must be 1.0"));
    }
    let key_id = KeyId::new(key_id).map_err(|_| unauthorized("Unknown auth_key"))?;
    state.cache.sync_epoch(state.bus.epoch());
    let key = state
        .cache
        .key(&state.store, &state.master_key, &key_id)
        .await
        .map_err(Refusal::from)?
        .ok_or_else(|| unauthorized("Unknown auth_key"))?;
    if key.record.revoked_at.is_some() {
        return Err(unauthorized("This key has been revoked"));
    }
    let payload = pusher::request_payload(
        parts.method.as_str(),
        parts.uri.path(),
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    if !pusher::verify(&key.secret, &payload, signature) {
        return Err(unauthorized(format!(
            "Invalid signature: you should have sent HmacSHA256Hex({payload:?}, your_secret_key), but you sent {signature:?}"
        )));
    }
    let now = clock::unix_seconds();
    let fresh = timestamp.parse::<u64>().is_ok_and(|t| t.abs_diff(now) <= TIMESTAMP_WINDOW_SECONDS);
    if !fresh {
        return Err(unauthorized(format!(
            "Timestamp expired: the difference from the server time ({now}) must be within {TIMESTAMP_WINDOW_SECONDS} seconds"
        )));
    }
    let app = key.record.app_id.clone();
    if app_in_path.is_some_and(|id| id != pusher::app_number(&app).to_string()) {
        return Err(Refusal(StatusCode::NOT_FOUND, "Unknown app: the key is of another app".into()));
    }
    if let Some(pending) = parts.extensions.get::<signalbox_core::admission::PendingAuth>() {
        pending.authenticated();
    }
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        Refusal(StatusCode::PAYLOAD_TOO_LARGE, format!("the body may be at most {MAX_BODY_BYTES} bytes"))
    })?;
    let md5 = md5::Md5::digest(&body).iter().map(|b| format!("{b:02x}")).collect::<String>();
    match param("body_md5") {
        Some(sent) if !sent.eq_ignore_ascii_case(&md5) => return Err(unauthorized("body_md5 does not match the body")),
        None if !body.is_empty() => return Err(unauthorized("body_md5 is required with a body")),
        _ => {}
    }
    Ok(Signed { key: AppKey(key), app, body })
}

#[derive(Debug, Deserialize)]
struct Event {
    name: String,
    /// A string (the libraries encode other data as JSON text).
    data: Value,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Batch {
    batch: Vec<Event>,
}

/// A channel name as Pusher's libraries allow them (and a group name as Signalbox does):
/// `#server-to-user-{id}` is a signed-in user's own.
fn channel(name: &str) -> Result<GroupName, Refusal> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_-=@,.;".contains(c);
    let rest = name.strip_prefix("#server-to-user-").unwrap_or(name);
    if rest.is_empty() || name.chars().count() > MAX_NAME_CHARS || !rest.chars().all(allowed) {
        return Err(bad_request(format!("Invalid channel name: {name:?}")));
    }
    GroupName::new(name).map_err(|e| bad_request(format!("Invalid channel name {name:?}: {e}")))
}

/// Pusher's data (a string, usually JSON text) as Signalbox data: the JSON it holds, or the
/// string itself when it holds none.
fn data_of(data: &Value) -> Result<Box<RawValue>, Refusal> {
    let text = match data {
        Value::String(text) => match serde_json::from_str::<Box<RawValue>>(text) {
            Ok(json) => return Ok(json),
            Err(_) => serde_json::to_string(text),
        },
        other => serde_json::to_string(other),
    };
    text.ok().and_then(|t| RawValue::from_string(t).ok()).ok_or_else(|| bad_request("data cannot be read"))
}

/// Publishes one event to each of its channels.
async fn publish_event(state: &ApiState, signed: &Signed, event: Event, headers: &HeaderMap) -> Result<(), Refusal> {
    if event.name.is_empty() || event.name.chars().count() > MAX_NAME_CHARS {
        return Err(bad_request("Event name must be 1-200 characters"));
    }
    let channels = match (event.channels, event.channel) {
        (Some(channels), None) => channels,
        (None, Some(channel)) => vec![channel],
        _ => return Err(bad_request("Give either channels or channel")),
    };
    if channels.is_empty() || channels.len() > MAX_CHANNELS {
        return Err(bad_request(format!("An event goes to 1 to {MAX_CHANNELS} channels")));
    }
    let exclude = match event.socket_id.as_deref() {
        Some(socket) => {
            vec![
                pusher::connection_of(socket)
                    .ok_or_else(|| bad_request(format!("Invalid socket id {socket:?}")))?
                    .to_string(),
            ]
        }
        None => Vec::new(),
    };
    let data = data_of(&event.data)?;
    let scope = Scope::native(signed.app.clone());
    let settings = state.cache.app(&state.store, &signed.app).await.map_err(Refusal::from)?;
    for name in &channels {
        let group = channel(name)?;
        let history = settings
            .as_ref()
            .filter(|record| record.settings.history.keeps(&group))
            .map(|record| (state.subjects.history(&scope, &group), Retention::from(&record.settings.history)));
        let route =
            Route { target: Target::Group(group.to_string()), subject: state.subjects.group(&scope, &group), history };
        let message = Publish { event: event.name.clone(), data: Some(data.clone()), exclude: exclude.clone() };
        publish(state, &signed.key, &scope, route, message, headers).await.map_err(Refusal::from)?;
    }
    Ok(())
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("the body cannot be read: {e}")))
}

/// `POST /apps/{app}/events`: one event to up to 100 channels.
async fn trigger(State(state): State<Arc<ApiState>>, Path(app): Path<String>, request: Request) -> Answer {
    let headers = request.headers().clone();
    let signed = signed(&state, Some(&app), request).await?;
    let event: Event = json_body(&signed.body)?;
    publish_event(&state, &signed, event, &headers).await?;
    ok(json!({}))
}

/// `POST /apps/{app}/batch_events`: up to 10 events.
async fn trigger_batch(State(state): State<Arc<ApiState>>, Path(app): Path<String>, request: Request) -> Answer {
    let headers = request.headers().clone();
    let signed = signed(&state, Some(&app), request).await?;
    let Batch { batch } = json_body(&signed.body)?;
    if batch.len() > MAX_BATCH {
        return Err(bad_request(format!("A batch holds at most {MAX_BATCH} events")));
    }
    for event in batch {
        publish_event(&state, &signed, event, &headers).await?;
    }
    ok(json!({}))
}

#[derive(Debug, Deserialize)]
struct ChannelPath {
    app: String,
    channel: String,
}

#[derive(Debug, Deserialize, Default)]
struct InfoQuery {
    #[serde(default)]
    info: Option<String>,
    #[serde(default)]
    filter_by_prefix: Option<String>,
}

/// `GET /apps/{app}/channels?filter_by_prefix=…&info=user_count`: the occupied channels, on
/// every edge; `user_count` for presence channels only (the prefix must say so).
async fn channels(State(state): State<Arc<ApiState>>, Path(app): Path<String>, request: Request) -> Answer {
    let query = axum::extract::Query::<InfoQuery>::try_from_uri(request.uri());
    let InfoQuery { info, filter_by_prefix } = query.map_err(|_| bad_request("the query string cannot be read"))?.0;
    let signed = signed(&state, Some(&app), request).await?;
    signed.key.require(&signed.app, KeyScope::Read).map_err(Refusal::from)?;
    let prefix = filter_by_prefix.unwrap_or_default();
    let user_count = info.as_deref().is_some_and(|i| i.split(',').any(|a| a.trim() == "user_count"));
    if user_count && !prefix.starts_with(pusher::PRESENCE_PREFIX) {
        return Err(bad_request("user_count needs filter_by_prefix=presence-"));
    }
    let query = PresenceQuery { group: None, user: None, prefix: Some(prefix) };
    let entries = state.presence(&Scope::native(signed.app), query).await;
    let mut by_channel: std::collections::BTreeMap<String, Vec<signalbox_proto::wire::PresenceEntry>> =
        std::collections::BTreeMap::new();
    for entry in entries {
        if let Some(group) = entry.group.clone() {
            by_channel.entry(group).or_default().push(entry);
        }
    }
    let channels: serde_json::Map<String, Value> = by_channel
        .into_iter()
        .map(|(name, entries)| {
            let attributes = match user_count {
                true => json!({"user_count": PresenceSummary::from_entries(&entries).count()}),
                false => json!({}),
            };
            (name, attributes)
        })
        .collect();
    ok(json!({"channels": channels}))
}

/// `GET /apps/{app}/channels/{channel}`: whether anybody is in it; how many connections
/// (`subscription_count`) or, for presence channels, users (`user_count`).
async fn channel_info(State(state): State<Arc<ApiState>>, Path(path): Path<ChannelPath>, request: Request) -> Answer {
    let query = axum::extract::Query::<InfoQuery>::try_from_uri(request.uri());
    let info = query.map_err(|_| bad_request("the query string cannot be read"))?.0.info;
    let signed = signed(&state, Some(&path.app), request).await?;
    signed.key.require(&signed.app, KeyScope::Read).map_err(Refusal::from)?;
    let group = channel(&path.channel)?;
    let presence = group.as_str().starts_with(pusher::PRESENCE_PREFIX);
    let attributes: Vec<&str> = info.as_deref().map(|i| i.split(',').map(str::trim).collect()).unwrap_or_default();
    if attributes.contains(&"user_count") && !presence {
        return Err(bad_request("user_count is only for presence channels"));
    }
    if attributes.contains(&"subscription_count") && presence {
        return Err(bad_request("subscription_count is not for presence channels: ask for user_count"));
    }
    let entries = members(&state, &signed.app, &group).await;
    let mut answer = json!({"occupied": !entries.is_empty()});
    if attributes.contains(&"subscription_count") {
        answer["subscription_count"] = json!(entries.len());
    }
    if attributes.contains(&"user_count") {
        answer["user_count"] = json!(PresenceSummary::from_entries(&entries).count());
    }
    ok(answer)
}

/// `GET /apps/{app}/channels/{channel}/users`: a presence channel's users.
async fn channel_users(State(state): State<Arc<ApiState>>, Path(path): Path<ChannelPath>, request: Request) -> Answer {
    let signed = signed(&state, Some(&path.app), request).await?;
    signed.key.require(&signed.app, KeyScope::Read).map_err(Refusal::from)?;
    let group = channel(&path.channel)?;
    if !group.as_str().starts_with(pusher::PRESENCE_PREFIX) {
        return Err(bad_request("users are listed for presence channels only"));
    }
    let summary = PresenceSummary::from_entries(&members(&state, &signed.app, &group).await);
    let users: Vec<Value> = summary.members.iter().map(|m| json!({"id": m.user_id})).collect();
    ok(json!({"users": users}))
}

/// The connections in a channel, on every edge.
async fn members(state: &ApiState, app: &AppId, group: &GroupName) -> Vec<signalbox_proto::wire::PresenceEntry> {
    state
        .presence(
            &Scope::native(app.clone()),
            PresenceQuery { group: Some(group.to_string()), user: None, prefix: None },
        )
        .await
}

#[derive(Debug, Deserialize)]
struct AppUserPath {
    app: String,
    user: String,
}

async fn terminate_app_user(
    State(state): State<Arc<ApiState>>,
    Path(path): Path<AppUserPath>,
    request: Request,
) -> Answer {
    let signed = signed(&state, Some(&path.app), request).await?;
    terminate(&state, &signed, &path.user).await
}

async fn terminate_user(State(state): State<Arc<ApiState>>, Path(user): Path<String>, request: Request) -> Answer {
    let signed = signed(&state, None, request).await?;
    terminate(&state, &signed, &user).await
}

/// Closes every connection of a user (4009 in Pusher; here the backend's close, 4000: the
/// client does not reconnect by itself).
async fn terminate(state: &ApiState, signed: &Signed, user: &str) -> Answer {
    signed.key.require(&signed.app, KeyScope::Groups).map_err(Refusal::from)?;
    let user = UserId::new(user).map_err(|e| bad_request(format!("Invalid user id: {e}")))?;
    let close = CloseOp {
        code: u32::from(signalbox_core::CloseCode::ClosedByBackend.code()),
        reason: "You got disconnected by the app.".into(),
    };
    state
        .control_user(&Scope::native(signed.app.clone()), &user, ControlOp::Close(close))
        .await
        .map_err(Refusal::from)?;
    ok(json!({}))
}

//! The webhooks an edge waits for: `connect` (may a connection open, and as whom) and client
//! events (the webhook's answer is the client's reply). No queue, no retries: the caller is
//! waiting, and the app's settings say how long and what a failure means.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use signalbox_core::{AppId, GroupName, Permission, UserId, WebhookEvent, clock, ids};
use signalbox_proto::wire::{
    ApiAnswer, ApiFailure, ApiFailureKind, ClientEventRequest, ConnectDecision, ConnectOutcome, ConnectRequest,
};
use signalbox_store::AttemptRecord;

use super::client::{Answer, Call, CallError};
use crate::ApiState;
use crate::cache::OpenWebhook;

/// What the `connect` webhook may answer with a 2xx (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectAnswer {
    user_id: Option<UserId>,
    groups: Option<Vec<GroupName>>,
    permissions: Option<Vec<Permission>>,
    info: Option<Box<RawValue>>,
}

/// A rejection's body: `{"reason": "…"}`, or plain text.
#[derive(Debug, Deserialize)]
struct Rejection {
    reason: String,
}

/// The longest reason passed on to a client (a WebSocket close reason holds 123 bytes).
const MAX_REASON: usize = 120;

fn short_reason(text: &str) -> String {
    let mut reason: String = text.chars().filter(|c| !c.is_control()).collect();
    while reason.len() > MAX_REASON {
        reason.pop();
    }
    reason
}

fn decision(outcome: ConnectOutcome, reason: impl Into<String>) -> ConnectDecision {
    ConnectDecision { outcome: outcome as i32, reason: reason.into(), ..ConnectDecision::default() }
}

pub(super) fn clamp_timeout(requested_ms: u32) -> Duration {
    Duration::from_millis(u64::from(requested_ms.clamp(1, signalbox_core::settings::caps::WEBHOOK_TIMEOUT_MS)))
}

/// Asks the app's `connect` webhook about a connection.
pub(crate) async fn connect(state: &Arc<ApiState>, app: &AppId, request: ConnectRequest) -> ConnectDecision {
    let webhooks = match state.cache.webhooks(&state.store, &state.master_key, app).await {
        Ok(webhooks) => webhooks,
        Err(err) => {
            tracing::error!(app = %app, error = %err, "cannot load webhooks for a connect");
            return decision(ConnectOutcome::Failed, "the app's webhooks cannot be loaded");
        }
    };
    let Some(webhook) = webhooks.for_event(WebhookEvent::Connect).next().cloned() else {
        return decision(ConnectOutcome::NoWebhook, "");
    };
    let raw_or = |json: &str, fallback: &'static str| -> Box<RawValue> {
        RawValue::from_string(json.to_owned())
            .unwrap_or_else(|_| RawValue::from_string(fallback.to_owned()).unwrap_or_default())
    };
    let body = serde_json::json!({
        "connection_id": request.connection_id,
        "user_id": request.user,
        "groups": request.groups,
        "permissions": request.permissions,
        "claims": raw_or(&request.claims_json, "{}"),
        "query": raw_or(&request.query_json, "{}"),
        "headers": raw_or(&request.headers_json, "{}"),
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let id = ids::event_id();
    let call = Call {
        url: &webhook.record.url,
        secrets: &webhook.secrets,
        app,
        kind: WebhookEvent::Connect.cloud_event_type(),
        id: &id,
        time_millis: clock::unix_millis(),
        subject: Some(&request.connection_id),
        user: request.user.as_deref(),
        body: &body,
        timeout: clamp_timeout(request.timeout_ms),
        extra_headers: &[],
    };
    let result = state.webhook_client.call(&call).await;
    log_blocking(state, &webhook, &id, WebhookEvent::Connect, &result);
    match result {
        Ok(answer) if answer.is_success() => accept(&answer),
        Ok(answer) if (400..500).contains(&answer.status) => {
            let reason = serde_json::from_slice::<Rejection>(&answer.body)
                .map(|r| r.reason)
                .unwrap_or_else(|_| String::from_utf8_lossy(&answer.body).into_owned());
            let reason = short_reason(&reason);
            decision(
                ConnectOutcome::Reject,
                if reason.is_empty() { "rejected by the application".into() } else { reason },
            )
        }
        Ok(answer) => decision(ConnectOutcome::Failed, format!("the connect webhook answered {}", answer.status)),
        Err(err) => decision(ConnectOutcome::Failed, short_reason(&format!("the connect webhook failed: {err}"))),
    }
}

/// A 2xx: accept, with whatever the answer changes.
fn accept(answer: &Answer) -> ConnectDecision {
    let body = answer.body.as_ref();
    if body.iter().all(u8::is_ascii_whitespace) {
        return decision(ConnectOutcome::Accept, "");
    }
    match serde_json::from_slice::<ConnectAnswer>(body) {
        Ok(changes) => ConnectDecision {
            outcome: ConnectOutcome::Accept as i32,
            reason: String::new(),
            user: changes.user_id.map(|u| u.to_string()),
            replace_groups: changes.groups.is_some(),
            groups: changes.groups.unwrap_or_default().iter().map(ToString::to_string).collect(),
            replace_permissions: changes.permissions.is_some(),
            permissions: changes.permissions.unwrap_or_default().iter().map(ToString::to_string).collect(),
            info_json: changes.info.map(|i| i.get().to_owned()),
        },
        Err(err) => {
            decision(ConnectOutcome::Failed, short_reason(&format!("the connect webhook's answer is invalid: {err}")))
        }
    }
}

/// Passes a client event to the app's `event` webhook; its answer is the client's reply.
pub(crate) async fn client_event(
    state: &Arc<ApiState>,
    app: &AppId,
    request: ClientEventRequest,
    max_answer_bytes: usize,
) -> ApiAnswer {
    let failure = |kind: ApiFailureKind, message: String| ApiAnswer::Error(ApiFailure { kind: kind as i32, message });
    let webhooks = match state.cache.webhooks(&state.store, &state.master_key, app).await {
        Ok(webhooks) => webhooks,
        Err(err) => {
            tracing::error!(app = %app, error = %err, "cannot load webhooks for a client event");
            return failure(ApiFailureKind::Unavailable, "the app's webhooks cannot be loaded".into());
        }
    };
    let Some(webhook) = webhooks.for_event(WebhookEvent::Event).next().cloned() else {
        return failure(ApiFailureKind::NoUpstream, "no webhook of this app handles client events".into());
    };
    if request.hub != signalbox_core::HubName::native().as_str() {
        return super::signalr::invoke(state, app, &webhook, request, max_answer_bytes).await;
    }
    let data = RawValue::from_string(String::from_utf8_lossy(&request.data).into_owned())
        .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default());
    let body = serde_json::json!({
        "connection_id": request.connection_id,
        "user_id": request.user,
        "event": request.event,
        "data": data,
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let id = ids::event_id();
    let call = Call {
        url: &webhook.record.url,
        secrets: &webhook.secrets,
        app,
        kind: WebhookEvent::Event.cloud_event_type(),
        id: &id,
        time_millis: clock::unix_millis(),
        subject: Some(&request.connection_id),
        user: request.user.as_deref(),
        body: &body,
        timeout: clamp_timeout(request.timeout_ms),
        extra_headers: &[],
    };
    let result = state.webhook_client.call(&call).await;
    log_blocking(state, &webhook, &id, WebhookEvent::Event, &result);
    match result {
        Ok(answer) if answer.is_success() => {
            let body = answer.body;
            if body.iter().all(u8::is_ascii_whitespace) {
                ApiAnswer::EventReply(bytes::Bytes::from_static(b"null"))
            } else if body.len() > max_answer_bytes {
                failure(
                    ApiFailureKind::UpstreamFailed,
                    "the webhook's answer is larger than the app's message limit".into(),
                )
            } else if serde_json::from_slice::<&RawValue>(&body).is_err() {
                failure(ApiFailureKind::UpstreamFailed, "the webhook's answer is not JSON".into())
            } else {
                ApiAnswer::EventReply(body)
            }
        }
        Ok(answer) => failure(ApiFailureKind::UpstreamFailed, format!("the webhook answered {}", answer.status)),
        Err(CallError::Timeout(_)) => {
            failure(ApiFailureKind::UpstreamFailed, "the webhook did not answer in time".into())
        }
        Err(err) => failure(ApiFailureKind::UpstreamFailed, short_reason(&format!("the webhook failed: {err}"))),
    }
}

/// Logs a blocking call in the webhook's delivery log, without making the caller wait.
pub(super) fn log_blocking(
    state: &Arc<ApiState>,
    webhook: &OpenWebhook,
    id: &str,
    event: WebhookEvent,
    result: &Result<Answer, CallError>,
) {
    let (outcome, status, latency_ms, error) = match result {
        Ok(answer) => (
            if answer.is_success() { "answered" } else { "failed" },
            Some(i32::from(answer.status)),
            i64::try_from(answer.latency.as_millis()).unwrap_or(i64::MAX),
            None,
        ),
        Err(err) => ("failed", None, 0, Some(err.to_string())),
    };
    metrics::counter!("signalbox_webhook_calls_total", "event" => event.as_str(), "outcome" => outcome).increment(1);
    if status.is_some() {
        metrics::histogram!("signalbox_webhook_duration_seconds", "call" => event.as_str())
            .record(latency_ms as f64 / 1e3);
    }
    let attempt = AttemptRecord {
        id: 0,
        webhook_id: webhook.record.id.clone(),
        event_id: id.to_owned(),
        event_type: event.as_str().to_owned(),
        attempt: 1,
        outcome: outcome.to_owned(),
        status,
        latency_ms,
        error,
        at: clock::unix_millis(),
    };
    let state = Arc::clone(state);
    tokio::spawn(async move {
        if let Err(err) = state.store.record_attempt(&attempt).await {
            tracing::warn!(webhook = %attempt.webhook_id, error = %err, "could not log a webhook call");
        }
    });
}

//! The SignalR upstream: a hub method call from a SignalR client, sent the way Azure SignalR
//! Service sends it in serverless mode — the invocation message as the JSON body, the
//! `X-ASRS-*` headers, and `X-ASRS-Signature` (`sha256=` HMAC of the connection id with each
//! live access key) that the Azure Functions SignalR trigger checks. The answer is the
//! caller's Completion: a Completion message (`{"type":3,"result":…}` or `"error"`), any
//! other JSON as the result, an empty body as no result; a failure is a Completion error.
//!
//! The webhook URL may use Azure's upstream placeholders `{hub}`, `{category}`, `{event}`.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use signalbox_core::{AppId, WebhookEvent, clock, ids};
use signalbox_proto::signalr::RECORD_SEPARATOR;
use signalbox_proto::wire::{ApiAnswer, ApiFailure, ApiFailureKind, ClientEventRequest};

use super::blocking::log_blocking;
use super::client::{Call, CallError};
use super::signing;
use crate::ApiState;
use crate::cache::OpenWebhook;

#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(rename = "type")]
    kind: Option<u64>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    error: Option<String>,
}

/// Encodes a placeholder's value so it stays one path segment or one query value: every byte
/// but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) is percent-encoded, so `/`, `?`, `#`, `&`,
/// `=` and `+` cannot change the URL's shape.
fn encode_component(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Fills `{name}` in one part of a URL. A stored URL is normalized, which percent-encodes the
/// braces in its path (`%7Bhub%7D`) but not in its query: both spellings are placeholders.
fn fill(part: &str, name: &str, value: &str) -> String {
    let mut filled = part.replace(&format!("{{{name}}}"), value);
    for (open, close) in [("%7B", "%7D"), ("%7b", "%7d")] {
        filled = filled.replace(&format!("{open}{name}{close}"), value);
    }
    filled
}

/// The upstream URL of one call: Azure's placeholders `{hub}`, `{category}` and `{event}`
/// filled, each encoded as a path segment or a query value where it stands. `None` when a
/// value would change the URL's path (a method named `..` is a dot segment, which parsing
/// would remove along with the segment before it).
fn url_for(template: &str, hub: &str, event: &str) -> Option<String> {
    let template = template.split_once('#').map_or(template, |(url, _)| url);
    let (path, query) = match template.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (template, None),
    };
    let values =
        [("hub", encode_component(hub)), ("category", "messages".to_owned()), ("event", encode_component(event))];
    let path = values.iter().fold(path.to_owned(), |part, (name, value)| fill(&part, name, value));
    let query = query.map(|q| values.iter().fold(q.to_owned(), |part, (name, value)| fill(&part, name, value)));
    let url = match query {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let parsed = url::Url::parse(&url).ok()?;
    (parsed.as_str() == url).then_some(url)
}

fn failure(message: impl Into<String>) -> ApiAnswer {
    ApiAnswer::Error(ApiFailure { kind: ApiFailureKind::UpstreamFailed as i32, message: message.into() })
}

/// What the upstream's answer means for the caller.
fn completion_of(body: &[u8], max_answer_bytes: usize) -> ApiAnswer {
    let body = body.strip_suffix(&[RECORD_SEPARATOR]).unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return ApiAnswer::EventReply(Bytes::new());
    }
    if body.len() > max_answer_bytes {
        return failure("the upstream's answer is larger than the app's message limit");
    }
    match serde_json::from_slice::<Completion<'_>>(body) {
        Ok(Completion { kind: Some(3), error: Some(error), .. }) => failure(error),
        Ok(Completion { kind: Some(3), result, .. }) => {
            ApiAnswer::EventReply(result.map_or_else(Bytes::new, |r| Bytes::from(r.get().to_owned())))
        }
        _ if serde_json::from_slice::<&RawValue>(body).is_ok() => ApiAnswer::EventReply(Bytes::copy_from_slice(body)),
        _ => failure("the upstream's answer is not JSON"),
    }
}

pub(super) async fn invoke(
    state: &Arc<ApiState>,
    app: &AppId,
    webhook: &OpenWebhook,
    request: ClientEventRequest,
    max_answer_bytes: usize,
) -> ApiAnswer {
    let arguments = std::str::from_utf8(&request.data).ok().and_then(|a| RawValue::from_string(a.to_owned()).ok());
    let Some(arguments) = arguments else { return failure("the arguments are not JSON") };
    let mut message = serde_json::json!({"type": 1, "target": request.event, "arguments": arguments});
    if let Some(id) = &request.invocation_id {
        message["invocationId"] = serde_json::Value::String(id.clone());
    }
    let body = serde_json::to_vec(&message).unwrap_or_default();
    let access_keys = match state.cache.access_keys(&state.store, &state.master_key, app).await {
        Ok(keys) => keys,
        Err(err) => {
            tracing::error!(app = %app, error = %err, "cannot load the app's keys to sign an upstream call");
            return failure("the upstream call cannot be signed right now; retry");
        }
    };
    let mut headers = vec![
        ("x-asrs-connection-id", request.connection_id.clone()),
        ("x-asrs-hub", request.hub.clone()),
        ("x-asrs-category", "messages".to_owned()),
        ("x-asrs-event", request.event.clone()),
        ("x-asrs-signature", signing::asrs_signature(&access_keys, &request.connection_id)),
    ];
    if let Some(user) = &request.user {
        headers.push(("x-asrs-user-id", user.clone()));
    }
    let Some(url) = url_for(&webhook.record.url, &request.hub, &request.event) else {
        return failure("the hub method's name cannot be put in the upstream URL");
    };
    let id = ids::event_id();
    let call = Call {
        url: &url,
        secrets: &webhook.secrets,
        app,
        kind: WebhookEvent::Event.cloud_event_type(),
        id: &id,
        time_millis: clock::unix_millis(),
        subject: Some(&request.connection_id),
        user: request.user.as_deref(),
        body: &body,
        timeout: super::blocking::clamp_timeout(request.timeout_ms),
        extra_headers: &headers,
    };
    let result = state.webhook_client.call(&call).await;
    log_blocking(state, webhook, &id, WebhookEvent::Event, &result);
    match result {
        Ok(answer) if answer.is_success() => completion_of(&answer.body, max_answer_bytes),
        Ok(answer) => failure(format!("the upstream answered {}", answer.status)),
        Err(CallError::Timeout(_)) => failure("the upstream did not answer in time"),
        Err(err) => failure(format!("the upstream failed: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(answer: ApiAnswer) -> Result<Bytes, String> {
        match answer {
            ApiAnswer::EventReply(bytes) => Ok(bytes),
            ApiAnswer::Error(failure) => Err(failure.message),
            _ => Err("other".into()),
        }
    }

    #[test]
    fn answers_become_completions() {
        assert_eq!(
            result(completion_of(b"{\"type\":3,\"invocationId\":\"1\",\"result\":42}\x1e", 100)),
            Ok(Bytes::from("42"))
        );
        assert_eq!(result(completion_of(b"{\"type\":3,\"invocationId\":\"1\"}", 100)), Ok(Bytes::new()));
        assert_eq!(result(completion_of(b"{\"type\":3,\"error\":\"nope\"}", 100)), Err("nope".into()));
        assert_eq!(result(completion_of(b"", 100)), Ok(Bytes::new()));
        assert_eq!(result(completion_of(b"{\"a\":1}", 100)), Ok(Bytes::from("{\"a\":1}")));
        assert!(result(completion_of(b"not json", 100)).is_err());
        assert!(result(completion_of(b"[1,2,3]", 3)).is_err());
    }

    #[test]
    fn placeholders_are_filled_and_encoded_where_they_stand() {
        // Stored URLs are normalized: braces in the path are percent-encoded, in the query not.
        let stored = url::Url::parse("https://f.example/api/{hub}/{category}/{event}?code=k&m={event}&h={hub}")
            .expect("url")
            .to_string();
        assert!(stored.contains("/%7Bhub%7D/"), "{stored}");
        let url = |hub: &str, event: &str| url_for(&stored, hub, event);
        assert_eq!(
            url("chat", "send").as_deref(),
            Some("https://f.example/api/chat/messages/send?code=k&m=send&h=chat")
        );
        // A hostile method name stays one segment and one value: no parameter injected, `code` kept.
        assert_eq!(
            url("chat", "x&code=evil").as_deref(),
            Some("https://f.example/api/chat/messages/x%26code%3Devil?code=k&m=x%26code%3Devil&h=chat")
        );
        assert_eq!(
            url("chat", "a/../b?c#d e+f").as_deref(),
            Some(
                "https://f.example/api/chat/messages/a%2F..%2Fb%3Fc%23d%20e%2Bf?code=k&m=a%2F..%2Fb%3Fc%23d%20e%2Bf&h=chat"
            )
        );
        assert_eq!(
            url("chat", "é").as_deref(),
            Some("https://f.example/api/chat/messages/%C3%A9?code=k&m=%C3%A9&h=chat")
        );
        // A dot segment would climb the path: refused.
        assert_eq!(url("chat", ".."), None);
        assert_eq!(url("chat", "."), None);
        // Unnormalized templates and ones without placeholders work too.
        assert_eq!(
            url_for("http://f/{hub}/api/{category}/{event}", "chat", "send").as_deref(),
            Some("http://f/chat/api/messages/send")
        );
        assert_eq!(url_for("http://f/hook", "chat", "send").as_deref(), Some("http://f/hook"));
    }
}

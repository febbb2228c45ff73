//! `Idempotency-Key` on publishes: the first request with a key runs; a repeat within the
//! window — on any api node — gets the first one's response (with `Idempotent-Replayed: true`)
//! and publishes nothing. A repeat that arrives while the first still runs waits for it; the
//! same key on a different request is refused.

use std::future::Future;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use signalbox_bus::{Claim, Idempotency};
use signalbox_core::AppId;

use crate::error::ApiError;

pub(crate) const HEADER: &str = "idempotency-key";
/// How long a repeat waits for the first request with its key to finish.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(5);

/// A validated `Idempotency-Key`, scoped to its app.
#[derive(Debug, Clone)]
pub(crate) struct IdempotencyKey {
    /// The store's key: the app and a hash of the client's key (a safe token).
    scoped: String,
    /// The client's key, for the journal's own deduplication.
    pub(crate) raw: String,
}

/// Reads the header: absent is fine; present must be 1-255 visible ASCII characters.
pub(crate) fn key(headers: &HeaderMap, app: &AppId) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get(HEADER) else { return Ok(None) };
    let invalid =
        || ApiError::InvalidField { field: "Idempotency-Key", reason: "must be 1-255 visible ASCII characters".into() };
    let raw = value.to_str().map_err(|_| invalid())?;
    if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    Ok(Some(IdempotencyKey { scoped: format!("{app}.{}", hex(&Sha256::digest(raw.as_bytes()))), raw: raw.to_owned() }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What is stored for a key: which request it was, and what it got.
#[derive(Debug, Serialize, Deserialize)]
struct Remembered {
    fingerprint: String,
    status: u16,
    body: serde_json::Value,
}

/// A hash of what makes a request the same request.
pub(crate) fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex(&hasher.finalize())
}

fn json_response(status: StatusCode, body: &serde_json::Value, replayed: bool) -> Response {
    let mut response = (status, axum::Json(body.clone())).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Runs `publish` once per key; repeats get the remembered response.
pub(crate) async fn once<F, Fut, T>(
    store: &dyn Idempotency,
    key: &IdempotencyKey,
    fingerprint: String,
    publish: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
    T: Serialize,
{
    let deadline = tokio::time::Instant::now() + WAIT_FOR_FIRST;
    loop {
        match store.claim(&key.scoped).await? {
            Claim::First => {
                return match publish().await {
                    Ok(accepted) => {
                        let body = serde_json::to_value(&accepted).unwrap_or_default();
                        let remembered = Remembered { fingerprint, status: StatusCode::ACCEPTED.as_u16(), body };
                        let bytes = Bytes::from(serde_json::to_vec(&remembered).unwrap_or_default());
                        if let Err(err) = store.complete(&key.scoped, bytes).await {
                            // The message went out; only the memory of the key is lost.
                            tracing::warn!(error = %err, "could not remember an idempotency key's response");
                        }
                        Ok(json_response(StatusCode::ACCEPTED, &remembered.body, false))
                    }
                    Err(err) => {
                        let _ = store.release(&key.scoped).await;
                        Err(err)
                    }
                };
            }
            Claim::Done(bytes) => {
                let remembered: Remembered =
                    serde_json::from_slice(&bytes).map_err(|_| ApiError::Internal("unreadable idempotency record"))?;
                if remembered.fingerprint != fingerprint {
                    return Err(ApiError::IdempotencyMismatch);
                }
                let status = StatusCode::from_u16(remembered.status).unwrap_or(StatusCode::ACCEPTED);
                return Ok(json_response(status, &remembered.body, true));
            }
            Claim::InProgress => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(ApiError::Conflict(
                        "a request with this Idempotency-Key is still being handled; retry",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

//! `/healthz` (liveness: the process answers), `/readyz` (the role can do its work: its
//! dependencies answer) and `/metrics` (Prometheus text), for every role.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Answers whether the role is ready, and if not, why.
pub(crate) type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

pub(crate) fn router(ready: ReadinessCheck) -> Router {
    Router::new()
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route(
            "/readyz",
            get(move || {
                let ready = Arc::clone(&ready);
                async move { readiness(ready().await) }
            }),
        )
        .route("/metrics", get(metrics))
}

fn readiness(result: Result<(), String>) -> Response {
    match result {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(reason) => {
            let body = serde_json::json!({
                "type": "https://signalbox.dev/problems/not-ready",
                "title": "Service Unavailable",
                "status": 503,
                "detail": reason,
                "code": "not_ready",
            });
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
            response
        }
    }
}

async fn metrics() -> Response {
    let handle = crate::telemetry::metrics();
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

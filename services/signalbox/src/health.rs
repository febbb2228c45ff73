//! `/healthz` (liveness: the process answers) and `/readyz` (the role can do its work: its
//! dependencies answer) on the public port, and `/metrics` (Prometheus text) on a listener of
//! its own ([`MetricsListener`], `--metrics-listen`), for every role: what the metrics tell
//! (apps, connection counts, traffic) is for operators, not for whoever reaches the public
//! port.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use signalbox_edge::http::HttpLimits;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Answers whether the role is ready, and if not, why.
pub(crate) type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

pub(crate) fn router(ready: ReadinessCheck) -> Router {
    Router::new().route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) })).route(
        "/readyz",
        get(move || {
            let ready = Arc::clone(&ready);
            async move { readiness(ready().await) }
        }),
    )
}

/// The metrics listener: `GET /metrics` and nothing else.
#[derive(Debug)]
pub(crate) struct MetricsListener {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl MetricsListener {
    pub(crate) async fn start(listen: SocketAddr) -> anyhow::Result<Self> {
        let router = Router::new()
            .route("/metrics", get(metrics))
            .fallback(signalbox_api::error::not_found)
            .method_not_allowed_fallback(signalbox_api::error::method_not_allowed);
        let listener =
            TcpListener::bind(listen).await.with_context(|| format!("cannot listen for metrics on {listen}"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let limits = HttpLimits { max_connections: 64, ..HttpLimits::default() };
        let server = tokio::spawn(signalbox_edge::http::serve(listener, router, limits, async {
            let _ = stopped.await;
        }));
        Ok(Self { addr, stop: Some(stop), server })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.server).await.context("metrics server task failed")?.context("metrics server failed")
    }
}

/// Starts the metrics listener when there is an address for it.
pub(crate) async fn start_metrics(listen: Option<SocketAddr>) -> anyhow::Result<Option<MetricsListener>> {
    match listen {
        Some(listen) => Ok(Some(MetricsListener::start(listen).await?)),
        None => Ok(None),
    }
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

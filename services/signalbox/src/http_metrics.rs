//! Every HTTP request of every role: counted by method, route and status, timed, and — when
//! traces are exported — a server span that continues the caller's `traceparent`.
//!
//! Labels come from bounded sets only: the route is the router's path *template*
//! (`/v1/apps/{app}/groups/{group}/messages`, never the ids in it), `unmatched` for anything
//! no route knows, and methods outside the standard ones are `OTHER`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// The middleware: `router.layer(axum::middleware::from_fn(http_metrics::track))`, added
/// after the routes and the fallback so that it wraps them all and sees their matched path.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let span = server_span(&request, method, &route);
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let labels = [("method", method.to_owned()), ("route", route)];
    metrics::histogram!("signalbox_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    let [method, route] = labels;
    metrics::counter!("signalbox_http_requests_total", &[method, route, ("status", status.to_string())]).increment(1);
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The request's server span, a child of the caller's `traceparent` if it sent one; no span
/// while traces are off.
fn server_span(request: &Request, method: &'static str, route: &str) -> tracing::Span {
    if !signalbox_bus::trace::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "http request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    signalbox_bus::trace::set_parent(&span, header("traceparent"), header("tracestate"));
    span
}

//! RFC 9457 problem+json responses for the few HTTP errors the edge itself returns.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Where problem types are documented.
pub(crate) const PROBLEM_BASE: &str = "https://signalbox.dev/problems/";

pub(crate) fn problem(status: StatusCode, slug: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": format!("{PROBLEM_BASE}{slug}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        // The stable code, as in the api's problems: the slug with underscores.
        "code": slug.replace('-', "_"),
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

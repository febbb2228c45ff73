//! `POST /client/negotiate?hub=…`: the first request of every SignalR client.
//!
//! The client's access token is checked here (and again on every transport request); the
//! answer carries a fresh connection id and a connection token that binds the id to the app,
//! hub and user, so that knowing an id is not enough to use a connection: transport requests
//! name the connection by its token, never by its public id. With `negotiateVersion=1` the
//! two travel apart (`connectionId`, `connectionToken`); version 0 has one field, which the
//! client sends back as `id`, so it carries the token. Nothing is stored: whichever edge the
//! transport request reaches opens the connection.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::json;
use signalbox_core::signalr::{ConnectionTokenClaims, sign_connection_token};
use signalbox_core::{ConnectionId, HubName};

use super::authenticate;
use crate::EdgeState;
use crate::auth::AuthError;
use crate::problem::problem;

#[derive(Debug, Deserialize)]
pub(crate) struct NegotiateQuery {
    hub: Option<String>,
    #[serde(rename = "negotiateVersion")]
    negotiate_version: Option<u32>,
    /// The client asks for stateful reconnect (`withStatefulReconnect()`).
    #[serde(rename = "useStatefulReconnect", default)]
    use_stateful_reconnect: Option<String>,
    access_token: Option<String>,
}

/// The access token of a SignalR request: the `Authorization` header, else `access_token`
/// in the query (browsers cannot set headers on WebSockets and EventSource).
pub(super) fn access_token<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .or(query)
}

/// The hub of a request, or the problem to answer.
pub(super) fn hub_of(raw: Option<&str>) -> Result<HubName, Box<Response>> {
    let missing = || Box::new(problem(StatusCode::BAD_REQUEST, "missing-hub", "the `hub` query parameter is required"));
    let raw = raw.ok_or_else(missing)?;
    HubName::new(raw).map_err(|e| Box::new(problem(StatusCode::BAD_REQUEST, "invalid-hub", &e.to_string())))
}

/// How a refused token is answered over HTTP.
pub(super) fn auth_failure(err: &AuthError) -> Response {
    metrics::counter!("signalbox_connects_refused_total", "code" => err.close_code().code().to_string()).increment(1);
    match err {
        AuthError::Unavailable => problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &err.to_string()),
        _ => problem(StatusCode::UNAUTHORIZED, "unauthorized", &err.to_string()),
    }
}

pub(super) async fn negotiate(
    State(edge): State<Arc<EdgeState>>,
    Query(query): Query<NegotiateQuery>,
    headers: HeaderMap,
) -> Response {
    let hub = match hub_of(query.hub.as_deref()) {
        Ok(hub) => hub,
        Err(response) => return *response,
    };
    if edge.draining() {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "draining", "this node is draining; retry");
    }
    let authorized = match authenticate(&edge, access_token(&headers, query.access_token.as_deref())).await {
        Ok(authorized) => authorized,
        Err(err) => return auth_failure(&err),
    };
    let id = ConnectionId::generate_signalr();
    let transports = json!([
        {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
        {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
        {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
    ]);
    // Only when asked: a client that did not ask refuses an answer that says it (as ASP.NET
    // Core's option, `useStatefulReconnect` is read case-insensitively).
    let resumable = query.use_stateful_reconnect.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let claims = ConnectionTokenClaims {
        resumable,
        app: authorized.key.app.clone(),
        cid: id.clone(),
        hub: hub.to_string(),
        sub: authorized.claims.sub.as_ref().map(ToString::to_string),
        iat: signalbox_core::clock::unix_seconds(),
    };
    let token = sign_connection_token(&claims, &authorized.key_id, &authorized.key.secret);
    let mut body = if query.negotiate_version.unwrap_or(0) >= 1 {
        json!({"negotiateVersion": 1, "connectionId": id, "connectionToken": token, "availableTransports": transports})
    } else {
        // Version 0 clients send `connectionId` back as `id`: it must be the secret.
        json!({"negotiateVersion": 0, "connectionId": token, "availableTransports": transports})
    };
    if resumable {
        body["useStatefulReconnect"] = json!(true);
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

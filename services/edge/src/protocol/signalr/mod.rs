//! The SignalR adapter: ASP.NET Core SignalR clients (`@microsoft/signalr` and friends) on
//! the same hub, routing plane and fan-out as native connections — a protocol adapter, not a
//! second server.
//!
//! - `negotiate`: `POST /client/negotiate?hub=…` hands out a connection id and a connection
//!   token (which binds the id to the app, hub and user);
//! - `transport`: `/client/?hub=…&id=…` — a WebSocket upgrade, a Server-Sent Events stream,
//!   long polls, sends (`POST`) and `DELETE`; HTTP requests that reach an edge other than the
//!   one holding the connection are forwarded to it over the routing plane, so no sticky
//!   sessions are needed;
//! - `codec`: the hub protocol, JSON and MessagePack, behind [`crate::protocol::Protocol`].
//!
//! A SignalR connection's id names no node: it is reached through its own subject (see
//! [`crate::addresses`]).

mod codec;
mod negotiate;
mod transport;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use signalbox_bus::ReplyTo;
use signalbox_core::token::TokenError;
use signalbox_core::{ClientClaims, UserId, signalr as tokens};

use crate::EdgeState;
use crate::auth::{self, AuthError, Authorized};
use crate::directory::LookupError;
pub(crate) use codec::SignalR;

/// The SignalR routes: `/client/negotiate` and `/client/`.
pub(crate) fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/client/negotiate", post(negotiate::negotiate))
        .route("/client/", get(transport::get).post(transport::send).delete(transport::delete))
}

/// Whether a request to `/client` (no slash) is a SignalR transport request: a SignalR client
/// given `…/client?hub=chat` as its URL keeps that path and adds `&id=…`.
pub(crate) fn names_a_hub(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|pair| pair.starts_with("hub=")))
}

/// A SignalR transport request that arrived on `/client`: served as on `/client/`.
pub(crate) async fn transport(edge: Arc<EdgeState>, request: axum::extract::Request) -> axum::response::Response {
    use axum::handler::Handler as _;
    use axum::response::IntoResponse as _;
    match *request.method() {
        http::Method::GET => transport::get.call(request, edge).await,
        http::Method::POST => transport::send.call(request, edge).await,
        http::Method::DELETE => transport::delete.call(request, edge).await,
        _ => http::StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// A forwarded HTTP transport request for a connection this node holds.
pub(crate) fn answer_forwarded(
    edge: &Arc<EdgeState>,
    reply: Option<ReplyTo>,
    request: signalbox_proto::wire::TransportRequest,
) {
    tokio::spawn(transport::answer_forwarded(Arc::clone(edge), reply, request));
}

/// Checks a SignalR client's access token: a Signalbox client token (it has an `app` claim),
/// or an Azure SignalR-style token (`kid` = a key id, signed with `{key_id}.{secret}`, `aud` =
/// the client URL).
pub(crate) async fn authenticate(edge: &EdgeState, token: Option<&str>) -> Result<Authorized, AuthError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
    if tokens::has_app_claim(token) {
        return auth::authenticate(&edge.directory, Some(token)).await;
    }
    let key_id = tokens::peek_key_id(token)?;
    let key = edge.directory.key_of_any_app(&key_id).await.map_err(|e| match e {
        LookupError::NotFound => AuthError::Token(TokenError::UnknownKey),
        LookupError::Unavailable => AuthError::Unavailable,
    })?;
    if key.revoked {
        return Err(TokenError::KeyRevoked.into());
    }
    let azure = tokens::verify_azure(token, &tokens::access_key(&key_id, &key.secret), "/client")?;
    let sub = azure
        .user()
        .map(UserId::new)
        .transpose()
        .map_err(|e| AuthError::Token(TokenError::InvalidClaims(e.to_string())))?;
    let claims = ClientClaims {
        sub,
        exp: azure.exp,
        iat: None,
        app: key.app.clone(),
        groups: Vec::new(),
        permissions: Vec::new(),
        info: None,
    };
    Ok(Authorized { claims, key_id, key })
}

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
//! - `session`: the hub protocol's inbound side (handshake, records, hub method calls).
//!
//! A SignalR connection's id names no node: the edge holding it subscribes the connection's
//! own subject, where its messages, control operations and forwarded requests arrive.

mod negotiate;
mod session;
mod transport;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use parking_lot::Mutex;
use signalbox_bus::{ReplyTo, SubscriptionId};
use signalbox_core::token::TokenError;
use signalbox_core::{ClientAction, ClientClaims, CloseCode, ConnectionId, GroupName, UserId, signalr as tokens};
use signalbox_proto::Subject;

use crate::EdgeState;
use crate::auth::{self, AuthError, Authorized};
use crate::conn::{Conn, ConnKey, WireFormat};
use crate::directory::LookupError;
use crate::outbox::CloseRequest;
use crate::ws::Admitted;
pub(crate) use session::SignalRSession;
use transport::HttpConnection;

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

/// The SignalR connections of this node that the edge must find by id or subject.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Connections on an HTTP transport (Server-Sent Events, long polling), by id.
    http: Mutex<HashMap<ConnectionId, Arc<HttpConnection>>>,
    /// The subscription of each SignalR connection's own subject.
    routes: Mutex<HashMap<ConnKey, (Subject, SubscriptionId)>>,
    /// Connections that ended here, still subscribed while their connection token could open
    /// them again: requests for them are answered "gone" instead of opening a new connection.
    ended: Mutex<HashMap<ConnectionId, Ended>>,
}

#[derive(Debug)]
struct Ended {
    at: std::time::Instant,
    subject: Subject,
    subscription: SubscriptionId,
}

impl Registry {
    /// Whether a connection of this id ended here recently.
    pub(crate) fn has_ended(&self, id: &str) -> bool {
        self.ended.lock().contains_key(id)
    }
}

/// Drops the tombstones of connections that ended longer ago than a connection token may open
/// one (the sweeper calls this).
pub(crate) fn purge_ended(edge: &EdgeState) {
    let window = std::time::Duration::from_secs(tokens::OPEN_WITHIN_SECONDS + signalbox_core::token::LEEWAY_SECONDS);
    let mut expired = Vec::new();
    edge.signalr.ended.lock().retain(|_, ended| {
        let keep = ended.at.elapsed() < window;
        if !keep {
            expired.push((ended.subject.clone(), ended.subscription));
        }
        keep
    });
    for (subject, subscription) in expired {
        edge.hub.interest_for(&subject).unsubscribe(subscription);
    }
}

/// Starts an admitted SignalR connection: its own subject is subscribed (so requests other
/// edges forward reach it); its targets and groups follow the handshake, in the session.
pub(crate) async fn start(edge: &Arc<EdgeState>, admitted: Admitted) -> SignalRSession {
    let Admitted { conn, groups, .. } = admitted;
    let subject = edge.hub.config.subjects.connection(&conn.scope.app, &conn.id);
    match edge.hub.interest_for(&subject).subscribe(subject.clone(), None).await {
        Ok(id) => {
            edge.signalr.routes.lock().insert(conn.key, (subject, id));
        }
        Err(err) => {
            tracing::warn!(connection = %conn.id, error = %err, "cannot subscribe a SignalR connection");
            conn.outbox.close_now(CloseRequest::new(CloseCode::TryAgainLater, "cannot subscribe right now; retry"));
        }
    }
    let transport = conn.format().transport();
    tracing::debug!(connection = %conn.id, app = %conn.scope.app, hub = %conn.scope.hub, transport, "SignalR connection open");
    SignalRSession::new(Arc::clone(edge), conn, groups)
}

/// After the handshake: the connection joins its targets and groups, then it is open.
async fn attach(edge: &EdgeState, conn: &Arc<Conn>, groups: &[GroupName]) {
    match edge.hub.attach(conn, groups).await {
        Ok(()) => {
            conn.open.store(true, std::sync::atomic::Ordering::Release);
            metrics::counter!("signalbox_connects_total").increment(1);
            edge.events.connected(conn);
        }
        Err(err) => {
            tracing::warn!(connection = %conn.id, error = %err, "cannot attach a SignalR connection");
            conn.outbox.close_now(err.close_request());
        }
    }
}

/// Forgets a SignalR connection that is leaving: its subject, its HTTP transport.
pub(crate) fn forget(edge: &EdgeState, conn: &Conn) {
    if !conn.format().is_signalr() {
        return;
    }
    // The subject stays subscribed for a while, to answer for the ended connection.
    if let Some((subject, subscription)) = edge.signalr.routes.lock().remove(&conn.key) {
        let ended = Ended { at: std::time::Instant::now(), subject, subscription };
        if let Some(replaced) = edge.signalr.ended.lock().insert(conn.id.clone(), ended) {
            edge.hub.interest_for(&replaced.subject).unsubscribe(replaced.subscription);
        }
    }
    let mut http = edge.signalr.http.lock();
    if http.get(&conn.id).is_some_and(|h| h.conn.key == conn.key) {
        http.remove(&conn.id);
    }
}

/// The Close message a SignalR client gets before the transport ends: whether it may
/// reconnect follows the close code's action (a reconnect negotiates again, which asks the
/// client's token factory for a fresh token).
pub(crate) fn close_record(format: WireFormat, request: &CloseRequest) -> Vec<u8> {
    let allow_reconnect = !matches!(request.code.action(), ClientAction::GiveUp);
    let error = (request.code != CloseCode::Normal || !request.reason.is_empty())
        .then(|| format!("{} ({})", request.reason, request.code.code()));
    format.hub_protocol().encode_close(error.as_deref(), allow_reconnect)
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

//! `/client/?hub=…&id=…`: the three SignalR transports.
//!
//! - `GET` with a WebSocket upgrade: the connection runs like a native one, with the SignalR
//!   session reading its frames;
//! - `GET` with `Accept: text/event-stream`: Server-Sent Events carry what the server sends;
//!   the client sends with `POST`;
//! - any other `GET`: a long poll. The first poll opens the connection and returns at once;
//!   later ones wait up to `POLL_TIMEOUT` (20 s) for messages (`200`, empty on timeout), a newer
//!   poll ends the waiting one with `204`, and a poll after the connection ended gets `204`.
//! - `POST`: messages from the client (`200`); a second `POST` while one is in progress gets
//!   `409`; an unknown or ended connection `404`.
//! - `DELETE`: the client ends a long-polling connection (`202`).
//!
//! An HTTP request for a connection another edge holds is forwarded to it on the
//! connection's subject and answered with that edge's answer. The transports themselves are
//! the protocol-free `http_transport` and `ws`; this module is SignalR's way in to them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use signalbox_bus::{BusError, ReplyTo};
use signalbox_core::admission::PendingAuth;
use signalbox_core::signalr::verify_connection_token;
use signalbox_core::{CloseCode, ConnectionId, Scope, token};
use signalbox_proto::wire::{self, Body, TransportKind, TransportReply, TransportRequest};

use super::authenticate;
use super::negotiate::{access_token, auth_failure, hub_of};
use crate::EdgeState;
use crate::admission::{self, Admission, Admitted, Handshake};
use crate::auth::Authorized;
use crate::conn::Conn;
use crate::handover::{self, TakeOver};
use crate::http_transport::long_polling::{self, Polled};
use crate::http_transport::{HttpConnection, Received, event_stream};
use crate::outbox::CloseRequest;
use crate::problem::problem;
use crate::protocol::{Encoding, Format, Outbound, Transport};
use crate::ws;

/// How long a forwarded send may take (it waits for the upstream's answers).
const SEND_FORWARD_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest body of a send (what axum's default body limit allowed before).
const MAX_SEND_BYTES: usize = 2 * 1024 * 1024;

/// `?hub=…&id=…&access_token=…`. A parameter given twice counts once, by its first value:
/// clients that keep the connection URL and add `id` again for each poll (Python's
/// `signalrcore`) must still be understood.
#[derive(Debug, Default)]
pub(crate) struct TransportQuery {
    hub: Option<String>,
    id: Option<String>,
    access_token: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TransportQuery {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut http::request::Parts, state: &S) -> Result<Self, Response> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| problem(StatusCode::BAD_REQUEST, "invalid-query", "the query string cannot be read"))?;
        let mut query = Self::default();
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "hub" => &mut query.hub,
                "id" => &mut query.id,
                "access_token" => &mut query.access_token,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        Ok(query)
    }
}

/// The connection a transport request names, once its tokens are checked.
struct Addressed {
    authorized: Authorized,
    scope: Scope,
    id: ConnectionId,
    /// The connection token may still open the connection.
    may_open: bool,
    /// Negotiate agreed to stateful reconnect.
    resumable: bool,
}

fn no_connection() -> Response {
    (StatusCode::NOT_FOUND, "No Connection with that ID").into_response()
}

/// Checks the access token and the connection token (`id`), which must agree on the app,
/// hub and user; then marks the request authenticated (`pending`, see [`crate::http`]).
async fn address(
    edge: &EdgeState,
    query: &TransportQuery,
    headers: &HeaderMap,
    pending: Option<&PendingAuth>,
) -> Result<Addressed, Box<Response>> {
    let hub = hub_of(query.hub.as_deref())?;
    let raw_id = query.id.as_deref().ok_or_else(|| {
        Box::new(problem(StatusCode::BAD_REQUEST, "missing-id", "the `id` query parameter is required"))
    })?;
    let authorized = authenticate(edge, access_token(headers, query.access_token.as_deref()))
        .await
        .map_err(|err| Box::new(auth_failure(&err)))?;
    let app = authorized.key.app.clone();
    let user = authorized.claims.sub.as_ref().map(ToString::to_string);
    // A connection token, signed by the key named in it (a bare public id is no credential:
    // presence and the REST API hand ids out).
    let id = {
        let unknown = |_| Box::new(no_connection());
        let header = token::peek(raw_id).map_err(unknown)?;
        let key = edge.directory.key(&header.app, &header.key_id).await.map_err(|_| Box::new(no_connection()))?;
        let claims = verify_connection_token(raw_id, &key.secret).map_err(unknown)?;
        if claims.app != app || claims.hub != hub.as_str() || claims.sub != user {
            let detail = "the connection token was issued to another app, hub or user";
            return Err(Box::new(problem(StatusCode::FORBIDDEN, "wrong-connection", detail)));
        }
        let may_open = claims.may_open(signalbox_core::clock::unix_seconds());
        (claims.cid, may_open, claims.resumable)
    };
    let (id, may_open, resumable) = id;
    if let Some(pending) = pending {
        pending.authenticated();
    }
    Ok(Addressed { authorized, scope: Scope { app, hub }, id, may_open, resumable })
}

fn local(edge: &EdgeState, addressed: &Addressed) -> Option<Arc<HttpConnection>> {
    edge.http_connections.get(&addressed.scope.app, &addressed.id).filter(|h| h.conn.scope == addressed.scope)
}

fn reply(status: StatusCode, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
    response
}

/// Admits a connection on `transport` (limits, `connect` webhook, groups): it speaks JSON
/// until its handshake chooses.
async fn open(
    edge: &Arc<EdgeState>,
    addressed: Addressed,
    transport: Transport,
    handshake: &Handshake,
) -> Result<Admitted, CloseRequest> {
    let Addressed { authorized, scope, id, resumable, .. } = addressed;
    let format = Format::new(Encoding::SIGNALR_JSON, transport);
    // Stateful reconnect resumes WebSockets only (as ASP.NET Core and its clients).
    let resumable = resumable && transport == Transport::WebSocket;
    let admission = Admission { scope, id, format, wanted: Vec::new(), handshake, own_subject: true, resumable };
    admission::admit(edge, authorized, admission).await
}

/// A refused connection over HTTP: the reason, with the status a SignalR client reads.
fn refusal(request: &CloseRequest) -> Response {
    let status = match request.code {
        CloseCode::TryAgainLater | CloseCode::ConnectionLimit | CloseCode::ConnectWebhookFailed => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::FORBIDDEN,
    };
    problem(status, "connection-refused", &request.reason)
}

/// `GET /client/?hub=…&id=…`: a WebSocket, an event stream or a long poll.
pub(crate) async fn get(
    State(edge): State<Arc<EdgeState>>,
    query: TransportQuery,
    method: Method,
    headers: HeaderMap,
    mut request: axum::extract::Request,
) -> Response {
    let handshake = Handshake::of(&request, &headers);
    let on_upgrade = request.extensions_mut().remove::<OnUpgrade>();
    let pending = request.extensions_mut().remove::<PendingAuth>();
    drop(request);
    let addressed = match address(&edge, &query, &headers, pending.as_ref()).await {
        Ok(addressed) => addressed,
        Err(response) => return *response,
    };
    if headers.contains_key(header::UPGRADE) {
        let accept = match ws::check_handshake(&method, &headers, None) {
            Ok((accept, _)) => accept,
            Err(refusal) => return refusal.into_response(),
        };
        let Some(on_upgrade) = on_upgrade else {
            return problem(StatusCode::INTERNAL_SERVER_ERROR, "upgrade-unavailable", "cannot upgrade");
        };
        if edge.draining() {
            return problem(StatusCode::SERVICE_UNAVAILABLE, "draining", "this node is draining; reconnect");
        }
        if let Some(conn) = edge.hub.connection(&addressed.scope.app, addressed.id.as_str()) {
            return match conn.outbox.is_retaining() {
                true => resume(edge, conn, on_upgrade, accept).await,
                false => problem(StatusCode::CONFLICT, "connection-in-use", "this connection already has a transport"),
            };
        }
        if addressed.resumable {
            // Held by another edge (its client resumes it here): taken over.
            let user = addressed.authorized.claims.sub.as_ref().map(|u| u.as_str());
            match handover::take_over(&edge, &addressed.scope, &addressed.id, user).await {
                TakeOver::Resumed(session) => {
                    return ws::accept_upgrade(edge, on_upgrade, accept, None, Ok(ws::Opening::Resumed(*session)));
                }
                TakeOver::Gone => return no_connection(),
                TakeOver::NoOne => {}
            }
        }
        if !addressed.may_open || edge.addresses.has_ended(&addressed.scope.app, &addressed.id) {
            return no_connection();
        }
        let admitted = open(&edge, addressed, Transport::WebSocket, &handshake).await;
        return ws::accept_upgrade(edge, on_upgrade, accept, None, admitted.map(ws::Opening::Admitted));
    }
    let wants_events = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    if wants_events {
        return event_stream(edge, addressed, &handshake).await;
    }
    if let Some(http) = local(&edge, &addressed) {
        if !http.same_user(addressed.authorized.claims.sub.as_ref().map(|u| u.as_str())) {
            return no_connection();
        }
        let (status, body) = poll(&edge, &http).await;
        return reply(status, body);
    }
    match forward(&edge, &addressed, TransportKind::Poll, Bytes::new()).await {
        Forwarded::Answered(response) => response,
        Forwarded::NoOne => start_long_polling(edge, addressed, &handshake).await,
    }
}

/// How long a resume waits for the socket that still holds the connection (one the server
/// has not seen drop yet) to let go of it.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// A WebSocket for a connection held here: its client resumes it (stateful reconnect). A
/// socket that still holds it is given up (it may be half-open); then the new one gets the
/// protocol's Sequence and everything the client has not acknowledged, and carries on.
async fn resume(edge: Arc<EdgeState>, conn: Arc<Conn>, on_upgrade: OnUpgrade, accept: HeaderValue) -> Response {
    conn.outbox.request_park();
    let Some(session) = edge.parked.take_when_parked(&conn, TAKEOVER_WAIT).await else {
        return no_connection();
    };
    let format = conn.format();
    if !conn.outbox.unpark(|first| format.encode(&Outbound::Sequence(first))) {
        ws::park_or_end(&edge, session);
        return no_connection();
    }
    conn.touch(edge.hub.now_secs());
    ws::accept_upgrade(edge, on_upgrade, accept, None, Ok(ws::Opening::Resumed(session)))
}

/// The first long poll: opens the connection here and returns at once.
async fn start_long_polling(edge: Arc<EdgeState>, addressed: Addressed, handshake: &Handshake) -> Response {
    match open_long_polling(&edge, addressed, handshake).await {
        Ok(_) => reply(StatusCode::OK, Bytes::new()),
        Err(response) => *response,
    }
}

/// Opens a long-polling connection here: at its first poll, or at a send that comes before
/// any poll (ASP.NET Core keeps a connection from negotiate on, so clients such as Python's
/// `signalrcore` send their handshake first).
async fn open_long_polling(
    edge: &Arc<EdgeState>,
    addressed: Addressed,
    handshake: &Handshake,
) -> Result<Arc<HttpConnection>, Box<Response>> {
    // An old connection token cannot bring back a connection that ended.
    if !addressed.may_open || edge.addresses.has_ended(&addressed.scope.app, &addressed.id) {
        return Err(Box::new(no_connection()));
    }
    if edge.draining() {
        return Err(Box::new(problem(StatusCode::SERVICE_UNAVAILABLE, "draining", "this node is draining; reconnect")));
    }
    let token_user = addressed.authorized.claims.sub.as_ref().map(ToString::to_string);
    let admitted = match open(edge, addressed, Transport::LongPolling, handshake).await {
        Ok(admitted) => admitted,
        Err(request) => return Err(Box::new(refusal(&request))),
    };
    let http = HttpConnection::register(edge, admission::start(edge, admitted).await, token_user);
    long_polling::watch(Arc::clone(edge), Arc::clone(&http));
    Ok(http)
}

/// `POST /client/?hub=…&id=…`: messages from the client. The tokens are checked before the
/// body is read: a client without them cannot make the server wait for a body.
pub(crate) async fn send(
    State(edge): State<Arc<EdgeState>>,
    query: TransportQuery,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    let pending = request.extensions().get::<PendingAuth>().cloned();
    let handshake = Handshake::of(&request, &headers);
    let addressed = match address(&edge, &query, &headers, pending.as_ref()).await {
        Ok(addressed) => addressed,
        Err(response) => return *response,
    };
    let body = match axum::body::to_bytes(request.into_body(), MAX_SEND_BYTES).await {
        Ok(body) => body,
        Err(err) => return unreadable_body(&err),
    };
    if let Some(http) = local(&edge, &addressed) {
        let user = addressed.authorized.claims.sub.as_ref().map(|u| u.as_str());
        let (status, body) = deliver_send(&edge, &http, user, &body).await;
        return reply(status, body);
    }
    if edge.hub.connection(&addressed.scope.app, addressed.id.as_str()).is_some() {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(b"POST requests are not allowed for WebSocket connections."),
        );
    }
    match forward(&edge, &addressed, TransportKind::Send, body.clone()).await {
        Forwarded::Answered(response) => response,
        // Nobody holds it yet: a send before the first poll opens it here.
        Forwarded::NoOne => {
            let user = addressed.authorized.claims.sub.as_ref().map(ToString::to_string);
            match open_long_polling(&edge, addressed, &handshake).await {
                Ok(http) => {
                    let (status, body) = deliver_send(&edge, &http, user.as_deref(), &body).await;
                    reply(status, body)
                }
                Err(response) => *response,
            }
        }
    }
}

async fn deliver_send(edge: &EdgeState, http: &HttpConnection, user: Option<&str>, body: &[u8]) -> (StatusCode, Bytes) {
    if !http.same_user(user) {
        return (StatusCode::NOT_FOUND, Bytes::from_static(b"No Connection with that ID"));
    }
    match http.receive(edge, body).await {
        Received::Taken => (StatusCode::OK, Bytes::new()),
        Received::Busy => (StatusCode::CONFLICT, Bytes::from_static(b"Another send request is in progress.")),
        Received::Gone => (StatusCode::NOT_FOUND, Bytes::from_static(b"No Connection with that ID")),
    }
}

/// A send body that could not be read: too large, or it broke off (or came too late: the
/// HTTP server then answers `408` instead).
fn unreadable_body(err: &axum::Error) -> Response {
    let too_large =
        std::error::Error::source(err).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
    if too_large {
        let detail = format!("a send may carry at most {MAX_SEND_BYTES} bytes");
        return problem(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", &detail);
    }
    problem(StatusCode::BAD_REQUEST, "unreadable-body", "the request body could not be read")
}

/// `DELETE /client/?hub=…&id=…`: the client ends its long-polling connection.
pub(crate) async fn delete(
    State(edge): State<Arc<EdgeState>>,
    query: TransportQuery,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    let pending = request.extensions().get::<PendingAuth>().cloned();
    let addressed = match address(&edge, &query, &headers, pending.as_ref()).await {
        Ok(addressed) => addressed,
        Err(response) => return *response,
    };
    if let Some(http) = local(&edge, &addressed) {
        let user = addressed.authorized.claims.sub.as_ref().map(|u| u.as_str());
        let (status, body) = deliver_delete(&edge, &http, user);
        return reply(status, body);
    }
    if edge.hub.connection(&addressed.scope.app, addressed.id.as_str()).is_some() {
        return reply(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(b"Cannot terminate this connection using the DELETE endpoint."),
        );
    }
    match forward(&edge, &addressed, TransportKind::Delete, Bytes::new()).await {
        Forwarded::Answered(response) => response,
        Forwarded::NoOne => no_connection(),
    }
}

fn deliver_delete(edge: &EdgeState, http: &HttpConnection, user: Option<&str>) -> (StatusCode, Bytes) {
    if !http.same_user(user) {
        return (StatusCode::NOT_FOUND, Bytes::from_static(b"No Connection with that ID"));
    }
    if !long_polling::end(edge, http) {
        return (
            StatusCode::BAD_REQUEST,
            Bytes::from_static(b"Cannot terminate this connection using the DELETE endpoint."),
        );
    }
    (StatusCode::ACCEPTED, Bytes::new())
}

/// A long poll, as SignalR clients read its answer.
async fn poll(edge: &EdgeState, http: &HttpConnection) -> (StatusCode, Bytes) {
    match long_polling::poll(edge, http).await {
        Polled::Frames(frames) => (StatusCode::OK, frames),
        Polled::Ended => (StatusCode::NO_CONTENT, Bytes::new()),
        Polled::WrongTransport => {
            (StatusCode::BAD_REQUEST, Bytes::from_static(b"Cannot change transports mid-connection"))
        }
    }
}

enum Forwarded {
    Answered(Response),
    /// No edge holds the connection.
    NoOne,
}

/// Sends an HTTP transport request to the edge holding the connection.
async fn forward(edge: &EdgeState, addressed: &Addressed, kind: TransportKind, body: Bytes) -> Forwarded {
    let subject = edge.hub.config.subjects.connection(&addressed.scope.app, &addressed.id);
    let request = TransportRequest {
        app: addressed.scope.app.to_string(),
        connection: addressed.id.to_string(),
        kind: kind as i32,
        body,
        user: addressed.authorized.claims.sub.as_ref().map(ToString::to_string),
    };
    let timeout = match kind {
        TransportKind::Poll => long_polling::POLL_TIMEOUT + Duration::from_secs(5),
        TransportKind::Send => SEND_FORWARD_TIMEOUT,
        TransportKind::Delete | TransportKind::Describe | TransportKind::Handover => edge.hub.config.api_timeout,
    };
    match edge.hub.bus.request(subject, wire::encode(Body::Transport(request)), timeout).await {
        Ok(answer) => match wire::decode(answer) {
            Ok(Body::TransportReply(TransportReply { status, body })) => {
                let status = u16::try_from(status).ok().and_then(|s| StatusCode::from_u16(s).ok());
                Forwarded::Answered(reply(status.unwrap_or(StatusCode::BAD_GATEWAY), body))
            }
            _ => Forwarded::Answered(problem(
                StatusCode::BAD_GATEWAY,
                "bad-forward",
                "the edge holding the connection answered unreadably",
            )),
        },
        Err(BusError::NoResponders) => Forwarded::NoOne,
        Err(err) => {
            tracing::warn!(connection = %addressed.id, error = %err, "cannot forward a SignalR transport request");
            Forwarded::Answered(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "cannot reach the connection right now; retry",
            ))
        }
    }
}

/// Answers a request another edge forwarded for a connection held here.
pub(super) async fn answer_forwarded(edge: Arc<EdgeState>, reply_to: Option<ReplyTo>, request: TransportRequest) {
    let Some(reply_to) = reply_to else { return };
    let key = signalbox_core::AppId::new(&request.app).ok().zip(ConnectionId::new(&request.connection).ok());
    let http = key.and_then(|(app, id)| edge.http_connections.get(&app, &id));
    let (status, body) = match http {
        // Ended here a moment ago (and still answering for it), or never here.
        None => (StatusCode::NOT_FOUND, Bytes::from_static(b"No Connection with that ID")),
        Some(http) => {
            let user = request.user.as_deref();
            match TransportKind::try_from(request.kind) {
                Ok(TransportKind::Poll) if http.same_user(user) => poll(&edge, &http).await,
                Ok(TransportKind::Poll) => (StatusCode::NOT_FOUND, Bytes::from_static(b"No Connection with that ID")),
                Ok(TransportKind::Send) => deliver_send(&edge, &http, user, &request.body).await,
                Ok(TransportKind::Delete) => deliver_delete(&edge, &http, user),
                // Answered by `handover`, never here.
                Ok(TransportKind::Describe | TransportKind::Handover) | Err(_) => {
                    (StatusCode::BAD_REQUEST, Bytes::new())
                }
            }
        }
    };
    let answer = TransportReply { status: u32::from(status.as_u16()), body };
    if let Err(err) = reply_to.send(wire::encode(Body::TransportReply(answer))).await {
        tracing::debug!(error = %err, "could not answer a forwarded SignalR request");
    }
}

/// `GET` with `Accept: text/event-stream`: opens the connection here and streams to it.
async fn event_stream(edge: Arc<EdgeState>, addressed: Addressed, handshake: &Handshake) -> Response {
    if edge.draining() {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "draining", "this node is draining; reconnect");
    }
    if edge.hub.connection(&addressed.scope.app, addressed.id.as_str()).is_some() {
        return problem(StatusCode::CONFLICT, "connection-in-use", "this connection already has a transport");
    }
    if !addressed.may_open || edge.addresses.has_ended(&addressed.scope.app, &addressed.id) {
        return no_connection();
    }
    let token_user = addressed.authorized.claims.sub.as_ref().map(ToString::to_string);
    let admitted = match open(&edge, addressed, Transport::ServerSentEvents, handshake).await {
        Ok(admitted) => admitted,
        Err(request) => return refusal(&request),
    };
    let http = HttpConnection::register(&edge, admission::start(&edge, admitted).await, token_user);
    event_stream::response(edge, http)
}

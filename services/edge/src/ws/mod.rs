//! The WebSocket transport: the `101` answer, then one task per connection, whatever the
//! protocol (its entry checks the request and admits the connection first).
//!
//! The token is checked before the `101` is sent, but a refused token still gets the
//! upgrade, followed at once by a close frame with the code that says why (4401, 4402,
//! 4403, 1013, 4102): a browser cannot read the status of a failed upgrade, only a close
//! code. Requests that are not WebSocket upgrades at all get a problem+json error.

pub(crate) mod codec;
mod connection;

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::EdgeState;
use crate::admission::{self, Admitted};
use crate::outbox::CloseRequest;
use crate::problem::problem;
use crate::session::Session;
use connection::{Connection, Socket};

/// What a socket that was accepted goes on with.
pub(crate) enum Opening {
    /// A new connection, admitted.
    Admitted(Admitted),
    /// A parked connection its client resumes (its outbox is unparked already).
    Resumed(Session),
}

/// Answers `101` and runs the connection on the upgraded stream (a refused one is closed with
/// its code at once).
pub(crate) fn accept_upgrade(
    edge: Arc<EdgeState>,
    on_upgrade: OnUpgrade,
    accept: HeaderValue,
    subprotocol: Option<&'static str>,
    opening: Result<Opening, CloseRequest>,
) -> Response {
    let edge_for_task = edge;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(error = %err, "client left during the upgrade");
                match opening {
                    Ok(Opening::Admitted(admitted)) => {
                        admission::finish(&edge_for_task, &admitted.conn, 1006, "the client left during the upgrade");
                    }
                    Ok(Opening::Resumed(session)) => park_or_end(&edge_for_task, session),
                    Err(_) => {}
                }
                return;
            }
        };
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            // `read_buf` may share hyper's whole read buffer: keep a copy of the (usually zero)
            // bytes the client sent early, not the buffer, for the connection's lifetime.
            Ok(parts) => {
                let prefix = parts.read_buf.to_vec();
                drop(parts.read_buf);
                serve(edge_for_task, parts.io.into_inner(), prefix, opening).await;
            }
            Err(upgraded) => serve(edge_for_task, TokioIo::new(upgraded), Vec::new(), opening).await,
        }
    });

    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    response_headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(subprotocol) = subprotocol {
        response_headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(subprotocol));
    }
    response
}

/// Why an upgrade request was refused before any WebSocket existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    NotWebSocket,
    UnsupportedVersion,
    /// None of the offered subprotocols is spoken; this one is.
    UnsupportedSubprotocol(&'static str),
}

impl IntoResponse for HandshakeError {
    fn into_response(self) -> Response {
        match self {
            Self::NotWebSocket => problem(
                StatusCode::BAD_REQUEST,
                "not-websocket",
                "this endpoint expects a WebSocket upgrade (GET with Upgrade: websocket)",
            ),
            Self::UnsupportedVersion => {
                let mut response = problem(
                    StatusCode::UPGRADE_REQUIRED,
                    "websocket-version",
                    "only WebSocket version 13 is supported",
                );
                response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
                response
            }
            Self::UnsupportedSubprotocol(spoken) => {
                let detail = format!("unsupported subprotocol; this endpoint speaks {spoken}");
                problem(StatusCode::BAD_REQUEST, "unsupported-subprotocol", &detail)
            }
        }
    }
}

/// Checks the upgrade request; returns the `Sec-WebSocket-Accept` value and the subprotocol
/// to answer with. With `spoken`, a client that offers subprotocols must offer it; without,
/// the offers are ignored.
pub(crate) fn check_handshake(
    method: &Method,
    headers: &HeaderMap,
    spoken: Option<&'static str>,
) -> Result<(HeaderValue, Option<&'static str>), HandshakeError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(token))
    };
    if method != Method::GET || !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NotWebSocket);
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else { return Err(HandshakeError::NotWebSocket) };
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let subprotocol = match spoken {
        Some(spoken) if offered.contains(&spoken) => Some(spoken),
        Some(spoken) if !offered.is_empty() => return Err(HandshakeError::UnsupportedSubprotocol(spoken)),
        _ => None,
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accept = HeaderValue::from_str(&accept).map_err(|_| HandshakeError::NotWebSocket)?;
    Ok((accept, subprotocol))
}

/// A resumed connection whose new socket is gone too: parked again, or ended if it cannot be.
pub(crate) fn park_or_end(edge: &Arc<EdgeState>, session: Session) {
    if session.conn().outbox.park() {
        edge.parked.park(session);
    } else {
        admission::finish(edge, session.conn(), 1006, "the client left during the upgrade");
    }
}

/// Runs an upgraded connection: closes a refused one with its code, starts and runs an
/// admitted one, runs a resumed one.
async fn serve<S: Socket>(edge: Arc<EdgeState>, mut io: S, prefix: Vec<u8>, opening: Result<Opening, CloseRequest>) {
    let admitted = match opening {
        Ok(Opening::Admitted(admitted)) => admitted,
        Ok(Opening::Resumed(session)) => {
            tracing::info!(connection = %session.conn().id, app = %session.conn().scope.app, "connection resumed");
            metrics::counter!("signalbox_resumes_total").increment(1);
            return Connection::new(io, &prefix, session, Arc::clone(&edge)).run().await;
        }
        Err(refusal) => {
            let frame = codec::close_frame(refusal.code.code(), &refusal.reason);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                let _ = io.write_all(&frame).await;
                let _ = io.shutdown().await;
            })
            .await;
            return;
        }
    };
    let session = admission::start(&edge, admitted).await;
    let connection = Connection::new(io, &prefix, session, Arc::clone(&edge));
    drop(prefix);
    connection.run().await;
}

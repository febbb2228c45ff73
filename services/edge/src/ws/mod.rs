//! The WebSocket transport: `GET /client` upgrades, then one task per connection.
//!
//! The token is checked before the `101` is sent, but a refused token still gets the
//! upgrade, followed at once by a close frame with the code that says why (4401, 4402,
//! 4403, 1013, 4102): a browser cannot read the status of a failed upgrade, only a close
//! code. Requests that are not WebSocket upgrades at all get a problem+json error.

pub(crate) mod codec;
pub(crate) mod connect;
mod connection;

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use signalbox_core::{CloseCode, ConnectionId, GroupName, Permissions, Scope, WebhookEvent, clock};
use signalbox_proto::native::{self, GroupRecovery};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::EdgeState;
use crate::auth::{self, Authorized};
use crate::conn::{Conn, Groups, WireFormat};
use crate::hub::Refusal;
use crate::outbox::{CloseRequest, Outbox};
use crate::problem::problem;
use crate::recoveries::Recoveries;
use crate::session::Session;
pub(crate) use connect::Handshake;
use connect::Identity;
use connect::ask_connect_webhook;
use connection::{Connection, Handler, Socket};

#[derive(Debug, Deserialize)]
pub(crate) struct ClientQuery {
    access_token: Option<String>,
    /// `{"group": last_position, …}`: groups to recover after a reconnect.
    recover: Option<String>,
}

/// Groups a client asks to recover at connect: at most this many.
const MAX_RECOVER: usize = 100;

/// A connection that passed every check and is registered with the hub.
pub(crate) struct Admitted {
    pub(crate) conn: Arc<Conn>,
    pub(crate) permissions: Permissions,
    pub(crate) groups: Vec<GroupName>,
    /// Groups to recover, with the position the client last saw.
    pub(crate) recover: Vec<(GroupName, u64)>,
    /// Groups the client asked to recover but may not join.
    pub(crate) refused: Vec<GroupRecovery>,
}

/// Parses `recover`: a JSON object of group names to positions. The error is a problem detail.
fn parse_recover(raw: Option<&str>) -> Result<Vec<(GroupName, u64)>, String> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let positions: std::collections::BTreeMap<String, u64> = serde_json::from_str(raw)
        .map_err(|_| "`recover` must be a JSON object of group names to positions".to_owned())?;
    if positions.len() > MAX_RECOVER {
        return Err(format!("`recover` names more than {MAX_RECOVER} groups"));
    }
    positions
        .into_iter()
        .map(|(group, position)| GroupName::new(group).map(|g| (g, position)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// `GET /client?access_token=…` with `Sec-WebSocket-Protocol: signalbox.json.v1`.
pub(crate) async fn upgrade(
    State(edge): State<Arc<EdgeState>>,
    Query(query): Query<ClientQuery>,
    method: Method,
    headers: HeaderMap,
    mut request: axum::extract::Request,
) -> Response {
    let accept = match check_handshake(&method, &headers) {
        Ok(accept) => accept,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "upgrade-unavailable",
            "this server cannot upgrade connections",
        );
    };
    if edge.draining() {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "draining", "this node is draining; connect to another one");
    }
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let token = query.access_token.as_deref().or(bearer);
    let recover = match parse_recover(query.recover.as_deref()) {
        Ok(recover) => recover,
        Err(detail) => return problem(StatusCode::BAD_REQUEST, "invalid-recover", &detail),
    };
    let handshake = Handshake::of(&request, &headers);
    let admitted = match auth::authenticate(&edge.directory, token).await {
        Ok(authorized) => {
            // The connect webhook may take a while: this request no longer counts as
            // unauthenticated.
            crate::http::authenticated(request.extensions());
            let scope = Scope::native(authorized.key.app.clone());
            let id = ConnectionId::generate(&edge.hub.config.node);
            let format = WireFormat::NativeJsonWebSocket;
            admit(&edge, authorized, Admission { scope, id, format, wanted: recover, handshake: &handshake }).await
        }
        Err(err) => Err(refused(&err)),
    };
    let admitted = admitted.map(Started::Native);
    accept_upgrade(edge, on_upgrade, accept, offers_native(&headers), admitted)
}

/// A connection's start, per protocol.
pub(crate) enum Started {
    Native(Admitted),
    SignalR(Admitted),
}

impl Started {
    fn conn(&self) -> &Arc<Conn> {
        match self {
            Self::Native(admitted) => &admitted.conn,
            Self::SignalR(admitted) => &admitted.conn,
        }
    }
}

/// Counts and describes a refused token.
pub(crate) fn refused(err: &auth::AuthError) -> CloseRequest {
    metrics::counter!("signalbox_connects_refused_total", "code" => err.close_code().code().to_string()).increment(1);
    CloseRequest::new(err.close_code(), err.to_string())
}

/// Answers `101` and runs the connection on the upgraded stream (a refused one is closed with
/// its code at once).
pub(crate) fn accept_upgrade(
    edge: Arc<EdgeState>,
    on_upgrade: OnUpgrade,
    accept: HeaderValue,
    native_subprotocol: bool,
    admitted: Result<Started, CloseRequest>,
) -> Response {
    let edge_for_task = edge;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(error = %err, "client left during the upgrade");
                if let Ok(started) = admitted {
                    crate::signalr::forget(&edge_for_task, started.conn());
                    edge_for_task.hub.detach(started.conn());
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
                serve(edge_for_task, parts.io.into_inner(), prefix, admitted).await;
            }
            Err(upgraded) => serve(edge_for_task, TokioIo::new(upgraded), Vec::new(), admitted).await,
        }
    });

    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    response_headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if native_subprotocol {
        response_headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(native::SUBPROTOCOL));
    }
    response
}

/// Why an upgrade request was refused before any WebSocket existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    NotWebSocket,
    UnsupportedVersion,
    UnsupportedSubprotocol,
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
            Self::UnsupportedSubprotocol => {
                let detail = format!("unsupported subprotocol; this endpoint speaks {}", native::SUBPROTOCOL);
                problem(StatusCode::BAD_REQUEST, "unsupported-subprotocol", &detail)
            }
        }
    }
}

/// Checks the upgrade request; returns the `Sec-WebSocket-Accept` value.
pub(crate) fn check_handshake(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, HandshakeError> {
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
    if !offered.is_empty() && !offered.contains(&native::SUBPROTOCOL) {
        return Err(HandshakeError::UnsupportedSubprotocol);
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    HeaderValue::from_str(&accept).map_err(|_| HandshakeError::NotWebSocket)
}

fn offers_native(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == native::SUBPROTOCOL)
}

/// Who and where a connection that passed its token check is to be.
pub(crate) struct Admission<'a> {
    pub(crate) scope: Scope,
    pub(crate) id: ConnectionId,
    pub(crate) format: WireFormat,
    /// Groups to recover, with the position the client last saw (native only).
    pub(crate) wanted: Vec<(GroupName, u64)>,
    pub(crate) handshake: &'a Handshake,
}

/// Asks the `connect` webhook if the app has one, applies limits, resolves the initial
/// groups and registers the connection.
pub(crate) async fn admit(
    edge: &Arc<EdgeState>,
    authorized: Authorized,
    admission: Admission<'_>,
) -> Result<Admitted, CloseRequest> {
    let Authorized { claims, key_id, key } = authorized;
    let Admission { scope, id, format, wanted, handshake } = admission;
    let config = &edge.hub.config;
    let mut identity = Identity {
        user: claims.sub.clone(),
        groups: claims.groups.clone(),
        permissions: claims.permissions(),
        info: claims.info.as_ref().map(|info| Arc::from(info.to_string())),
    };
    if key.webhook_events.contains(WebhookEvent::Connect) {
        ask_connect_webhook(edge, &key, &scope, &id, &claims, handshake, &mut identity).await?;
    }
    let Identity { user, mut groups, permissions, info } = identity;
    if let Some(user) = &user {
        let added = edge.directory.user_groups(&scope.app, &scope.hub, user).await.map_err(|_| {
            CloseRequest::new(CloseCode::TryAgainLater, "cannot load the user's groups right now; retry")
        })?;
        groups.extend(added);
    }
    // A group to recover is joined now if the token permits it.
    let (mut recover, mut refused) = (Vec::new(), Vec::new());
    for (group, position) in wanted {
        if groups.contains(&group) || permissions.allows(signalbox_core::Action::Join, &group) {
            groups.push(group.clone());
            recover.push((group, position));
        } else {
            refused.push(GroupRecovery::failed(group.as_str(), signalbox_core::RecoveryFailure::Forbidden));
        }
    }
    groups.sort();
    groups.dedup();
    // Refused before anything is registered, with a code that says retrying cannot help.
    let max_groups = key.settings.limits.max_groups_per_connection as usize;
    if groups.len() > max_groups {
        return Err(CloseRequest::new(
            CloseCode::TooManyGroups,
            format!("the connection would start in {} groups; the app allows {max_groups}", groups.len()),
        ));
    }
    let conn = Arc::new(Conn {
        key: edge.hub.next_key(),
        id,
        scope,
        user,
        key_id,
        format: crate::conn::FormatCell::new(format),
        open: (!format.is_signalr()).into(),
        settings: Arc::clone(&key.settings),
        connected_at: clock::unix_seconds(),
        outbox: Outbox::new(
            crate::outbox::capacity_for(
                config.outbox_max_bytes,
                key.settings.limits.max_message_bytes as usize,
                format,
            ),
            config.outbox_max_frames,
        ),
        groups: parking_lot::Mutex::new(Groups::default()),
        last_seen: edge.hub.now_secs().into(),
        recovery: Recoveries::default(),
        info,
        webhook_events: key.webhook_events,
        announced: false.into(),
    });
    edge.hub.register(&conn).map_err(|refusal| {
        let (code, reason) = match refusal {
            Refusal::AppFull => (CloseCode::ConnectionLimit, "the app's connection limit is reached"),
            Refusal::NodeFull => (CloseCode::ConnectionLimit, "this node is full"),
            Refusal::IdInUse => (CloseCode::ConnectRejected, "this connection id is in use"),
        };
        metrics::counter!("signalbox_connects_refused_total", "code" => code.code().to_string()).increment(1);
        CloseRequest::new(code, reason)
    })?;
    Ok(Admitted { conn, permissions, groups, recover, refused })
}

/// Runs an upgraded connection: closes refused ones with their code, attaches and runs
/// admitted ones.
async fn serve<S: Socket>(edge: Arc<EdgeState>, mut io: S, prefix: Vec<u8>, admitted: Result<Started, CloseRequest>) {
    let Admitted { conn, permissions, groups, recover, refused } = match admitted {
        Ok(Started::Native(admitted)) => admitted,
        Ok(Started::SignalR(admitted)) => {
            let session = crate::signalr::start(&edge, admitted).await;
            Connection::new(io, &prefix, session.conn(), Arc::clone(&edge), Handler::SignalR(session)).run().await;
            return;
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
    metrics::counter!("signalbox_connects_total").increment(1);
    // The welcome is queued first, but nothing is written until the connection is attached:
    // so the client sees it only once every subscription is in place, and anything that
    // arrived meanwhile follows it.
    let heartbeat = edge.hub.config.heartbeat_interval.as_secs();
    conn.send(&native::encode_welcome(conn.id.as_str(), conn.user.as_ref().map(|u| u.as_str()), heartbeat));
    // Before joining: every live message of a recovering group meets the hold.
    for (group, _) in &recover {
        conn.recovery.start(group);
    }
    let attached = edge.hub.attach(&conn, &groups).await;
    if attached.is_ok() && !(recover.is_empty() && refused.is_empty()) {
        // Replays run beside the connection, so its writer sends them as the client reads.
        let (hub, conn) = (Arc::clone(&edge.hub), Arc::clone(&conn));
        tokio::spawn(async move {
            let mut outcomes = refused;
            for (group, position) in recover {
                outcomes.push(hub.replay(&conn, &group, position).await);
            }
            conn.send(&native::encode_recovery(&outcomes));
        });
    }
    match attached {
        Ok(()) => edge.events.connected(&conn),
        Err(err) => {
            tracing::warn!(connection = %conn.id, error = %err, "cannot attach connection");
            conn.outbox.close_now(err.close_request());
        }
    }
    tracing::info!(connection = %conn.id, app = %conn.scope.app, user = ?conn.user, "connection open");
    let session = Session::new(Arc::clone(&edge), Arc::clone(&conn), permissions);
    let connection = Connection::new(io, &prefix, conn, Arc::clone(&edge), Handler::Native(session));
    drop(prefix);
    connection.run().await;
}

//! A resumable connection changing edges: its client resumes it on another node (the one it
//! was on drains, or the client's new socket lands elsewhere), which takes it over from the
//! node that holds it — over the connection's own subject, with no shared store.
//!
//! 1. The new node asks the holder to **describe** the connection (who, which groups, which
//!    key, which encoding). Nothing changes hands: the holder keeps delivering and retaining.
//! 2. The new node registers the connection *parked*, joins its targets (subscribing its
//!    subjects) and its own subject: from then on every message for it reaches both nodes.
//! 3. It asks for the **handover**: the holder parks the connection (its socket, if any, lets
//!    go), answers with every frame not acknowledged and the client's numbering, and lets the
//!    connection go without telling anyone it left.
//! 4. The new node retains the holder's frames first, then the ones it retained itself since
//!    step 2 that are not copies of the same messages, and resumes the connection on the
//!    client's socket: the client gets every message it missed, in order, once.
//!
//! Presence sees the move as neither a leave nor a join (only the nodes' counts change), the
//! app's webhooks see nothing, and the api learns which edge owes the connection's disconnect.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use signalbox_bus::{BusError, ReplyTo};
use signalbox_core::{CloseCode, ConnectionId, GroupName, KeyId, Permission, Permissions, Scope, UserId, clock};
use signalbox_proto::wire::{self, Body, HandedFrame, Handover, TransportKind, TransportRequest};

use crate::EdgeState;
use crate::conn::{Conn, Groups};
use crate::outbox::{Outbox, RetainedFrame};
use crate::protocol::{Encoding, Format, Input, Outbound, Sequencing, Transport};
use crate::recoveries::Recoveries;
use crate::session::{MESSAGE_OVERHEAD, Session};

/// How long the holder may take to describe the connection.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the holder may take to hand it over (its socket may have to let go first).
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(6);
/// How long the holder waits for the connection's socket to let go of it.
const PARK_WAIT: Duration = Duration::from_secs(4);

const FOUND: u32 = 200;
const ENDED: u32 = 404;
const NOT_RESUMABLE: u32 = 409;

/// What became of a resume that reached a node that does not hold the connection.
pub(crate) enum TakeOver {
    /// Taken over: the session to run on the client's new socket.
    Resumed(Box<Session>),
    /// No node holds it: it may be opened as a new connection.
    NoOne,
    /// It ended, or cannot be resumed: the client must start over.
    Gone,
}

/// Takes over the connection `id` of `scope` from the node holding it, for a client whose
/// token (user `user`) resumes it here.
pub(crate) async fn take_over(edge: &Arc<EdgeState>, scope: &Scope, id: &ConnectionId, user: Option<&str>) -> TakeOver {
    let description = match ask(edge, scope, id, user, TransportKind::Describe, DESCRIBE_TIMEOUT).await {
        Ok(handover) if handover.status == FOUND => handover,
        Ok(_) => return TakeOver::Gone,
        Err(BusError::NoResponders) => return TakeOver::NoOne,
        Err(err) => {
            tracing::warn!(connection = %id, error = %err, "cannot ask about a connection to resume");
            return TakeOver::Gone;
        }
    };
    let Some(conn) = register(edge, scope, id, &description).await else { return TakeOver::Gone };
    let joined = async {
        edge.addresses.subscribe(&edge.hub, &conn).await?;
        edge.hub.attach(&conn, &groups(&description)).await.map_err(|_| BusError::Unavailable)
    };
    if let Err(err) = joined.await {
        tracing::warn!(connection = %id, error = %err, "cannot subscribe a connection taken over");
        return abandon(edge, &conn);
    }
    let handover = match ask(edge, scope, id, user, TransportKind::Handover, HANDOVER_TIMEOUT).await {
        Ok(handover) if handover.status == FOUND => handover,
        outcome => {
            tracing::info!(connection = %id, ok = outcome.is_ok(), "the connection was not handed over");
            return abandon(edge, &conn);
        }
    };
    let frames = handover
        .frames
        .into_iter()
        .map(|f| RetainedFrame { frame: f.frame, message_id: f.message_id.map(Into::into) })
        .collect();
    // From here on the connection is this node's: failing, it ends (and is told to have ended).
    if conn.outbox.merge_retained(handover.first_id, frames).is_err() {
        tracing::info!(connection = %id, "more to resume than the connection may retain");
        return end(edge, &conn, CloseCode::SlowConsumer, "more was missed than the connection may hold");
    }
    let format = conn.format();
    let mut input = Input::new(format.info(), conn.settings.limits.max_message_bytes as usize + MESSAGE_OVERHEAD);
    input.opened = true;
    input.sequence = Some(Sequencing { next: handover.inbound_next, latest: handover.inbound_latest });
    let permissions = Permissions::new(handover.permissions.iter().filter_map(|p| Permission::parse(p).ok()).collect());
    let session = Session::resumed(Arc::clone(edge), Arc::clone(&conn), permissions, input);
    if !conn.outbox.unpark(|first| format.encode(&Outbound::Sequence(first))) {
        return end(edge, &conn, CloseCode::Normal, "the connection was closed while it moved");
    }
    conn.moving.store(false, Ordering::Release);
    conn.open.store(true, Ordering::Release);
    edge.events.moved(&conn);
    metrics::counter!("signalbox_handovers_total", "side" => "taken").increment(1);
    tracing::info!(connection = %id, app = %scope.app, "connection taken over from another edge");
    TakeOver::Resumed(Box::new(session))
}

async fn ask(
    edge: &EdgeState,
    scope: &Scope,
    id: &ConnectionId,
    user: Option<&str>,
    kind: TransportKind,
    timeout: Duration,
) -> Result<Handover, BusError> {
    let request = TransportRequest {
        app: scope.app.to_string(),
        connection: id.to_string(),
        kind: kind as i32,
        body: bytes::Bytes::new(),
        user: user.map(str::to_owned),
    };
    let subject = edge.hub.config.subjects.connection(&scope.app, id);
    let answer = edge.hub.bus.request(subject, wire::encode(Body::Transport(request)), timeout).await?;
    match wire::decode(answer) {
        Ok(Body::Handover(handover)) => Ok(handover),
        other => {
            tracing::warn!(connection = %id, answer = ?other, "an unreadable answer about a connection to resume");
            Err(BusError::Unavailable)
        }
    }
}

fn groups(description: &Handover) -> Vec<GroupName> {
    description.groups.iter().filter_map(|g| GroupName::new(g).ok()).collect()
}

/// Registers the connection described, parked (what reaches it is retained, not sent).
async fn register(edge: &EdgeState, scope: &Scope, id: &ConnectionId, description: &Handover) -> Option<Arc<Conn>> {
    let encoding = Encoding::named(&description.encoding)?;
    let key_id = KeyId::new(&description.key_id).ok()?;
    let key = edge.directory.key(&scope.app, &key_id).await.ok().filter(|k| !k.revoked)?;
    let format = Format::new(encoding, Transport::WebSocket);
    let config = &edge.hub.config;
    let max_payload = key.settings.limits.max_message_bytes as usize;
    let conn = Arc::new(Conn {
        key: edge.hub.next_key(),
        id: id.clone(),
        scope: scope.clone(),
        user: description.user.as_deref().and_then(|u| UserId::new(u).ok()),
        key_id,
        format: crate::protocol::FormatCell::new(format),
        open: false.into(),
        settings: Arc::clone(&key.settings),
        connected_at: description.connected_at,
        outbox: Outbox::new(
            crate::outbox::capacity_for(config.outbox_max_bytes, max_payload, format),
            config.outbox_max_frames,
        ),
        groups: parking_lot::Mutex::new(Groups::default()),
        last_seen: edge.hub.now_secs().into(),
        recovery: Recoveries::default(),
        info: description.info_json.as_deref().map(Arc::from),
        webhook_events: key.webhook_events,
        announced: description.announced.into(),
        resumable: true,
        moving: true.into(),
        member: std::sync::OnceLock::new(),
        signed_in: std::sync::OnceLock::new(),
    });
    conn.outbox.retain();
    conn.outbox.park();
    edge.hub.register(&conn).ok()?;
    Some(conn)
}

/// A connection taken over that cannot go on: it ends here, as any connection does.
fn end(edge: &EdgeState, conn: &Arc<Conn>, code: CloseCode, reason: &str) -> TakeOver {
    conn.moving.store(false, Ordering::Release);
    let (code, reason) = match conn.outbox.close_request() {
        Some(request) => (request.code.code(), request.reason.into_owned()),
        None => (code.code(), reason.to_owned()),
    };
    crate::admission::finish(edge, conn, code, &reason);
    TakeOver::Gone
}

/// A takeover that did not happen: the connection leaves here as if it never came.
fn abandon(edge: &EdgeState, conn: &Arc<Conn>) -> TakeOver {
    edge.addresses.release(&edge.hub, conn);
    edge.hub.detach(conn);
    TakeOver::Gone
}

/// Answers another edge asking about (or taking over) a connection it holds. A connection
/// being taken over here is not answered for: the node it comes from answers.
pub(crate) async fn answer(edge: Arc<EdgeState>, reply: Option<ReplyTo>, request: TransportRequest) {
    let Some(reply) = reply else { return };
    let (Ok(app), Ok(id)) = (signalbox_core::AppId::new(&request.app), ConnectionId::new(&request.connection)) else {
        return;
    };
    let handover = match edge.hub.connection(&app, id.as_str()) {
        Some(conn) if conn.moving.load(Ordering::Acquire) => return,
        Some(conn) if !conn.outbox.is_retaining() => status(NOT_RESUMABLE),
        Some(conn) => match TransportKind::try_from(request.kind) {
            Ok(TransportKind::Describe) => describe(&conn),
            Ok(TransportKind::Handover) => hand_over(&edge, &conn).await,
            _ => return,
        },
        None if edge.addresses.has_ended(&app, &id) => status(ENDED),
        None => return,
    };
    let _ = reply.send(wire::encode(Body::Handover(handover))).await;
}

fn status(status: u32) -> Handover {
    Handover { status, ..Handover::default() }
}

fn describe(conn: &Conn) -> Handover {
    Handover {
        status: FOUND,
        user: conn.user.as_ref().map(ToString::to_string),
        groups: conn.group_names().iter().map(ToString::to_string).collect(),
        info_json: conn.info.as_deref().map(str::to_owned),
        key_id: conn.key_id.to_string(),
        connected_at: conn.connected_at,
        encoding: conn.format().info().name.to_owned(),
        announced: conn.announced.load(Ordering::SeqCst),
        ..Handover::default()
    }
}

/// Parks the connection, gives away what it retained, and lets it go quietly.
async fn hand_over(edge: &EdgeState, conn: &Arc<Conn>) -> Handover {
    conn.outbox.request_park();
    let Some(session) = edge.parked.take_when_parked(conn, PARK_WAIT).await else { return status(ENDED) };
    let Some((first_id, frames)) = conn.outbox.take_retained() else { return status(ENDED) };
    let sequence = session.sequence().unwrap_or_default();
    let mut handover = describe(conn);
    handover.permissions = session.permissions().grants().iter().map(ToString::to_string).collect();
    handover.first_id = first_id;
    handover.frames = frames
        .into_iter()
        .map(|f| HandedFrame { frame: f.frame, message_id: f.message_id.map(|id| id.to_string()) })
        .collect();
    handover.inbound_next = sequence.next;
    handover.inbound_latest = sequence.latest;
    conn.moving.store(true, Ordering::Release);
    edge.addresses.release(&edge.hub, conn);
    edge.hub.detach(conn);
    metrics::counter!("signalbox_handovers_total", "side" => "given").increment(1);
    tracing::info!(connection = %conn.id, app = %conn.scope.app, at = clock::unix_seconds(), "connection handed over to another edge");
    handover
}

//! Admission: what every connection passes before it exists, whatever its protocol — its
//! token (checked by the protocol's entry), the app's `connect` webhook, the app's and the
//! node's limits, its first groups — and then its start.

mod connect;

use std::sync::Arc;

use signalbox_core::{CloseCode, ConnectionId, GroupName, Permissions, Scope, WebhookEvent, clock};
use signalbox_proto::native::GroupRecovery;

use crate::EdgeState;
use crate::auth::{self, Authorized};
use crate::conn::{Conn, Groups};
use crate::hub::Refusal;
use crate::outbox::{CloseRequest, Outbox};
use crate::protocol::{Format, FormatCell, Outbound};
use crate::recoveries::Recoveries;
use crate::session::{Session, send};
pub(crate) use connect::Handshake;
use connect::{Identity, ask_connect_webhook};

/// A connection that passed every check and is registered with the hub.
pub(crate) struct Admitted {
    pub(crate) conn: Arc<Conn>,
    pub(crate) permissions: Permissions,
    pub(crate) groups: Vec<GroupName>,
    /// Groups to recover, with the position the client last saw.
    pub(crate) recover: Vec<(GroupName, u64)>,
    /// Groups the client asked to recover but may not join.
    pub(crate) refused: Vec<GroupRecovery>,
    /// Reached through its own subject (see [`Admission::own_subject`]).
    pub(crate) own_subject: bool,
}

/// Counts and describes a refused token.
pub(crate) fn refused(err: &auth::AuthError) -> CloseRequest {
    metrics::counter!("signalbox_connects_refused_total", "code" => err.close_code().code().to_string()).increment(1);
    CloseRequest::new(err.close_code(), err.to_string())
}

/// Who and where a connection that passed its token check is to be.
pub(crate) struct Admission<'a> {
    pub(crate) scope: Scope,
    pub(crate) id: ConnectionId,
    pub(crate) format: Format,
    /// Groups to recover, with the position the client last saw.
    pub(crate) wanted: Vec<(GroupName, u64)>,
    pub(crate) handshake: &'a Handshake,
    /// The id names no node (it was handed out before the connection existed): the
    /// connection is reached through its own subject instead.
    pub(crate) own_subject: bool,
    /// Its client may resume it on a new socket (see [`Conn::resumable`]).
    pub(crate) resumable: bool,
}

/// Asks the `connect` webhook if the app has one, applies limits, resolves the initial
/// groups and registers the connection.
pub(crate) async fn admit(
    edge: &Arc<EdgeState>,
    authorized: Authorized,
    admission: Admission<'_>,
) -> Result<Admitted, CloseRequest> {
    let Authorized { claims, key_id, key } = authorized;
    let Admission { scope, id, format, wanted, handshake, own_subject, resumable } = admission;
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
        format: FormatCell::new(format),
        open: format.info().opening.is_none().into(),
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
        resumable,
        moving: false.into(),
        member: std::sync::OnceLock::new(),
        signed_in: std::sync::OnceLock::new(),
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
    Ok(Admitted { conn, permissions, groups, recover, refused, own_subject })
}

/// Starts an admitted connection and returns its session. A connection reached through its
/// own subject subscribes it first. A protocol without an opening is welcomed and joins its
/// targets and groups (recovering those asked for) now; one with an opening does once its
/// opening is answered (see [`Session`]).
pub(crate) async fn start(edge: &Arc<EdgeState>, admitted: Admitted) -> Session {
    let Admitted { conn, permissions, groups, recover, refused, own_subject } = admitted;
    if own_subject && let Err(err) = edge.addresses.subscribe(&edge.hub, &conn).await {
        tracing::warn!(connection = %conn.id, error = %err, "cannot subscribe a connection's own subject");
        conn.outbox.close_now(CloseRequest::new(CloseCode::TryAgainLater, "cannot subscribe right now; retry"));
    }
    let format = conn.format();
    if format.info().opening.is_some() {
        tracing::debug!(connection = %conn.id, app = %conn.scope.app, hub = %conn.scope.hub, protocol = format.info().name, transport = format.transport.name(), "connection waits for its opening");
        return Session::new(Arc::clone(edge), conn, permissions, groups);
    }
    metrics::counter!("signalbox_connects_total").increment(1);
    // The welcome is queued first, but nothing is written until the connection is attached:
    // so the client sees it only once every subscription is in place, and anything that
    // arrived meanwhile follows it.
    let heartbeat_seconds = edge.hub.config.heartbeat_interval.as_secs();
    let user = conn.user.as_ref().map(|u| u.as_str());
    send(&conn, &Outbound::Welcome { connection_id: conn.id.as_str(), user, heartbeat_seconds });
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
            send(&conn, &Outbound::Recovery(&outcomes));
        });
    }
    match attached {
        Ok(()) => edge.events.connected(&conn),
        Err(err) => {
            tracing::warn!(connection = %conn.id, error = %err, "cannot attach connection");
            conn.outbox.close_now(err.close_request());
        }
    }
    tracing::info!(connection = %conn.id, app = %conn.scope.app, user = ?conn.user, protocol = format.info().name, "connection open");
    Session::new(Arc::clone(edge), conn, permissions, Vec::new())
}

/// A connection that has ended: its `disconnected` event, then it leaves its own subject (if
/// it has one) and the hub.
pub(crate) fn finish(edge: &EdgeState, conn: &Arc<Conn>, code: u16, reason: &str) {
    edge.events.disconnected(conn, code, reason);
    edge.addresses.forget(&edge.hub, conn);
    edge.hub.detach(conn);
}

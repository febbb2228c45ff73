//! Node-to-node control, as received by an edge: close, join or leave for one connection
//! (on the node's subject, answered when asked) or for every connection of a user (on the
//! user's subject), and config changes announced by the api.

use std::sync::Arc;

use bytes::Bytes;
use signalbox_bus::ReplyTo;
use signalbox_core::{AppId, CloseCode, ErrorCode, GroupName, HubName, KeyId, Scope, UserId};
use signalbox_proto::wire::{
    self, Body, ConfigChange, ConfigChangeKind, ConnectionInfo, Control, ControlOp, ControlReply, ControlStatus,
};

use crate::EdgeState;
use crate::conn::Conn;
use crate::hub::{JoinError, Target};
use crate::outbox::CloseRequest;

/// A close code from the wire: one of ours, or "closed by the backend".
fn close_code(code: u32) -> CloseCode {
    CloseCode::ALL.into_iter().find(|c| u32::from(c.code()) == code).unwrap_or(CloseCode::ClosedByBackend)
}

fn reply_packet(status: ControlStatus, info: Option<ConnectionInfo>, error: Option<(ErrorCode, String)>) -> Bytes {
    let (error_code, error_message) = error.map(|(c, m)| (c.as_str().to_owned(), m)).unwrap_or_default();
    wire::encode(Body::ControlReply(ControlReply {
        status: status as i32,
        info,
        error_code,
        error_message,
        presence: Vec::new(),
    }))
}

/// A presence query for this node: its connections in a group, or of a user.
pub(crate) async fn answer_presence(edge: Arc<EdgeState>, app: AppId, control: Control, reply: Option<ReplyTo>) {
    let Some(reply) = reply else { return };
    let (Some(ControlOp::Presence(query)), Ok(hub)) = (control.op, HubName::from_token(&control.hub)) else { return };
    let scope = Scope { app, hub };
    let subjects = &edge.hub.config.subjects;
    let presence = match (query.group, query.user, query.prefix) {
        (Some(group), _, _) => {
            GroupName::new(group).ok().map(|g| edge.hub.presence_entries(&subjects.group(&scope, &g)))
        }
        (None, Some(user), _) => UserId::new(user).ok().map(|u| edge.hub.presence_entries(&subjects.user(&scope, &u))),
        (None, None, Some(prefix)) => Some(edge.hub.presence_in_groups(&scope, &prefix)),
        (None, None, None) => None,
    }
    .unwrap_or_default();
    let packet = wire::encode(Body::ControlReply(ControlReply {
        status: ControlStatus::Done as i32,
        presence,
        ..ControlReply::default()
    }));
    let _ = reply.send(packet).await;
}

fn info(edge: &EdgeState, conn: &Conn) -> ConnectionInfo {
    ConnectionInfo {
        id: conn.id.to_string(),
        user: conn.user.as_ref().map(ToString::to_string),
        groups: conn.group_names().iter().map(ToString::to_string).collect(),
        protocol: conn.format().info().name.to_owned(),
        transport: conn.format().transport.name().to_owned(),
        node: edge.hub.config.node.to_string(),
        connected_at: conn.connected_at,
    }
}

/// Applies one operation to one connection; returns the reply's status and details.
async fn apply(
    edge: &EdgeState,
    conn: &Arc<Conn>,
    op: ControlOp,
) -> (ControlStatus, Option<ConnectionInfo>, Option<(ErrorCode, String)>) {
    match op {
        ControlOp::Close(close) => {
            conn.close(CloseRequest::new(close_code(close.code), close.reason));
            (ControlStatus::Done, None, None)
        }
        ControlOp::Join(group) => {
            let Ok(group) = GroupName::new(&group) else {
                return (ControlStatus::Refused, None, Some((ErrorCode::InvalidName, "invalid group name".into())));
            };
            match edge.hub.join(conn, &group).await {
                Ok(_) => (ControlStatus::Done, None, None),
                Err(JoinError::TooManyGroups(max)) => {
                    let message = format!("the connection is already in the maximum of {max} groups");
                    (ControlStatus::Refused, None, Some((ErrorCode::TooManyGroups, message)))
                }
                Err(JoinError::Closing) => (ControlStatus::NotFound, None, None),
                Err(JoinError::Bus(err)) => {
                    (ControlStatus::Refused, None, Some((ErrorCode::Unavailable, err.to_string())))
                }
            }
        }
        ControlOp::Leave(group) => {
            if let Ok(group) = GroupName::new(&group) {
                edge.hub.leave(conn, &group);
            }
            (ControlStatus::Done, None, None)
        }
        ControlOp::Query(_) => (ControlStatus::Done, Some(info(edge, conn)), None),
        // Addressed to the node, not a connection (see `answer_presence`).
        ControlOp::Presence(_) => {
            (ControlStatus::Refused, None, Some((ErrorCode::BadRequest, "not a connection op".into())))
        }
    }
}

/// A control operation on one connection of this node (from its node subject).
pub(crate) async fn apply_to_connection(edge: Arc<EdgeState>, app: AppId, control: Control, reply: Option<ReplyTo>) {
    // A connection id names one connection of the app: the `/v1` API (the native hub) reaches
    // it whatever its hub; a hub's own API (Azure's dialect) only its own.
    let conn = edge
        .hub
        .connection(&app, &control.connection)
        .filter(|c| control.hub == signalbox_core::HubName::native().as_str() || c.scope.hub.as_str() == control.hub);
    let (status, info, error) = match (conn, control.op) {
        (Some(conn), Some(op)) => apply(&edge, &conn, op).await,
        (None, _) => (ControlStatus::NotFound, None, None),
        (Some(_), None) => (ControlStatus::Refused, None, Some((ErrorCode::BadRequest, "no operation".into()))),
    };
    if let Some(reply) = reply {
        let _ = reply.send(reply_packet(status, info, error)).await;
    }
}

/// A control operation on every local connection of a user (from the user's subject).
pub(crate) async fn apply_to_user(edge: Arc<EdgeState>, target: Arc<Target>, control: Control) {
    let Some(op) = control.op else { return };
    let members: Vec<Arc<Conn>> = target.with_members(|m| m.values().cloned().collect());
    for conn in members {
        let (status, _, error) = apply(&edge, &conn, op.clone()).await;
        if status == ControlStatus::Refused {
            tracing::info!(connection = %conn.id, error = ?error, "user control refused for one connection");
        }
    }
}

/// A config change announced by the api.
pub(crate) fn apply_config(edge: &EdgeState, app: &AppId, change: ConfigChange) {
    match change.kind {
        Some(ConfigChangeKind::KeyRevoked(key)) => {
            let Ok(key) = KeyId::new(&key) else { return };
            edge.directory.forget_key(&key);
            close_where(edge, CloseCode::KeyRevoked, |c| c.key_id == key && &c.scope.app == app);
        }
        Some(ConfigChangeKind::SettingsChanged(_)) => edge.directory.forget_app(app),
        Some(ConfigChangeKind::AppDeleted(_)) => {
            edge.directory.forget_app(app);
            close_where(edge, CloseCode::AppDeleted, |c| &c.scope.app == app);
        }
        None => {}
    }
}

fn close_where(edge: &EdgeState, code: CloseCode, which: impl Fn(&Conn) -> bool) {
    let mut closed = 0;
    edge.hub.for_each_connection(|conn| {
        if which(conn) {
            conn.close(CloseRequest::default_for(code));
            closed += 1;
        }
    });
    tracing::info!(closed, code = code.code(), "closed connections after a config change");
}

//! Dispatchers: each drains one inbox of the routing plane and routes what arrives — a
//! message to its target's members, a control operation to its connections, a config
//! change to the directory.
//!
//! A packet that cannot be read or routed is counted, logged (the first time for each kind,
//! then sparingly) and dropped; the dispatcher carries on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use signalbox_bus::{Delivery, Inbox};
use signalbox_proto::Route;
use signalbox_proto::wire::{self, Body, ControlOp, Target as EnvelopeTarget, TransportKind};

use crate::EdgeState;
use crate::control;
use crate::hub::TargetKind;

/// Deliveries taken from an inbox per wake-up.
const BATCH: usize = 128;

pub(crate) async fn run(edge: Arc<EdgeState>, mut inbox: Inbox) {
    let mut batch = Vec::with_capacity(BATCH);
    while inbox.recv_many(&mut batch, BATCH).await > 0 {
        for delivery in batch.drain(..) {
            dispatch(&edge, delivery);
        }
    }
}

/// Counts of dropped packets, to log the first of each kind and then one in 10 000.
#[derive(Debug, Default)]
pub(crate) struct DropCounters {
    undecodable: AtomicU64,
    unroutable: AtomicU64,
    foreign: AtomicU64,
}

fn dropped(counter: &AtomicU64, kind: &'static str, subject: &str, detail: &dyn std::fmt::Display) {
    metrics::counter!("signalbox_bus_dropped_packets_total", "kind" => kind).increment(1);
    let seen = counter.fetch_add(1, Ordering::Relaxed);
    if seen.is_multiple_of(10_000) {
        tracing::warn!(subject, kind, detail = %detail, dropped_so_far = seen + 1, "dropping a packet from the routing plane");
    }
}

fn dispatch(edge: &Arc<EdgeState>, delivery: Delivery) {
    let Delivery { subject, payload, reply, position, .. } = delivery;
    let decode = |payload| match wire::decode(payload) {
        Ok(body) => Some(body),
        Err(err) => {
            dropped(&edge.drops.undecodable, err.label(), subject.as_str(), &err);
            None
        }
    };
    // The hot path: a subject this node has members for.
    if let Some(target) = edge.hub.target(&subject) {
        match decode(payload) {
            Some(Body::Message(envelope)) if envelope.app == target.scope.app.as_str() => match position {
                // A stored message: in position order, gaps repaired from the journal.
                Some(position) if target.group().is_some() => edge.hub.deliver_stored(&target, position, envelope),
                _ => {
                    edge.hub.fan_out(&target, &envelope);
                }
            },
            Some(Body::Control(op))
                if matches!(target.kind, TargetKind::User(_)) && op.app == target.scope.app.as_str() =>
            {
                tokio::spawn(control::apply_to_user(Arc::clone(edge), target, op));
            }
            Some(Body::PresenceUpdate(update))
                if target.group().is_some() && update.app == target.scope.app.as_str() =>
            {
                edge.hub.presence_heard(&target, update);
            }
            Some(_) => dropped(&edge.drops.foreign, "mismatch", subject.as_str(), &"packet does not fit its subject"),
            None => {}
        }
        return;
    }
    let route = match edge.hub.config.subjects.parse(subject.as_str()) {
        Ok(route) => route,
        Err(err) => return dropped(&edge.drops.unroutable, "bad_subject", subject.as_str(), &err),
    };
    match route {
        Route::Node(node, app) if node == edge.hub.config.node => match decode(payload) {
            Some(Body::Message(envelope)) if envelope.app == app.as_str() => {
                let Some(EnvelopeTarget::Connection(id)) = &envelope.target else {
                    return dropped(
                        &edge.drops.foreign,
                        "mismatch",
                        subject.as_str(),
                        &"node message without a connection",
                    );
                };
                // A connection gone since the api routed the message: at-most-once, nothing to do.
                if let Some(conn) = edge.hub.connection(&app, id) {
                    edge.hub.deliver_to(&conn, &envelope);
                }
            }
            Some(Body::Control(op)) if op.app == app.as_str() && matches!(op.op, Some(ControlOp::Presence(_))) => {
                tokio::spawn(control::answer_presence(Arc::clone(edge), app, op, reply));
            }
            Some(Body::Control(op)) if op.app == app.as_str() => {
                tokio::spawn(control::apply_to_connection(Arc::clone(edge), app, op, reply));
            }
            Some(_) => dropped(&edge.drops.foreign, "mismatch", subject.as_str(), &"packet does not fit its subject"),
            None => {}
        },
        Route::Connection(app, id) => match decode(payload) {
            Some(Body::Message(envelope)) if envelope.app == app.as_str() => {
                // Nothing before the handshake's answer.
                if let Some(conn) = edge.hub.connection(&app, id.as_str()).filter(|c| c.is_open()) {
                    edge.hub.deliver_to(&conn, &envelope);
                }
            }
            Some(Body::Control(op)) if op.app == app.as_str() => {
                tokio::spawn(control::apply_to_connection(Arc::clone(edge), app, op, reply));
            }
            Some(Body::Transport(request)) if request.app == app.as_str() && request.connection == id.as_str() => {
                match TransportKind::try_from(request.kind) {
                    Ok(TransportKind::Describe | TransportKind::Handover) => {
                        tokio::spawn(crate::handover::answer(Arc::clone(edge), reply, request));
                    }
                    _ => crate::protocol::signalr::answer_forwarded(edge, reply, request),
                }
            }
            Some(_) => dropped(&edge.drops.foreign, "mismatch", subject.as_str(), &"packet does not fit its subject"),
            None => {}
        },
        Route::Config(app) => match decode(payload) {
            Some(Body::ConfigChange(change)) if change.app == app.as_str() => control::apply_config(edge, &app, change),
            Some(_) => dropped(&edge.drops.foreign, "mismatch", subject.as_str(), &"packet does not fit its subject"),
            None => {}
        },
        Route::Heartbeat(_) => {
            if let Some(Body::Heartbeat(heartbeat)) = decode(payload) {
                edge.hub.peers.heard(&heartbeat);
            }
        }
        Route::RollCall => {
            let edge = Arc::clone(edge);
            tokio::spawn(async move {
                crate::presence::send_heartbeat(&edge).await;
            });
        }
        // A message for a target retired a moment ago: expected, not worth a log line.
        Route::Group(..) | Route::User(..) | Route::All(..) => {
            metrics::counter!("signalbox_bus_dropped_packets_total", "kind" => "no_target").increment(1);
        }
        route => dropped(&edge.drops.unroutable, "unroutable", subject.as_str(), &format!("{route:?}")),
    }
}

//! Connections reached through their own subject: those whose id names no node, because it
//! was handed out before the connection existed (SignalR's negotiate). The node holding such
//! a connection subscribes its subject, where its messages, control operations and forwarded
//! transport requests arrive.
//!
//! When the connection ends, its subject stays subscribed while its connection token could
//! still open it, so that requests for it are answered "gone" instead of opening it again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use signalbox_bus::{BusError, SubscriptionId};
use signalbox_core::{AppId, ConnectionId};
use signalbox_proto::Subject;

use crate::conn::{Conn, ConnKey};
use crate::hub::Hub;

/// How long an ended connection is remembered: as long as a connection token may open one.
const REMEMBER_ENDED: Duration =
    Duration::from_secs(signalbox_core::signalr::OPEN_WITHIN_SECONDS + signalbox_core::token::LEEWAY_SECONDS);

#[derive(Debug, Default)]
pub(crate) struct Addresses {
    /// The subscription of each live connection's own subject.
    routes: Mutex<HashMap<ConnKey, (Subject, SubscriptionId)>>,
    /// Connections that ended here, by app and id.
    ended: Mutex<HashMap<(AppId, ConnectionId), Ended>>,
}

#[derive(Debug)]
struct Ended {
    at: Instant,
    subject: Subject,
    subscription: SubscriptionId,
}

impl Addresses {
    /// Subscribes the connection's own subject.
    pub(crate) async fn subscribe(&self, hub: &Hub, conn: &Conn) -> Result<(), BusError> {
        let subject = hub.config.subjects.connection(&conn.scope.app, &conn.id);
        let subscription = hub.interest_for(&subject).subscribe(subject.clone(), None).await?;
        self.routes.lock().insert(conn.key, (subject, subscription));
        Ok(())
    }

    /// Whether a connection of this app and id ended here recently.
    pub(crate) fn has_ended(&self, app: &AppId, id: &ConnectionId) -> bool {
        self.ended.lock().contains_key(&(app.clone(), id.clone()))
    }

    /// A connection is leaving: its subject is kept a while to answer for it.
    pub(crate) fn forget(&self, hub: &Hub, conn: &Conn) {
        let Some((subject, subscription)) = self.routes.lock().remove(&conn.key) else { return };
        let ended = Ended { at: Instant::now(), subject, subscription };
        let replaced = self.ended.lock().insert((conn.scope.app.clone(), conn.id.clone()), ended);
        if let Some(replaced) = replaced {
            hub.interest_for(&replaced.subject).unsubscribe(replaced.subscription);
        }
    }

    /// A connection moved to another edge: its subject is that edge's to answer now.
    pub(crate) fn release(&self, hub: &Hub, conn: &Conn) {
        if let Some((subject, subscription)) = self.routes.lock().remove(&conn.key) {
            hub.interest_for(&subject).unsubscribe(subscription);
        }
    }

    /// Unsubscribes the subjects of connections that ended longer ago than a connection token
    /// may open one (the sweeper calls this).
    pub(crate) fn purge_ended(&self, hub: &Hub) {
        let mut expired = Vec::new();
        self.ended.lock().retain(|_, ended| {
            let keep = ended.at.elapsed() < REMEMBER_ENDED;
            if !keep {
                expired.push((ended.subject.clone(), ended.subscription));
            }
            keep
        });
        for (subject, subscription) in expired {
            hub.interest_for(&subject).unsubscribe(subscription);
        }
    }
}

//! Connection events for the app's webhooks (`connected`, `disconnected`), queued on the
//! routing plane by one task per node, in the order they happened, so a connection's events
//! stay in order. The connection never waits: events go into a bounded buffer, and if the
//! queue is unreachable for so long that the buffer fills, the newest events are dropped
//! (counted and logged) rather than letting memory grow.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use signalbox_bus::EventQueue;
use signalbox_core::{AppId, NodeId, WebhookEvent, clock, ids};
use signalbox_proto::wire::{self, Body, ConnectionEvent, ConnectionEventKind};
use tokio::sync::mpsc;

use crate::conn::Conn;

/// Events buffered while the queue is slow or unreachable.
const BUFFER: usize = 100_000;

#[derive(Debug)]
pub(crate) struct ConnectionEvents {
    node: NodeId,
    sender: mpsc::Sender<(AppId, String, Bytes)>,
    /// Events handed over and not yet stored (for a shutdown to wait on).
    pending: Arc<AtomicUsize>,
}

impl ConnectionEvents {
    /// The emitter, and the task that queues what it emits.
    pub(crate) fn new(node: NodeId, queue: Arc<dyn EventQueue>) -> (Self, impl Future<Output = ()> + Send) {
        let (sender, receiver) = mpsc::channel(BUFFER);
        let pending = Arc::new(AtomicUsize::new(0));
        let task = run(queue, receiver, Arc::clone(&pending));
        (Self { node, sender, pending }, task)
    }

    /// The connection opened (sent when the app wants connects, or disconnects: the dispatcher
    /// remembers open connections to report them if this node is lost).
    pub(crate) fn connected(&self, conn: &Conn) {
        let wanted = conn.webhook_events;
        if wanted.contains(WebhookEvent::Connected) || wanted.contains(WebhookEvent::Disconnected) {
            conn.announced.store(true, Ordering::SeqCst);
            self.emit(conn, ConnectionEventKind::Connected, 0, String::new());
        }
    }

    /// The connection closed (if its opening was announced: one that never fully opened, such as
    /// one refused at attach, is nobody's business).
    pub(crate) fn disconnected(&self, conn: &Conn, code: u16, reason: &str) {
        if conn.announced.load(Ordering::SeqCst) {
            self.emit(conn, ConnectionEventKind::Disconnected, code, reason.to_owned());
        }
    }

    /// The connection moved here from another edge (a resume): if its opening was announced,
    /// the disconnect owed when an edge is lost is now this one's.
    pub(crate) fn moved(&self, conn: &Conn) {
        if conn.announced.load(Ordering::SeqCst) {
            self.emit(conn, ConnectionEventKind::Moved, 0, String::new());
        }
    }

    fn emit(&self, conn: &Conn, kind: ConnectionEventKind, code: u16, reason: String) {
        let event = ConnectionEvent {
            id: ids::event_id(),
            app: conn.scope.app.to_string(),
            hub: conn.scope.hub.to_string(),
            kind: kind as i32,
            connection_id: conn.id.to_string(),
            user: conn.user.as_ref().map(ToString::to_string),
            groups: conn.group_names().iter().map(ToString::to_string).collect(),
            close_code: u32::from(code),
            reason,
            at_millis: u64::try_from(clock::unix_millis()).unwrap_or_default(),
            node: self.node.to_string(),
        };
        let id = event.id.clone();
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.sender.try_send((conn.scope.app.clone(), id, wire::encode(Body::ConnectionEvent(event)))).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            metrics::counter!("signalbox_connection_events_dropped_total").increment(1);
            tracing::warn!(connection = %conn.id, "the connection event buffer is full; dropping an event");
        }
    }

    /// Waits until every event handed over so far is stored, or `deadline` passes.
    pub(crate) async fn flush(&self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        while self.pending.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.pending.load(Ordering::SeqCst);
        if left > 0 {
            tracing::warn!(left, "stopping with connection events not yet queued");
        }
    }
}

async fn run(
    queue: Arc<dyn EventQueue>,
    mut receiver: mpsc::Receiver<(AppId, String, Bytes)>,
    pending: Arc<AtomicUsize>,
) {
    while let Some((app, id, payload)) = receiver.recv().await {
        let mut wait = Duration::from_millis(50);
        // In order: a later event never overtakes one still being retried.
        while let Err(err) = queue.append(&app, &id, payload.clone()).await {
            tracing::warn!(error = %err, "cannot queue a connection event; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        metrics::counter!("signalbox_connection_events_total").increment(1);
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}

//! The in-process bus of the embedded mode: subscribing records interest in a table, and
//! publishing looks the subject up and loops straight back into the subscribers' inboxes.
//!
//! Where NATS drops messages for a subscriber that falls behind, this bus makes the
//! publisher wait for room in the inbox instead: in one process, backpressure is cheaper
//! than loss and keeps the same at-most-once contract.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use signalbox_proto::Subject;
use tokio::sync::{mpsc, oneshot};

use crate::{
    BoxFuture, Bus, BusError, Delivery, INBOX_CAPACITY, Inbox, Interest, QueueGroup, ReplyRoute, ReplyTo,
    SubscriptionId,
};

/// An in-process [`Bus`]. Cheap to clone: clones share one routing table.
#[derive(Debug, Clone, Default)]
pub struct LocalBus {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Read on every publish, written on every (un)subscribe: a read-mostly table, and no
    /// lock is ever held across an await.
    table: RwLock<Table>,
    next_id: AtomicU64,
    /// Round-robin cursor for queue groups.
    next_member: AtomicUsize,
}

#[derive(Debug, Default)]
struct Table {
    exact: HashMap<Subject, Vec<Route>>,
    patterns: Vec<(Subject, Route)>,
    /// Which subject each subscription is on, so unsubscribing is one lookup.
    subjects: HashMap<SubscriptionId, Subject>,
}

#[derive(Debug, Clone)]
struct Route {
    id: SubscriptionId,
    queue: Option<QueueGroup>,
    sink: mpsc::Sender<Delivery>,
}

impl LocalBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// The routes a message on `subject` goes to: every plain subscriber, plus one member
    /// of each queue group.
    fn routes_for(&self, subject: &Subject) -> Vec<Route> {
        let table = self.shared.table.read();
        let exact = table.exact.get(subject).into_iter().flatten();
        let patterns = table.patterns.iter().filter(|(p, _)| subject.matches(p)).map(|(_, r)| r);
        let mut plain = Vec::new();
        let mut queues: Vec<(&QueueGroup, Vec<&Route>)> = Vec::new();
        for route in exact.chain(patterns) {
            match &route.queue {
                None => plain.push(route.clone()),
                Some(q) => match queues.iter_mut().find(|(name, _)| *name == q) {
                    Some((_, members)) => members.push(route),
                    None => queues.push((q, vec![route])),
                },
            }
        }
        for (_, members) in queues {
            let pick = self.shared.next_member.fetch_add(1, Ordering::Relaxed) % members.len();
            plain.push(members[pick].clone());
        }
        plain
    }
}

impl LocalBus {
    /// Delivers a stored message with its position (the [`LocalJournal`](crate::LocalJournal)'s
    /// "republish"). Same routing as [`Bus::publish`].
    pub(crate) async fn publish_positioned(&self, subject: Subject, payload: Bytes, position: crate::Position) {
        for route in self.routes_for(&subject) {
            let delivery = Delivery {
                subscription: route.id,
                subject: subject.clone(),
                payload: payload.clone(),
                reply: None,
                position: Some(position),
            };
            let _ = route.sink.send(delivery).await;
        }
    }
}

impl Bus for LocalBus {
    fn publish(&self, subject: Subject, payload: Bytes) -> BoxFuture<'_, Result<(), BusError>> {
        let routes = self.routes_for(&subject);
        Box::pin(async move {
            for route in routes {
                let delivery = Delivery {
                    subscription: route.id,
                    subject: subject.clone(),
                    payload: payload.clone(),
                    reply: None,
                    position: None,
                };
                // A closed inbox is a subscriber that went away: nothing to deliver to.
                let _ = route.sink.send(delivery).await;
            }
            Ok(())
        })
    }

    fn request(&self, subject: Subject, payload: Bytes, timeout: Duration) -> BoxFuture<'_, Result<Bytes, BusError>> {
        let route = self.routes_for(&subject).into_iter().next();
        Box::pin(async move {
            let route = route.ok_or(BusError::NoResponders)?;
            let (tx, rx) = oneshot::channel();
            let delivery = Delivery {
                subscription: route.id,
                subject,
                payload,
                reply: Some(ReplyTo(ReplyRoute::Local(tx))),
                position: None,
            };
            route.sink.send(delivery).await.map_err(|_| BusError::NoResponders)?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                // The server dropped the request without answering: as NATS would, time out.
                Ok(Err(_)) | Err(_) => Err(BusError::Timeout),
            }
        })
    }

    fn open_inbox(&self) -> (Arc<dyn Interest>, Inbox) {
        let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
        (Arc::new(LocalInterest { bus: self.clone(), sink: tx }), Inbox { rx })
    }

    fn is_connected(&self) -> bool {
        true
    }

    /// An in-process bus never disconnects.
    fn epoch(&self) -> u64 {
        0
    }
}

#[derive(Debug)]
struct LocalInterest {
    bus: LocalBus,
    sink: mpsc::Sender<Delivery>,
}

impl Interest for LocalInterest {
    fn subscribe(
        &self,
        subject: Subject,
        queue: Option<QueueGroup>,
    ) -> BoxFuture<'_, Result<SubscriptionId, BusError>> {
        let id = SubscriptionId(self.bus.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let route = Route { id, queue, sink: self.sink.clone() };
        let mut table = self.bus.shared.table.write();
        table.subjects.insert(id, subject.clone());
        if subject.is_pattern() {
            table.patterns.push((subject, route));
        } else {
            table.exact.entry(subject).or_default().push(route);
        }
        Box::pin(async move { Ok(id) })
    }

    fn unsubscribe(&self, id: SubscriptionId) {
        let mut table = self.bus.shared.table.write();
        let Some(subject) = table.subjects.remove(&id) else {
            return;
        };
        if subject.is_pattern() {
            table.patterns.retain(|(_, r)| r.id != id);
        } else if let Some(routes) = table.exact.get_mut(&subject) {
            routes.retain(|r| r.id != id);
            if routes.is_empty() {
                table.exact.remove(&subject);
            }
        }
    }
}

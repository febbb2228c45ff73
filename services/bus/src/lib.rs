//! The routing plane: one small [`Bus`] trait, two implementations.
//!
//! # Layout
//! - this file: the trait, its contract, and the types it speaks in;
//! - [`local`]: [`LocalBus`], the in-process bus of the single-node embedded mode;
//! - [`nats`]: [`NatsBus`], core NATS subjects for a cluster;
//! - [`journal`]: the [`Journal`] trait — group history, positions assigned where order is
//!   decided — on JetStream and in process;
//! - [`idempotency`]: the [`Idempotency`] trait — one answer per `Idempotency-Key`, across api
//!   nodes — on a JetStream key-value bucket and in process;
//! - [`events`]: the [`EventQueue`] trait — connection events queued for webhooks, consumed
//!   in order by one dispatcher — on a JetStream work queue and in process;
//! - [`conformance`] (feature `conformance`): the suites every implementation passes;
//! - [`trace`]: the W3C trace context an envelope carries from its publisher to the edges.
//!
//! # Contract
//! - **publish** hands a message to the routing plane. `Ok` means the plane took it; each
//!   current subscriber of the subject receives it at most once. Messages from one publisher
//!   on one subject arrive in the order they were published. `Err(Unavailable)` means the
//!   message certainly went nowhere and the caller must say so (REST answers 503).
//!   `Err(Timeout)` means the plane did not confirm it in time (NATS went away mid-publish):
//!   it may still go out when the connection returns, so the caller answers 503 as well and a
//!   retry needs an idempotency key to be safe.
//! - **interest** is explicit: a node receives a subject's messages only between
//!   [`Interest::subscribe`] and [`Interest::unsubscribe`]. Subscribing returns once the
//!   subscription is in place, so a message published after `subscribe` returned reaches it.
//!   With a queue group, each message goes to exactly one member of the group.
//! - **request** sends to one server of a subject and waits for its reply:
//!   `Err(NoResponders)` when no one serves the subject, `Err(Timeout)` when no reply came.
//! - Every message of every subscription of an inbox arrives on that one [`Inbox`], in
//!   per-subject order.
//! - **epoch** changes on every reconnect: messages published while a node was disconnected
//!   are lost to it, so whatever it cached from announcements must be refreshed.
//!
//! Depends on `signalbox-proto` for [`Subject`]; never on the edge, the api or the store.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use signalbox_proto::Subject;
use tokio::sync::{mpsc, oneshot};

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod events;
pub mod idempotency;
pub mod journal;
pub mod local;
pub mod nats;
pub mod trace;

pub use events::{EventQueue, EventStream, Handover, LocalEventQueue, NatsEventQueue, QueuedEvent};
pub use idempotency::{Claim, Idempotency, LocalIdempotency, NatsIdempotency};
pub use journal::{Appended, Journal, LocalJournal, NatsJournal, Retention, Stored};
pub use local::LocalBus;
pub use nats::{NatsBus, NatsConfig};

/// A boxed future, so the trait can be used as `Arc<dyn Bus>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The routing plane. See the crate docs for the contract.
pub trait Bus: Send + Sync + fmt::Debug + 'static {
    /// Publishes `payload` to the current subscribers of `subject`.
    fn publish(&self, subject: Subject, payload: Bytes) -> BoxFuture<'_, Result<(), BusError>>;

    /// Sends a request to one server of `subject` and waits up to `timeout` for the reply.
    fn request(&self, subject: Subject, payload: Bytes, timeout: Duration) -> BoxFuture<'_, Result<Bytes, BusError>>;

    /// Opens an inbox: subjects subscribed through the returned [`Interest`] are delivered
    /// to the returned [`Inbox`].
    fn open_inbox(&self) -> (Arc<dyn Interest>, Inbox);

    /// Whether the bus can route right now (readiness; publish fails fast when it cannot).
    fn is_connected(&self) -> bool;

    /// A number that changes every time the bus reconnects. Anything learnt from
    /// announcements before a change may have missed some: caches compare epochs.
    fn epoch(&self) -> u64;
}

/// Adds and removes the subjects an [`Inbox`] receives.
pub trait Interest: Send + Sync + fmt::Debug {
    /// Starts receiving `subject` (a subject or a `*`/`>` pattern). With `queue`, the
    /// subscription joins that queue group. Returns once the subscription is in place.
    fn subscribe(&self, subject: Subject, queue: Option<QueueGroup>)
    -> BoxFuture<'_, Result<SubscriptionId, BusError>>;

    /// Stops receiving a subscription. Messages already in the inbox may still arrive.
    fn unsubscribe(&self, id: SubscriptionId);
}

/// Identifies one subscription of an inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

/// A queue group name: each message goes to one member of the group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueGroup(pub Arc<str>);

impl QueueGroup {
    pub fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }
}

/// One received message.
#[derive(Debug)]
pub struct Delivery {
    pub subscription: SubscriptionId,
    pub subject: Subject,
    pub payload: Bytes,
    /// Present when the sender is waiting for a reply ([`Bus::request`]).
    pub reply: Option<ReplyTo>,
    /// Present when the message comes from a [`Journal`]: where it was stored.
    pub position: Option<Position>,
}

/// Where a stored message sits in its group's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// The message's position: increasing, assigned when it was stored.
    pub seq: u64,
    /// The position of the group's previous message (0 for its first): the live stream is
    /// gapless exactly when each message's `previous` is the last one seen.
    pub previous: u64,
}

/// Where to send the reply to a request.
#[derive(Debug)]
pub struct ReplyTo(ReplyRoute);

#[derive(Debug)]
enum ReplyRoute {
    Local(oneshot::Sender<Bytes>),
    Nats { client: async_nats::Client, subject: async_nats::Subject },
}

impl ReplyTo {
    /// Sends the reply. A requester that gave up already is not an error worth reporting.
    pub async fn send(self, payload: Bytes) -> Result<(), BusError> {
        match self.0 {
            ReplyRoute::Local(tx) => {
                let _ = tx.send(payload);
                Ok(())
            }
            ReplyRoute::Nats { client, subject } => {
                client.publish(subject, payload).await.map_err(|e| BusError::Transport(Box::new(e)))
            }
        }
    }
}

/// The receiving end of an inbox.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Delivery>,
}

impl Inbox {
    /// The next delivery; `None` once the bus is closed.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// Up to `limit` deliveries at once (at least one unless the bus is closed): lets a
    /// dispatcher amortise its wake-ups under load.
    pub async fn recv_many(&mut self, buffer: &mut Vec<Delivery>, limit: usize) -> usize {
        self.rx.recv_many(buffer, limit).await
    }
}

/// Deliveries queued per inbox before publishers wait (backpressure, not loss).
pub(crate) const INBOX_CAPACITY: usize = 8192;

/// What a bus operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The routing plane is not reachable: nothing was sent.
    #[error("the routing plane is unavailable")]
    Unavailable,
    /// Nobody serves the requested subject.
    #[error("no responders for the request")]
    NoResponders,
    /// No reply within the timeout.
    #[error("the request timed out")]
    Timeout,
    /// The message is larger than the routing plane accepts.
    #[error("the message exceeds the routing plane's maximum payload")]
    TooLarge,
    /// The subject or queue group was refused by the routing plane.
    #[error("invalid subject or queue group")]
    InvalidSubject,
    /// A transport-level failure of the routing plane.
    #[error("routing plane transport error: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BusError {
    /// A short, fixed name for the error, for metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::NoResponders => "no_responders",
            Self::Timeout => "timeout",
            Self::TooLarge => "too_large",
            Self::InvalidSubject => "invalid_subject",
            Self::Transport(_) => "transport",
        }
    }
}

impl BusError {
    /// True when retrying later can succeed (REST maps these to 503 with `Retry-After`).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout | Self::Transport(_))
    }
}

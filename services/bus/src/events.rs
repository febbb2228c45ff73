//! Connection events on their way to webhooks: appended by edges, consumed by one dispatcher.
//!
//! # Contract
//! - **append** stores an event; `Ok` means it is stored and will be consumed (at least once),
//!   even if no consumer runs right now. Events appended by one caller are consumed in the
//!   order they were appended. Appending the same `id` twice within a few minutes stores it
//!   once.
//! - **consume** yields events oldest first. Across every node that consumes, only one
//!   receives events at a time (so order survives); the others stand by and take over when it
//!   stops. An event not acknowledged is delivered again (after a while, or to the next
//!   consumer): consumers must tolerate repeats, which carry the same id.
//!
//! [`NatsEventQueue`] is a JetStream work-queue stream with a pinned-client consumer;
//! [`LocalEventQueue`] is an in-process channel for `signalbox serve`, where the dispatcher
//! writes each event to SQLite as it arrives.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use parking_lot::Mutex;
use signalbox_core::AppId;
use signalbox_proto::Subjects;
use tokio::sync::mpsc;

use crate::{BoxFuture, BusError, NatsBus};

/// An event taken from the queue; acknowledge it once it is handled.
pub struct QueuedEvent {
    pub payload: Bytes,
    acker: Acker,
}

enum Acker {
    Nats(Box<jetstream::Message>),
    Local,
}

impl fmt::Debug for QueuedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedEvent").field("bytes", &self.payload.len()).finish_non_exhaustive()
    }
}

impl QueuedEvent {
    /// Marks the event handled: it will not be delivered again.
    pub async fn ack(self) -> Result<(), BusError> {
        match self.acker {
            Acker::Nats(message) => message.ack().await.map_err(BusError::Transport),
            Acker::Local => Ok(()),
        }
    }
}

/// The events, in order, for as long as the consumer keeps reading.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<QueuedEvent, BusError>> + Send>>;

pub trait EventQueue: Send + Sync + fmt::Debug + 'static {
    /// Stores an event of `app` with a unique `id`.
    fn append(&self, app: &AppId, id: &str, payload: Bytes) -> BoxFuture<'_, Result<(), BusError>>;

    /// Starts consuming (see the contract).
    fn consume(&self) -> BoxFuture<'_, Result<EventStream, BusError>>;
}

/// Ids remembered by the in-process queue to drop repeats.
const LOCAL_RECENT_IDS: usize = 4096;

/// The in-process queue: appends go straight to the one consumer.
#[derive(Debug, Clone)]
pub struct LocalEventQueue {
    sender: mpsc::UnboundedSender<Bytes>,
    receiver: Arc<Mutex<Option<mpsc::UnboundedReceiver<Bytes>>>>,
    /// The last ids appended, oldest first (a mutex held for one check-and-insert).
    recent: Arc<Mutex<RecentIds>>,
}

#[derive(Debug, Default)]
struct RecentIds {
    order: std::collections::VecDeque<String>,
    set: std::collections::HashSet<String>,
}

impl RecentIds {
    /// False if `id` was seen recently.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == LOCAL_RECENT_IDS
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.order.push_back(id.to_owned());
        self.set.insert(id.to_owned());
        true
    }
}

impl Default for LocalEventQueue {
    fn default() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self { sender, receiver: Arc::new(Mutex::new(Some(receiver))), recent: Arc::default() }
    }
}

impl LocalEventQueue {
    pub fn new() -> Self {
        Self::default()
    }
}

impl EventQueue for LocalEventQueue {
    fn append(&self, _app: &AppId, id: &str, payload: Bytes) -> BoxFuture<'_, Result<(), BusError>> {
        let sent = if self.recent.lock().insert(id) {
            self.sender.send(payload).map_err(|_| BusError::Unavailable)
        } else {
            Ok(())
        };
        Box::pin(async move { sent })
    }

    fn consume(&self) -> BoxFuture<'_, Result<EventStream, BusError>> {
        let receiver = self.receiver.lock().take();
        Box::pin(async move {
            // One process, one consumer: a second one would split the events.
            let mut receiver = receiver.ok_or(BusError::InvalidSubject)?;
            let stream = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
                .map(|payload| Ok(QueuedEvent { payload, acker: Acker::Local }));
            Ok(Box::pin(stream) as EventStream)
        })
    }
}

/// How long events are kept when no dispatcher consumes them.
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
const CONSUMER: &str = "dispatcher";
const PRIORITY_GROUP: &str = "dispatch";

/// How a consumer hands over when it stops.
#[derive(Debug, Clone, Copy)]
pub struct Handover {
    /// How long an event may stay unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    /// How long a consumer that stopped pulling keeps its pin before a standby takes over.
    pub pin_timeout: Duration,
}

impl Default for Handover {
    fn default() -> Self {
        Self { ack_wait: Duration::from_secs(60), pin_timeout: Duration::from_secs(10) }
    }
}

/// The queue on JetStream: one work-queue stream over `{root}.w.*`.
#[derive(Debug, Clone)]
pub struct NatsEventQueue {
    js: jetstream::Context,
    subjects: Subjects,
    handover: Handover,
    stream_name: String,
    /// Replicas of the stream, when this node creates it.
    replicas: usize,
    /// The stream once created (or found); created on first use.
    stream: Arc<tokio::sync::OnceCell<stream::Stream>>,
}

fn transport(err: impl std::error::Error + Send + Sync + 'static) -> BusError {
    BusError::Transport(Box::new(err))
}

impl NatsEventQueue {
    pub fn new(bus: &NatsBus, subjects: Subjects) -> Self {
        Self::with_handover(bus, subjects, Handover::default())
    }

    pub fn with_handover(bus: &NatsBus, subjects: Subjects, handover: Handover) -> Self {
        Self {
            js: jetstream::new(bus.client().clone()),
            stream_name: format!("{}_EVENTS", subjects.resource_prefix()),
            replicas: bus.replicas(),
            subjects,
            handover,
            stream: Arc::default(),
        }
    }

    async fn stream(&self) -> Result<&stream::Stream, BusError> {
        self.stream
            .get_or_try_init(|| async {
                let config = stream::Config {
                    name: self.stream_name.clone(),
                    subjects: vec![self.subjects.events_pattern().to_string()],
                    retention: stream::RetentionPolicy::WorkQueue,
                    max_age: MAX_AGE,
                    duplicate_window: Duration::from_secs(120),
                    num_replicas: self.replicas,
                    ..stream::Config::default()
                };
                self.js.get_or_create_stream(config).await.map_err(transport)
            })
            .await
    }
}

impl EventQueue for NatsEventQueue {
    fn append(&self, app: &AppId, id: &str, payload: Bytes) -> BoxFuture<'_, Result<(), BusError>> {
        let subject = self.subjects.events(app);
        let id = id.to_owned();
        Box::pin(async move {
            self.stream().await?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let ack = self
                .js
                .publish_with_headers(subject.to_string(), headers, payload)
                .await
                .map_err(|_| BusError::Unavailable)?;
            ack.await.map(|_| ()).map_err(|_| BusError::Unavailable)
        })
    }

    fn consume(&self) -> BoxFuture<'_, Result<EventStream, BusError>> {
        Box::pin(async move {
            let stream = self.stream().await?;
            let config = consumer::pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: self.handover.ack_wait,
                max_ack_pending: 10_000,
                priority_policy: consumer::PriorityPolicy::PinnedClient,
                priority_groups: vec![PRIORITY_GROUP.to_owned()],
                priority_timeout: self.handover.pin_timeout,
                ..consumer::pull::Config::default()
            };
            let consumer = stream.get_or_create_consumer(CONSUMER, config).await.map_err(transport)?;
            // Pulls end well before the pin times out, so a live consumer never loses its pin.
            let messages = consumer
                .stream()
                .expires(self.handover.pin_timeout / 3)
                .group(PRIORITY_GROUP)
                .messages()
                .await
                .map_err(transport)?;
            let events = messages.map(|message| match message {
                Ok(message) => {
                    Ok(QueuedEvent { payload: message.payload.clone(), acker: Acker::Nats(Box::new(message)) })
                }
                Err(err) => Err(transport(err)),
            });
            Ok(Box::pin(events) as EventStream)
        })
    }
}

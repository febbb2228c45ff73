//! The cluster bus: core NATS subjects over async-nats.
//!
//! - `publish` fails fast with `Unavailable` while disconnected, and returns once the
//!   message is written to the server's socket (a NATS flush), so a 2xx is never given for a
//!   message that is still sitting in a client buffer.
//! - `subscribe` returns after a round trip to the server (a request to a subject nobody
//!   serves comes back as "no responders" only after the server processed the SUB before
//!   it), so a message published after a join reaches the joiner.
//! - async-nats reconnects by itself and re-sends every subscription after a reconnect; the
//!   inbox keeps receiving without the caller doing anything.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{ConnectOptions, Event};
use bytes::Bytes;
use futures_util::StreamExt as _;
use parking_lot::Mutex;
use signalbox_proto::Subject;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::{
    BoxFuture, Bus, BusError, Delivery, INBOX_CAPACITY, Inbox, Interest, QueueGroup, ReplyRoute, ReplyTo,
    SubscriptionId,
};

/// How to reach NATS.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// One or more comma-separated server URLs.
    pub url: String,
    /// The client name the server shows (`signalbox-edge-{node}`, …).
    pub name: String,
    /// How often the client pings the server to notice a dead connection.
    pub ping_interval: Duration,
    /// Replicas of the JetStream streams and buckets this node creates (history, the
    /// webhook event queue, idempotency keys): 1 on a single server, 3 on a 3-node cluster
    /// so that losing a node loses nothing.
    pub replicas: usize,
}

impl NatsConfig {
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        Self { url: url.into(), name: name.into(), ping_interval: Duration::from_secs(10), replicas: 1 }
    }
}

/// A [`Bus`] over NATS. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    next_id: Arc<AtomicU64>,
    /// Follows the connection's events, so callers can wait for the first connect.
    connected: watch::Receiver<bool>,
    /// Counts connects (the first one included): the bus's epoch.
    connects: Arc<AtomicU64>,
    /// The round-trip probe; shared by the clones so it stops with the last of them.
    _rtt_probe: Arc<RttProbe>,
    /// Replicas of the JetStream resources created through this bus.
    replicas: usize,
}

/// How often the round trip to NATS is measured for `signalbox_nats_rtt_seconds`.
const RTT_INTERVAL: Duration = Duration::from_secs(10);
/// How long a publish waits for NATS to take it.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Measures the round trip to the server every [`RTT_INTERVAL`] while connected (a request the server
/// answers with "no responders": one full trip through it, as a publish with history or a
/// subscribe pays), and stops when dropped.
#[derive(Debug)]
struct RttProbe(AbortHandle);

impl RttProbe {
    fn start(client: async_nats::Client) -> Self {
        let task = tokio::spawn(async move {
            loop {
                // While disconnected, look again soon: the first figure should appear as soon
                // as the node is connected, not an interval later.
                if client.connection_state() != State::Connected {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                let started = std::time::Instant::now();
                if round_trip(&client).await.is_ok() {
                    metrics::gauge!("signalbox_nats_rtt_seconds").set(started.elapsed().as_secs_f64());
                }
                tokio::time::sleep(RTT_INTERVAL).await;
            }
        });
        Self(task.abort_handle())
    }
}

impl Drop for RttProbe {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl NatsBus {
    /// Connects. If NATS is not reachable yet, returns at once and keeps trying in the
    /// background: the node starts not ready, and becomes ready when NATS is there.
    pub async fn connect(config: &NatsConfig) -> Result<Self, BusError> {
        let name = config.name.clone();
        let (connected_tx, connected) = watch::channel(false);
        let connects = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&connects);
        let client = ConnectOptions::new()
            .name(&config.name)
            .ping_interval(config.ping_interval)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(move |event| {
                let name = name.clone();
                match event {
                    Event::Connected => {
                        if counter.fetch_add(1, Ordering::SeqCst) > 0 {
                            metrics::counter!("signalbox_bus_reconnects_total").increment(1);
                        }
                        connected_tx.send_replace(true);
                    }
                    Event::Disconnected => {
                        connected_tx.send_replace(false);
                    }
                    _ => {}
                }
                async move { log_event(&name, &event) }
            })
            .connect(config.url.as_str())
            .await
            .map_err(|e| BusError::Transport(Box::new(e)))?;
        let _rtt_probe = Arc::new(RttProbe::start(client.clone()));
        let replicas = config.replicas.max(1);
        Ok(Self { client, next_id: Arc::new(AtomicU64::new(0)), connected, connects, _rtt_probe, replicas })
    }

    /// Waits until the client is connected, or `timeout` passes.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), BusError> {
        let mut connected = self.connected.clone();
        tokio::time::timeout(timeout, connected.wait_for(|c| *c))
            .await
            .map_err(|_| BusError::Unavailable)?
            .map(|_| ())
            .map_err(|_| BusError::Unavailable)
    }

    /// The underlying client, for JetStream (history, durable queues).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Replicas of the JetStream streams and buckets to create ([`NatsConfig::replicas`]).
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    fn ensure_connected(&self) -> Result<(), BusError> {
        if self.is_connected() { Ok(()) } else { Err(BusError::Unavailable) }
    }

    /// Waits until the server has processed every command sent before this call.
    async fn round_trip(&self) -> Result<(), BusError> {
        round_trip(&self.client).await
    }
}

/// A request to a subject nobody serves: the server answers "no responders" once it has
/// processed every command this client sent before.
async fn round_trip(client: &async_nats::Client) -> Result<(), BusError> {
    let barrier = format!("_sb_barrier.{}", client.new_inbox().replace('.', "_"));
    match client.request(barrier, Bytes::new()).await {
        Ok(_) => Ok(()),
        Err(e) => match e.kind() {
            async_nats::client::RequestErrorKind::NoResponders => Ok(()),
            async_nats::client::RequestErrorKind::TimedOut => Err(BusError::Timeout),
            _ => Err(BusError::Transport(Box::new(e))),
        },
    }
}

/// Counts a failed publish by what went wrong (a bounded set of labels).
fn publish_failed(err: BusError) -> BusError {
    metrics::counter!("signalbox_bus_publish_errors_total", "kind" => err.label()).increment(1);
    err
}

fn log_event(name: &str, event: &Event) {
    match event {
        Event::Connected => tracing::info!(client = name, "connected to NATS"),
        Event::Disconnected => {
            metrics::counter!("signalbox_bus_disconnects_total").increment(1);
            tracing::warn!(client = name, "disconnected from NATS; reconnecting");
        }
        Event::SlowConsumer(sid) => {
            metrics::counter!("signalbox_bus_slow_consumer_total").increment(1);
            tracing::warn!(client = name, sid, "NATS subscription fell behind; messages were dropped");
        }
        other => tracing::info!(client = name, event = %other, "NATS event"),
    }
}

/// The position JetStream's republish puts in a stored message's headers.
fn position_of(headers: &async_nats::HeaderMap) -> Option<crate::Position> {
    let number = |name: &str| headers.get(name).and_then(|v| v.as_str().parse::<u64>().ok());
    Some(crate::Position { seq: number("Nats-Sequence")?, previous: number("Nats-Last-Sequence")? })
}

fn to_nats_subject(subject: &Subject) -> async_nats::Subject {
    async_nats::Subject::from(subject.as_str())
}

impl Bus for NatsBus {
    fn publish(&self, subject: Subject, payload: Bytes) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move {
            self.ensure_connected().map_err(publish_failed)?;
            self.client
                .publish(to_nats_subject(&subject), payload)
                .await
                .map_err(|e| match e.kind() {
                    async_nats::client::PublishErrorKind::MaxPayloadExceeded => BusError::TooLarge,
                    async_nats::client::PublishErrorKind::InvalidSubject => BusError::InvalidSubject,
                    async_nats::client::PublishErrorKind::Send => BusError::Unavailable,
                })
                .map_err(publish_failed)?;
            // A flush waits for the connection: while NATS is away it would wait until it is
            // back. Bounded, so the caller can answer (503) instead of hanging.
            match tokio::time::timeout(FLUSH_TIMEOUT, self.client.flush()).await {
                Ok(flushed) => flushed.map_err(|_| publish_failed(BusError::Unavailable)),
                Err(_) => Err(publish_failed(BusError::Timeout)),
            }
        })
    }

    fn request(&self, subject: Subject, payload: Bytes, timeout: Duration) -> BoxFuture<'_, Result<Bytes, BusError>> {
        Box::pin(async move {
            self.ensure_connected()?;
            let request = async_nats::Request::new().payload(payload).timeout(Some(timeout));
            let reply = self.client.send_request(to_nats_subject(&subject), request).await.map_err(|e| {
                use async_nats::client::RequestErrorKind as Kind;
                match e.kind() {
                    Kind::NoResponders => BusError::NoResponders,
                    Kind::TimedOut => BusError::Timeout,
                    Kind::MaxPayloadExceeded => BusError::TooLarge,
                    Kind::InvalidSubject => BusError::InvalidSubject,
                    Kind::Other => BusError::Transport(Box::new(e)),
                }
            })?;
            Ok(reply.payload)
        })
    }

    fn open_inbox(&self) -> (Arc<dyn Interest>, Inbox) {
        let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
        let interest = NatsInterest { bus: self.clone(), sink: tx, tasks: Mutex::new(HashMap::new()) };
        (Arc::new(interest), Inbox { rx })
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    fn epoch(&self) -> u64 {
        self.connects.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct NatsInterest {
    bus: NatsBus,
    sink: mpsc::Sender<Delivery>,
    /// The forwarding task of each subscription; aborting it drops the NATS subscriber,
    /// which unsubscribes. A plain mutex: held only to insert or remove one entry.
    tasks: Mutex<HashMap<SubscriptionId, AbortHandle>>,
}

impl Drop for NatsInterest {
    fn drop(&mut self) {
        for (_, task) in self.tasks.get_mut().drain() {
            task.abort();
        }
    }
}

impl Interest for NatsInterest {
    fn subscribe(
        &self,
        subject: Subject,
        queue: Option<QueueGroup>,
    ) -> BoxFuture<'_, Result<SubscriptionId, BusError>> {
        Box::pin(async move {
            let nats_subject = to_nats_subject(&subject);
            let client = &self.bus.client;
            let subscribed = match &queue {
                None => client.subscribe(nats_subject).await,
                Some(q) => client.queue_subscribe(nats_subject, q.0.to_string()).await,
            };
            let mut subscriber = subscribed.map_err(|e| {
                metrics::counter!("signalbox_bus_subscribe_errors_total").increment(1);
                match e.kind() {
                    async_nats::client::SubscribeErrorKind::InvalidSubject
                    | async_nats::client::SubscribeErrorKind::InvalidQueueName => BusError::InvalidSubject,
                    async_nats::client::SubscribeErrorKind::Other => BusError::Unavailable,
                }
            })?;
            let id = SubscriptionId(self.bus.next_id.fetch_add(1, Ordering::Relaxed));
            let sink = self.sink.clone();
            let client = client.clone();
            let task = tokio::spawn(async move {
                while let Some(message) = subscriber.next().await {
                    let Ok(subject) = Subject::new(message.subject.as_str()) else {
                        continue;
                    };
                    let reply =
                        message.reply.map(|reply| ReplyTo(ReplyRoute::Nats { client: client.clone(), subject: reply }));
                    let position = message.headers.as_ref().and_then(position_of);
                    let delivery = Delivery { subscription: id, subject, payload: message.payload, reply, position };
                    if sink.send(delivery).await.is_err() {
                        break;
                    }
                }
            });
            self.tasks.lock().insert(id, task.abort_handle());
            // While disconnected the SUB is queued and sent on reconnect; only wait for the
            // server when there is one to wait for.
            if self.bus.is_connected() {
                self.bus.round_trip().await?;
            }
            Ok(id)
        })
    }

    fn unsubscribe(&self, id: SubscriptionId) {
        if let Some(task) = self.tasks.lock().remove(&id) {
            task.abort();
        }
    }
}

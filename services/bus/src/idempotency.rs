//! One answer per `Idempotency-Key`, across api nodes.
//!
//! # Contract
//! - **claim** atomically records that a key is being handled. The first caller gets
//!   [`Claim::First`] and must then [`complete`](Idempotency::complete) it with the response,
//!   or [`release`](Idempotency::release) it on failure so a retry can run. Later callers get the
//!   stored response ([`Claim::Done`]) or, while the first is still working, [`Claim::InProgress`].
//! - A key is remembered for the store's window from its claim (at least five minutes).
//! - A claim not completed within its lease (the node handling it died) may be taken over:
//!   the next claim after the lease gets [`Claim::First`]. The lease is far longer than any
//!   request takes; without it, a crash would lock the key for the whole window.
//!
//! [`NatsIdempotency`] keeps keys in a JetStream key-value bucket (every api node sees every
//! claim); [`LocalIdempotency`] keeps them in memory.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use parking_lot::Mutex;

use crate::{BoxFuture, BusError, NatsBus};

/// How long a key is remembered.
pub const WINDOW: Duration = Duration::from_secs(10 * 60);
/// How long a claim may stay uncompleted before another request may take it over.
pub const LEASE: Duration = Duration::from_secs(30);

/// The state of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: handle the request.
    First,
    /// The key was handled: its response.
    Done(Bytes),
    /// Another request with the key is being handled right now.
    InProgress,
}

pub trait Idempotency: Send + Sync + fmt::Debug + 'static {
    /// Claims `key` (a token of `[A-Za-z0-9_=.-]`).
    fn claim(&self, key: &str) -> BoxFuture<'_, Result<Claim, BusError>>;
    /// Stores the response of a claimed key.
    fn complete(&self, key: &str, response: Bytes) -> BoxFuture<'_, Result<(), BusError>>;
    /// Forgets a claimed key whose request failed.
    fn release(&self, key: &str) -> BoxFuture<'_, Result<(), BusError>>;
}

/// A stored value is a response, or — starting with this byte, which no JSON response starts
/// with — a pending claim followed by its time (milliseconds since the Unix epoch, big-endian).
const PENDING: u8 = 0;

fn pending_since(unix_millis: u64) -> Bytes {
    let mut value = Vec::with_capacity(9);
    value.push(PENDING);
    value.extend_from_slice(&unix_millis.to_be_bytes());
    Bytes::from(value)
}

/// When a pending claim was made; `None` if the value is a response.
fn claimed_at(value: &[u8]) -> Option<u64> {
    match value {
        [PENDING, millis @ ..] => Some(millis.try_into().map(u64::from_be_bytes).unwrap_or(0)),
        _ => None,
    }
}

fn now_millis() -> u64 {
    signalbox_core::clock::unix_micros() / 1000
}

#[derive(Debug, Clone)]
pub struct LocalIdempotency {
    /// A mutex held for one map operation.
    keys: Arc<Mutex<HashMap<String, (Bytes, Instant)>>>,
    lease: Duration,
}

impl Default for LocalIdempotency {
    fn default() -> Self {
        Self::with_lease(LEASE)
    }
}

impl LocalIdempotency {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_lease(lease: Duration) -> Self {
        Self { keys: Arc::default(), lease }
    }
}

impl Idempotency for LocalIdempotency {
    fn claim(&self, key: &str) -> BoxFuture<'_, Result<Claim, BusError>> {
        let mut keys = self.keys.lock();
        let now = Instant::now();
        keys.retain(|_, (_, at)| now.duration_since(*at) < WINDOW);
        let claim = match keys.get_mut(key) {
            Some((value, at)) => match claimed_at(value) {
                Some(_) if now.duration_since(*at) < self.lease => Claim::InProgress,
                Some(_) => {
                    (*value, *at) = (pending_since(now_millis()), now);
                    Claim::First
                }
                None => Claim::Done(value.clone()),
            },
            None => {
                keys.insert(key.to_owned(), (pending_since(now_millis()), now));
                Claim::First
            }
        };
        Box::pin(async move { Ok(claim) })
    }

    fn complete(&self, key: &str, response: Bytes) -> BoxFuture<'_, Result<(), BusError>> {
        if let Some((value, _)) = self.keys.lock().get_mut(key) {
            *value = response;
        }
        Box::pin(async { Ok(()) })
    }

    fn release(&self, key: &str) -> BoxFuture<'_, Result<(), BusError>> {
        self.keys.lock().remove(key);
        Box::pin(async { Ok(()) })
    }
}

#[derive(Debug, Clone)]
pub struct NatsIdempotency {
    js: jetstream::Context,
    bucket: String,
    /// The bucket once opened; opened (and created) on first use.
    store: Arc<tokio::sync::OnceCell<kv::Store>>,
    lease: Duration,
    /// Replicas of the bucket, when this node creates it.
    replicas: usize,
}

impl NatsIdempotency {
    pub fn new(bus: &NatsBus, resource_prefix: &str) -> Self {
        Self::with_lease(bus, resource_prefix, LEASE)
    }

    pub fn with_lease(bus: &NatsBus, resource_prefix: &str, lease: Duration) -> Self {
        Self {
            js: jetstream::new(bus.client().clone()),
            bucket: format!("{resource_prefix}_IDEMPOTENCY"),
            replicas: bus.replicas(),
            store: Arc::default(),
            lease,
        }
    }

    async fn store(&self) -> Result<&kv::Store, BusError> {
        self.store
            .get_or_try_init(|| async {
                let config = kv::Config {
                    bucket: self.bucket.clone(),
                    history: 1,
                    max_age: WINDOW,
                    num_replicas: self.replicas,
                    ..kv::Config::default()
                };
                self.js.create_key_value(config).await.map_err(|e| BusError::Transport(Box::new(e)))
            })
            .await
    }
}

impl Idempotency for NatsIdempotency {
    fn claim(&self, key: &str) -> BoxFuture<'_, Result<Claim, BusError>> {
        let key = key.to_owned();
        let transport = |e: kv::EntryError| BusError::Transport(Box::new(e));
        Box::pin(async move {
            let store = self.store().await?;
            let now = now_millis();
            match store.create(&key, pending_since(now)).await {
                Ok(_) => return Ok(Claim::First),
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(err) => return Err(BusError::Transport(Box::new(err))),
            }
            let entry = store.entry(&key).await.map_err(transport)?;
            let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                // Released between our create and our read: the releaser's retry may be
                // claiming it right now; ours comes back as a 409 and retries too.
                return Ok(Claim::InProgress);
            };
            match claimed_at(&entry.value) {
                None => Ok(Claim::Done(entry.value)),
                Some(at) if now.saturating_sub(at) < self.lease.as_millis() as u64 => Ok(Claim::InProgress),
                // Abandoned: take it over, unless another request just did.
                Some(_) => match store.update(&key, pending_since(now), entry.revision).await {
                    Ok(_) => Ok(Claim::First),
                    Err(_) => Ok(Claim::InProgress),
                },
            }
        })
    }

    fn complete(&self, key: &str, response: Bytes) -> BoxFuture<'_, Result<(), BusError>> {
        let key = key.to_owned();
        Box::pin(async move {
            let store = self.store().await?;
            store.put(&key, response).await.map(|_| ()).map_err(|e| BusError::Transport(Box::new(e)))
        })
    }

    fn release(&self, key: &str) -> BoxFuture<'_, Result<(), BusError>> {
        let key = key.to_owned();
        Box::pin(async move {
            let store = self.store().await?;
            store.purge(&key).await.map_err(|e| BusError::Transport(Box::new(e)))
        })
    }
}

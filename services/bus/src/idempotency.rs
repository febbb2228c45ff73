//! One answer per `Idempotency-Key`, across api nodes.
//!
//! # Contract
//! - **claim** atomically records that a key is being handled. The first caller gets
//!   [`Claim::First`] and must then [`complete`](Idempotency::complete) it with the response,
//!   or [`release`](Idempotency::release) it on failure so a retry can run. Later callers get the
//!   stored response ([`Claim::Done`]) or, while the first is still working, [`Claim::InProgress`].
//! - A key is remembered for the store's window from its claim (at least five minutes).
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

/// An empty value marks a claim whose response is not stored yet.
const PENDING: Bytes = Bytes::new();

#[derive(Debug, Clone, Default)]
pub struct LocalIdempotency {
    /// A mutex held for one map operation.
    keys: Arc<Mutex<HashMap<String, (Bytes, Instant)>>>,
}

impl LocalIdempotency {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Idempotency for LocalIdempotency {
    fn claim(&self, key: &str) -> BoxFuture<'_, Result<Claim, BusError>> {
        let mut keys = self.keys.lock();
        let now = Instant::now();
        keys.retain(|_, (_, at)| now.duration_since(*at) < WINDOW);
        let claim = match keys.get(key) {
            Some((value, _)) if value.is_empty() => Claim::InProgress,
            Some((value, _)) => Claim::Done(value.clone()),
            None => {
                keys.insert(key.to_owned(), (PENDING, now));
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
}

impl NatsIdempotency {
    pub fn new(bus: &NatsBus, resource_prefix: &str) -> Self {
        Self {
            js: jetstream::new(bus.client().clone()),
            bucket: format!("{resource_prefix}_IDEMPOTENCY"),
            store: Arc::default(),
        }
    }

    async fn store(&self) -> Result<&kv::Store, BusError> {
        self.store
            .get_or_try_init(|| async {
                let config =
                    kv::Config { bucket: self.bucket.clone(), history: 1, max_age: WINDOW, ..kv::Config::default() };
                self.js.create_key_value(config).await.map_err(|e| BusError::Transport(Box::new(e)))
            })
            .await
    }
}

impl Idempotency for NatsIdempotency {
    fn claim(&self, key: &str) -> BoxFuture<'_, Result<Claim, BusError>> {
        let key = key.to_owned();
        Box::pin(async move {
            let store = self.store().await?;
            match store.create(&key, PENDING).await {
                Ok(_) => Ok(Claim::First),
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
                    match store.get(&key).await.map_err(|e| BusError::Transport(Box::new(e)))? {
                        Some(value) if value.is_empty() => Ok(Claim::InProgress),
                        Some(value) => Ok(Claim::Done(value)),
                        // Released between our create and our get: it is ours to handle now.
                        None => Ok(Claim::InProgress),
                    }
                }
                Err(err) => Err(BusError::Transport(Box::new(err))),
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

//! A realtime client that stays connected: it reconnects on its own (exponential backoff with
//! jitter, at once when a node drains), fetches a new token when the server asks for one,
//! resumes every group with history from the last position it delivered — so the application
//! sees every message once, in order — and says so when that was not possible
//! ([`ClientEvent::Recovered`] with `recovered: false`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use signalbox_core::{ClientAction, CloseCode};
use tokio::sync::mpsc;

use crate::realtime::{
    ConnectError, ConnectOptions, Connection, Event, GroupRecovery, Message, RequestError, ServerError,
};

/// Gets a client token: called before every (re)connect.
pub type TokenProvider = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// How the client connects.
#[derive(Clone)]
pub struct Options {
    /// Where to connect (`ws://HOST:PORT/client`), tried in turn.
    pub urls: Vec<String>,
    pub token: TokenProvider,
    /// The first retry's delay, doubled up to `max_backoff`; each delay is drawn at random
    /// below its bound (full jitter).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Options {
    pub fn new(urls: Vec<String>, token: TokenProvider) -> Self {
        Self { urls, token, min_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(10) }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options").field("urls", &self.urls).finish_non_exhaustive()
    }
}

/// What the application sees.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Connected (again).
    Connected {
        connection_id: String,
    },
    /// The groups resumed after a reconnect: `recovered` is false when something could not be.
    Recovered {
        recovered: bool,
        groups: Vec<GroupRecovery>,
    },
    Message(Message),
    /// Members of a group came and went (see [`Event::Presence`]).
    Presence(Event),
    Error(ServerError),
    /// The connection ended; `retrying` says whether the client reconnects.
    Disconnected {
        code: u16,
        reason: String,
        retrying: bool,
    },
}

/// State shared with the connection task.
#[derive(Debug, Default)]
struct Shared {
    /// The connection requests go to. A std mutex held to clone or replace one `Arc`.
    current: std::sync::Mutex<Option<Arc<Connection>>>,
    /// The last position delivered per group with history.
    positions: std::sync::Mutex<BTreeMap<String, u64>>,
    /// Groups the application joined itself (rejoined after a reconnect).
    joined: std::sync::Mutex<BTreeSet<String>>,
}

/// A connection that stays up. Dropping it closes it.
#[derive(Debug)]
pub struct Client {
    events: mpsc::UnboundedReceiver<ClientEvent>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(connection) = self.shared.current.lock().ok().and_then(|mut c| c.take()) {
            connection.close();
        }
    }
}

fn action(code: u16) -> ClientAction {
    if let Some(known) = CloseCode::ALL.into_iter().find(|c| c.code() == code) {
        return known.action();
    }
    match code {
        4000..=4099 | 1002 | 1003 | 1007 | 1008 | 1009 | 1010 => ClientAction::GiveUp,
        4200..=4299 => ClientAction::ReconnectNow,
        4400..=4499 => ClientAction::Reauthenticate,
        _ => ClientAction::Retry,
    }
}

impl Client {
    /// Starts connecting; events arrive through [`next_event`](Self::next_event).
    pub fn start(options: Options) -> Self {
        let (events, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(run(options, Arc::clone(&shared), events));
        Self { events: receiver, shared, task }
    }

    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// The next message, skipping other events.
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            if let ClientEvent::Message(message) = self.next_event().await? {
                return Some(message);
            }
        }
    }

    fn current(&self) -> Result<Arc<Connection>, RequestError> {
        self.shared.current.lock().ok().and_then(|c| c.clone()).ok_or(RequestError::Closed)
    }

    /// Joins a group, now and after every reconnect.
    pub async fn join(&self, group: &str) -> Result<(), RequestError> {
        self.current()?.join(group).await?;
        if let Ok(mut joined) = self.shared.joined.lock() {
            joined.insert(group.to_owned());
        }
        Ok(())
    }

    pub async fn leave(&self, group: &str) -> Result<(), RequestError> {
        if let Ok(mut joined) = self.shared.joined.lock() {
            joined.remove(group);
        }
        if let Ok(mut positions) = self.shared.positions.lock() {
            positions.remove(group);
        }
        self.current()?.leave(group).await
    }

    pub async fn publish(&self, group: &str, event: &str, data: Value) -> Result<Option<u64>, RequestError> {
        self.current()?.publish_stored(group, event, data).await
    }

    /// The last position delivered in each group with history.
    pub fn positions(&self) -> BTreeMap<String, u64> {
        self.shared.positions.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

async fn run(options: Options, shared: Arc<Shared>, events: mpsc::UnboundedSender<ClientEvent>) {
    let mut failures: u32 = 0;
    let mut next_url = 0;
    let mut immediate = false;
    loop {
        if events.is_closed() {
            return;
        }
        if !immediate && failures > 0 {
            let bound =
                options.min_backoff.saturating_mul(2u32.saturating_pow(failures.min(16) - 1)).min(options.max_backoff);
            let jittered = bound.mul_f64(rand::random::<f64>());
            tokio::time::sleep(jittered).await;
        }
        immediate = false;
        let url = options.urls[next_url % options.urls.len().max(1)].clone();
        next_url += 1;
        let token = match (options.token)().await {
            Ok(token) => token,
            Err(reason) => {
                failures += 1;
                let _ = events.send(ClientEvent::Disconnected { code: 4401, reason, retrying: true });
                continue;
            }
        };
        let recover = ConnectOptions { recover: shared.positions.lock().map(|p| p.clone()).unwrap_or_default() };
        let mut connection = match Connection::connect_with(&url, &token, &recover).await {
            Ok(connection) => connection,
            Err(ConnectError::Closed { code, reason }) => {
                let action = action(code);
                let retrying = action != ClientAction::GiveUp;
                let _ = events.send(ClientEvent::Disconnected { code, reason, retrying });
                if !retrying {
                    return;
                }
                failures += 1;
                immediate = action == ClientAction::ReconnectNow;
                continue;
            }
            Err(err) => {
                failures += 1;
                let _ = events.send(ClientEvent::Disconnected { code: 1006, reason: err.to_string(), retrying: true });
                continue;
            }
        };
        failures = 0;
        let mut incoming = connection.take_events();
        let connection = Arc::new(connection);
        if let Ok(mut current) = shared.current.lock() {
            *current = Some(Arc::clone(&connection));
        }
        let _ = events.send(ClientEvent::Connected { connection_id: connection.connection_id().to_owned() });
        // Groups joined by the application and not resumed with a position: join them again.
        let resumed: BTreeSet<String> = recover.recover.keys().cloned().collect();
        let rejoin: Vec<String> =
            shared.joined.lock().map(|j| j.difference(&resumed).cloned().collect()).unwrap_or_default();
        for group in rejoin {
            let connection = Arc::clone(&connection);
            tokio::spawn(async move { connection.join(&group).await });
        }
        while let Some(event) = incoming.recv().await {
            match event {
                Event::Message(message) => {
                    if let (Some(group), Some(seq)) = (&message.group, message.seq)
                        && let Ok(mut positions) = shared.positions.lock()
                    {
                        let position = positions.entry(group.clone()).or_insert(0);
                        *position = (*position).max(seq);
                    }
                    let _ = events.send(ClientEvent::Message(message));
                }
                Event::Recovery { recovered, groups } => {
                    let _ = events.send(ClientEvent::Recovered { recovered, groups });
                }
                Event::Error(error) => {
                    let _ = events.send(ClientEvent::Error(error));
                }
                presence @ Event::Presence { .. } => {
                    let _ = events.send(ClientEvent::Presence(presence));
                }
                Event::Reconnect { .. } | Event::Pong => {}
                Event::Closed { code, reason } => {
                    let action = action(code);
                    let retrying = action != ClientAction::GiveUp;
                    let _ = events.send(ClientEvent::Disconnected { code, reason, retrying });
                    if !retrying {
                        return;
                    }
                    immediate = matches!(action, ClientAction::ReconnectNow | ClientAction::Reauthenticate);
                    failures = u32::from(!immediate);
                    break;
                }
            }
        }
        if let Ok(mut current) = shared.current.lock() {
            *current = None;
        }
    }
}

//! Signalbox's edge: it holds the client connections of one node and routes messages to
//! them by interest.
//!
//! # Layout
//! - [`Edge`] (this file): starting a node, its router, readiness and shutdown;
//! - `hub`: the registry of connections and targets, interest, fan-out, presence bookkeeping;
//! - `conn`, `outbox`: a connection's shared handle and its bounded outbound queue;
//! - `protocol`: the seam — the `Protocol` trait, formats, commands and what is sent; the
//!   adapters `protocol::native` and `protocol::signalr` (codec and HTTP entry each);
//! - `admission`: the `connect` webhook, limits, first groups, a connection's start and end;
//! - `session`: the commands of every protocol (join, leave, publish, ping, presence, events);
//! - `ws`, `http_transport`: the transports — WebSocket (upgrade, RFC 6455 framing, the
//!   per-connection task), long polling and Server-Sent Events — for any protocol;
//! - `resume`, `handover`: parked resumable connections, and moving one between edges;
//! - `addresses`: connections reached through their own subject;
//! - `presence`: presence flushes and heartbeats; `events`: connection events for webhooks;
//! - `auth`, `directory`: client tokens, and the keys and settings cached from the api;
//! - `dispatch`, `control`: what arrives from the routing plane;
//! - `sweeper`: heartbeats, idle timeouts and lingering subscriptions, for all connections;
//! - [`http`]: the HTTP server every role runs.
//!
//! The edge holds no database connection and never imports the api: it learns keys and
//! settings through the [`Bus`](signalbox_bus::Bus), like everything else.

mod addresses;
mod admission;
mod auth;
mod config;
mod conn;
mod control;
mod directory;
mod dispatch;
mod events;
mod handover;
pub mod http;
mod http_transport;
mod hub;
mod outbox;
mod presence;
mod problem;
mod protocol;
mod recoveries;
mod resume;
mod session;
mod sweeper;
mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use signalbox_bus::{Bus, BusError, EventQueue, Journal};
use signalbox_core::CloseCode;
use tokio::task::JoinSet;

pub use config::EdgeConfig;
use directory::Directory;
use hub::Hub;
use outbox::CloseRequest;

/// What the edge's handlers and tasks share.
#[derive(Debug)]
pub(crate) struct EdgeState {
    pub(crate) hub: Arc<Hub>,
    pub(crate) directory: Directory,
    pub(crate) drops: dispatch::DropCounters,
    pub(crate) events: events::ConnectionEvents,
    pub(crate) addresses: addresses::Addresses,
    pub(crate) parked: resume::Parked,
    pub(crate) http_connections: http_transport::Registry,
    draining: AtomicBool,
    /// The node has told the cluster it exists (its first heartbeat went out): until then it
    /// is not ready, so no client lands on a node presence queries do not know of.
    pub(crate) announced: AtomicBool,
}

impl EdgeState {
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// A running edge node.
#[derive(Debug)]
pub struct Edge {
    state: Arc<EdgeState>,
    /// The dispatchers and the sweeper: aborted when the edge is dropped.
    tasks: JoinSet<()>,
}

impl Edge {
    /// Starts the node: one dispatcher per worker thread, the node's own subscriptions (its
    /// node subject, config announcements, heartbeats and roll calls), the sweeper, the
    /// presence flusher, the heartbeat and the queueing of connection events.
    pub async fn start(
        config: EdgeConfig,
        bus: Arc<dyn Bus>,
        journal: Arc<dyn Journal>,
        events: Arc<dyn EventQueue>,
    ) -> Result<Self, BusError> {
        let dispatchers = std::thread::available_parallelism().map_or(2, usize::from);
        let directory =
            Directory::new(Arc::clone(&bus), config.subjects.clone(), config.directory_ttl, config.api_timeout);
        let config = Arc::new(config);
        let (hub, inboxes) = Hub::new(Arc::clone(&config), bus, journal, dispatchers);
        let (events, queue_events) = events::ConnectionEvents::new(config.node.clone(), events);
        let state = Arc::new(EdgeState {
            hub: Arc::clone(&hub),
            directory,
            drops: dispatch::DropCounters::default(),
            events,
            addresses: addresses::Addresses::default(),
            parked: resume::Parked::default(),
            http_connections: http_transport::Registry::default(),
            draining: AtomicBool::new(false),
            announced: AtomicBool::new(false),
        });
        let mut tasks = JoinSet::new();
        for inbox in inboxes {
            tasks.spawn(dispatch::run(Arc::clone(&state), inbox));
        }
        let subjects = &config.subjects;
        for subject in [
            subjects.node_pattern(&config.node),
            subjects.config_pattern(),
            subjects.heartbeat_pattern(),
            subjects.roll_call(),
        ] {
            hub.interest_for(&subject).subscribe(subject, None).await?;
        }
        tasks.spawn(sweeper::run(Arc::clone(&state)));
        tasks.spawn(queue_events);
        tasks.spawn(presence::run(Arc::clone(&state)));
        tasks.spawn(presence::beat(Arc::clone(&state)));
        tracing::info!(node = %config.node, "edge started");
        Ok(Self { state, tasks })
    }

    /// The routes of the edge: `GET /client` (native), and the SignalR adapter's
    /// `/client/negotiate` and `/client/` (also `/client?hub=…`, without the slash).
    pub fn router(&self) -> Router {
        protocol::routes().with_state(Arc::clone(&self.state))
    }

    /// Ready to take connections: the routing plane is up, the cluster knows this node, and
    /// the node is not draining.
    pub fn is_ready(&self) -> bool {
        !self.state.draining() && self.state.hub.bus.is_connected() && self.state.announced.load(Ordering::Relaxed)
    }

    /// Client connections currently open on this node.
    pub fn connection_count(&self) -> usize {
        self.state.hub.connection_count()
    }

    /// Drains the node: stops accepting connections (and fails readiness), then tells every
    /// client to reconnect elsewhere — a `reconnect` frame, then close code 4200 — spread evenly
    /// over `period` so the other nodes are not hit by all of them at once; then waits up to
    /// `grace` for the last close handshakes.
    pub async fn drain(&self, period: Duration, grace: Duration) {
        self.state.draining.store(true, Ordering::Relaxed);
        let mut connections = Vec::new();
        self.state.hub.for_each_connection(|conn| connections.push(Arc::clone(conn)));
        let total = connections.len();
        tracing::info!(connections = total, seconds = period.as_secs_f64(), "draining");
        let reason = "this node is draining; reconnect";
        // In ticks of at least 10 ms, so a short period does not become thousands of timers.
        let ticks = (period.as_millis() / 10).clamp(1, total.max(1) as u128) as usize;
        let per_tick = total.div_ceil(ticks.max(1)).max(1);
        let tick = period / u32::try_from(ticks).unwrap_or(u32::MAX).max(1);
        for batch in connections.chunks(per_tick) {
            for conn in batch {
                // A resumable connection is parked instead: its client resumes it on another
                // node, which takes it over from this one (see `resume`).
                if conn.outbox.is_retaining() && !conn.outbox.is_parked() {
                    conn.outbox.request_park();
                    continue;
                }
                if let Some(frame) = conn.format().encode(&protocol::Outbound::Reconnect(reason)) {
                    conn.outbox.push(frame);
                }
                conn.close(CloseRequest::default_for(CloseCode::Reconnect));
            }
            tokio::time::sleep(tick).await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.connection_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.state.parked.end_all(&self.state);
        tracing::info!(remaining = self.connection_count(), "drained");
        self.state.events.flush(grace).await;
    }

    /// Stops accepting connections and closes every open one with 1001 (going away), then
    /// waits up to `grace` for them to finish their close handshakes.
    pub async fn shutdown(&self, grace: Duration) {
        self.state.draining.store(true, Ordering::Relaxed);
        self.state.hub.for_each_connection(|conn| conn.close(CloseRequest::default_for(CloseCode::GoingAway)));
        let deadline = tokio::time::Instant::now() + grace;
        while self.connection_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.state.parked.end_all(&self.state);
        tracing::info!(remaining = self.connection_count(), "edge shut down");
        self.state.events.flush(grace).await;
    }

    /// The ids of the connections open on this node.
    pub fn connection_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        self.state.hub.for_each_connection(|conn| ids.push(conn.id.to_string()));
        ids
    }

    /// Targets (subscriptions and lingering ones) this node holds — for tests of interest.
    pub fn interest_count(&self) -> usize {
        self.state.hub.target_count()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

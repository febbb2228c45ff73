//! Edge settings that operators tune (per node, not per app).

use std::time::Duration;

use signalbox_core::{AppId, NodeId};
use signalbox_proto::Subjects;

/// How one edge node behaves.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// This node's id: the prefix of every connection id it hands out.
    pub node: NodeId,
    pub subjects: Subjects,
    /// How often the server pings each connection. A connection from which nothing (not
    /// even a pong) arrived for two intervals is closed with 4101.
    pub heartbeat_interval: Duration,
    /// Bytes a connection may have queued for sending before it is closed as a slow
    /// consumer (4100). Raised for a connection to two of the largest messages its app
    /// accepts (framed), so that any message accepted at publish can be delivered.
    pub outbox_max_bytes: usize,
    /// Frames a connection may have queued, whatever their size.
    pub outbox_max_frames: usize,
    /// How long a group, user or hub subscription is kept after its last local member left,
    /// so a reconnecting client does not cause an unsubscribe/subscribe churn.
    pub interest_linger: Duration,
    /// Client connections this node accepts in total, across apps (file descriptors are
    /// finite: see the operations guide).
    pub max_connections: usize,
    /// How long a cached key or app setting is trusted without an invalidation.
    pub directory_ttl: Duration,
    /// Timeout of requests to the api (key lookups, user groups).
    pub api_timeout: Duration,
    /// Apps whose connections are also counted under their own `app` label
    /// (`signalbox_app_connections`). An explicit, short list: app ids are unbounded, and a
    /// label per app would grow the series without limit.
    pub metrics_apps: Vec<AppId>,
}

impl EdgeConfig {
    pub fn new(node: NodeId, subjects: Subjects) -> Self {
        Self {
            node,
            subjects,
            heartbeat_interval: Duration::from_secs(20),
            outbox_max_bytes: 1024 * 1024,
            outbox_max_frames: 8192,
            interest_linger: Duration::from_secs(2),
            max_connections: 100_000,
            directory_ttl: Duration::from_secs(60),
            api_timeout: Duration::from_secs(5),
            metrics_apps: Vec::new(),
        }
    }

    /// Nothing received for this long closes a connection.
    pub fn idle_timeout(&self) -> Duration {
        self.heartbeat_interval * 2
    }
}

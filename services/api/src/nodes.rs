//! The edges of the cluster, as their heartbeats tell: whom to ask for presence, and which
//! edges are lost (so the disconnects of their connections are owed to webhooks).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use signalbox_core::NodeId;
use signalbox_proto::wire::Heartbeat;

/// An edge heard from within this long is asked for presence. (Edges beat every 2 s; one that
/// died since answers "no responders" at once, so asking a few dead ones costs nothing.)
pub(crate) const PRESENCE_WINDOW: Duration = Duration::from_secs(10);
/// An edge silent this long is lost: its connections are reported disconnected.
pub(crate) const LOST_AFTER: Duration = signalbox_proto::wire::NODE_LOST_AFTER;

/// What an edge's last heartbeat said.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    /// When this incarnation of the node started (a node id can be reused by a restart).
    started_at_millis: u64,
}

#[derive(Debug)]
pub(crate) struct Nodes {
    /// Plain mutexes, held for one map operation.
    seen: Mutex<HashMap<NodeId, Seen>>,
    /// Since when this node has heard heartbeats without a break (a reconnect of our own bus
    /// restarts it: while we were away, silence proves nothing).
    listening: Mutex<(u64, Instant)>,
}

impl Nodes {
    pub(crate) fn new(epoch: u64) -> Self {
        Self { seen: Mutex::default(), listening: Mutex::new((epoch, Instant::now())) }
    }

    pub(crate) fn heard(&self, heartbeat: &Heartbeat) {
        if let Ok(node) = NodeId::new(&heartbeat.node) {
            let seen = Seen { at: Instant::now(), started_at_millis: heartbeat.started_at_millis };
            self.seen.lock().insert(node, seen);
        }
    }

    /// Edges heard from within `window`.
    pub(crate) fn live(&self, window: Duration) -> Vec<NodeId> {
        let mut seen = self.seen.lock();
        // Forget nodes long gone, so the map does not grow with every restart.
        seen.retain(|_, s| s.at.elapsed() < LOST_AFTER * 10);
        seen.iter().filter(|(_, s)| s.at.elapsed() < window).map(|(node, _)| node.clone()).collect()
    }

    /// Notes our bus's current epoch: a change means we were away, and silence from before
    /// proves nothing. Call it regularly (the lost-edge sweep does).
    pub(crate) fn observe_epoch(&self, epoch: u64) {
        let mut listening = self.listening.lock();
        if listening.0 != epoch {
            *listening = (epoch, Instant::now());
        }
    }

    /// Which connections of `node` are lost: every one that connected before the returned
    /// time (Unix milliseconds). `i64::MAX` when the node itself is lost — we listened without
    /// a break for [`LOST_AFTER`] and did not hear it; the start of its current incarnation
    /// when it restarted under the same id; `None` when nothing is known to be lost.
    pub(crate) fn lost_before(&self, node: &str) -> Option<i64> {
        let seen = NodeId::new(node).ok().and_then(|n| self.seen.lock().get(&n).copied());
        if let Some(seen) = seen
            && seen.at.elapsed() < LOST_AFTER
        {
            return Some(i64::try_from(seen.started_at_millis).unwrap_or(i64::MAX));
        }
        (self.listening.lock().1.elapsed() >= LOST_AFTER).then_some(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(node: &str, started_at_millis: u64) -> Heartbeat {
        Heartbeat { node: node.into(), started_at_millis, connections: 0 }
    }

    #[test]
    fn heard_nodes_are_live_and_nobody_is_lost_before_we_listened_long_enough() {
        let nodes = Nodes::new(1);
        nodes.heard(&beat("edge0001", 500));
        assert_eq!(nodes.live(PRESENCE_WINDOW), vec![NodeId::new("edge0001").expect("valid")]);
        nodes.observe_epoch(1);
        assert_eq!(nodes.lost_before("edge0001"), Some(500), "connections from before its restart");
        assert_eq!(nodes.lost_before("edge0002"), None, "not yet listening for long enough to tell");
    }
}

//! Presence on an edge: answering "who is here" for the api, telling group members who came
//! and went, and keeping track of the other edges.
//!
//! **Events without a storm.** When an app turns presence events on, joins and leaves are
//! not sent one by one (a 10 000-member group filling up would cost 10 000 × 10 000 frames).
//! Each group target collects its changes, and once per [`INTERVAL`] the node publishes one
//! [`PresenceUpdate`] for the group to the other nodes and delivers one frame to each local
//! member with everything that changed meanwhile, here and elsewhere: at most one presence
//! frame per member per interval, however many join. Lists are cut at [`MAX_LISTED`] entries
//! per frame (`truncated`), after which the client asks for the full list.
//!
//! **Counts** come from every node's own count, carried by its updates. A node that gets its
//! first member in a group asks the others for theirs; a node not heard from for
//! [`PEER_TIMEOUT`] is dropped from the count.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use signalbox_core::NodeId;
use signalbox_core::settings::PresenceEvents;
use signalbox_proto::native::{self, PresenceChange};
use signalbox_proto::wire::{self, Body, Heartbeat, PresenceEntry, PresenceMember, PresenceUpdate};

use crate::EdgeState;
use crate::conn::{Conn, WireFormat};
use crate::hub::{Hub, Target};

/// How often presence changes are published and delivered.
pub(crate) const INTERVAL: Duration = Duration::from_millis(250);
/// Joined or left members listed per frame and per update.
pub(crate) const MAX_LISTED: usize = 100;
/// How often an edge says it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);
/// Another edge silent this long no longer counts.
pub(crate) const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Joins and leaves not yet told.
#[derive(Debug, Default)]
struct Changes {
    joined: Vec<PresenceMember>,
    left: Vec<PresenceMember>,
    truncated: bool,
}

impl Changes {
    fn add(&mut self, joined: bool, member: PresenceMember) {
        let list = if joined { &mut self.joined } else { &mut self.left };
        if list.len() < MAX_LISTED {
            list.push(member);
        } else {
            self.truncated = true;
        }
    }

    fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.left.is_empty() && !self.truncated
    }
}

/// A group target's presence bookkeeping (only for groups of apps with presence events on).
#[derive(Debug, Default)]
pub(crate) struct PresenceState {
    mode: PresenceEvents,
    /// Local changes the other nodes have not heard of.
    unpublished: Changes,
    /// Changes (here and elsewhere) the local members have not heard of.
    undelivered: Changes,
    /// The other nodes' connection counts in the group.
    remote_counts: HashMap<NodeId, u32>,
    /// Publish our count at the next flush, changes or not.
    publish_due: bool,
    /// Ask the other nodes for their counts with the next update.
    sync_request: bool,
    count_changed: bool,
    last_delivered_count: Option<u64>,
    /// Already in the hub's list of targets to flush.
    queued: bool,
}

/// The edges heard from, by their heartbeats.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    seen: Mutex<HashMap<NodeId, Instant>>,
}

impl Peers {
    pub(crate) fn heard(&self, heartbeat: &Heartbeat) {
        if let Ok(node) = NodeId::new(&heartbeat.node) {
            self.saw(node);
        }
    }

    /// Anything from a node shows it is alive.
    fn saw(&self, node: NodeId) {
        self.seen.lock().insert(node, Instant::now());
    }

    fn is_live(&self, node: &NodeId) -> bool {
        self.seen.lock().get(node).is_some_and(|at| at.elapsed() < PEER_TIMEOUT)
    }
}

fn member_of(conn: &Conn) -> PresenceMember {
    PresenceMember { connection_id: conn.id.to_string(), user: conn.user.as_ref().map(ToString::to_string) }
}

impl Hub {
    /// A local member joined or left a group target.
    pub(crate) fn presence_changed(&self, target: &Arc<Target>, conn: &Conn, joined: bool) {
        let mode = conn.settings.presence.events;
        if mode == PresenceEvents::Off || target.group().is_none() {
            return;
        }
        let mut slot = target.presence.lock();
        let state = slot.get_or_insert_with(|| {
            // First presence member here: ask the others how many they hold.
            Box::new(PresenceState { sync_request: true, publish_due: true, ..PresenceState::default() })
        });
        state.mode = mode;
        let member = member_of(conn);
        state.unpublished.add(joined, member.clone());
        state.undelivered.add(joined, member);
        state.count_changed = true;
        self.queue_presence(target, state);
    }

    /// Another node's update for a group this node has members in.
    pub(crate) fn presence_heard(&self, target: &Arc<Target>, update: PresenceUpdate) {
        if update.node == self.config.node.as_str() {
            return;
        }
        let Ok(node) = NodeId::new(&update.node) else { return };
        self.peers.saw(node.clone());
        let mut slot = target.presence.lock();
        let Some(state) = slot.as_mut() else { return };
        if state.mode == PresenceEvents::Off {
            return;
        }
        if update.local_count == 0 {
            state.remote_counts.remove(&node);
        } else {
            state.remote_counts.insert(node, update.local_count);
        }
        for member in update.joined {
            state.undelivered.add(true, member);
        }
        for member in update.left {
            state.undelivered.add(false, member);
        }
        state.undelivered.truncated |= update.truncated;
        state.count_changed = true;
        state.publish_due |= update.sync_request;
        self.queue_presence(target, state);
    }

    fn queue_presence(&self, target: &Arc<Target>, state: &mut PresenceState) {
        if !state.queued {
            state.queued = true;
            self.presence_queue.lock().push(Arc::clone(target));
        }
    }

    /// This node's connections in a group (or of a user), for the api's presence query.
    pub(crate) fn presence_entries(&self, subject: &signalbox_proto::Subject) -> Vec<PresenceEntry> {
        let Some(target) = self.target(subject) else { return Vec::new() };
        target.with_members(|members| {
            members
                .values()
                .map(|conn| PresenceEntry {
                    connection_id: conn.id.to_string(),
                    user: conn.user.as_ref().map(ToString::to_string),
                    info_json: conn.info.as_deref().map(str::to_owned),
                })
                .collect()
        })
    }
}

/// Publishes and delivers queued presence changes once per interval; drops silent peers.
pub(crate) async fn run(edge: Arc<EdgeState>) {
    let mut interval = tokio::time::interval(INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_peer_check = Instant::now();
    loop {
        interval.tick().await;
        if last_peer_check.elapsed() >= HEARTBEAT {
            last_peer_check = Instant::now();
            forget_silent_peers(&edge);
        }
        let queued = std::mem::take(&mut *edge.hub.presence_queue.lock());
        for target in queued {
            flush(&edge, &target).await;
        }
    }
}

/// Counts of nodes that stopped beating no longer count.
fn forget_silent_peers(edge: &EdgeState) {
    for target in edge.hub.targets() {
        let mut slot = target.presence.lock();
        let Some(state) = slot.as_mut() else { continue };
        let before = state.remote_counts.len();
        state.remote_counts.retain(|node, _| edge.hub.peers.is_live(node));
        if state.remote_counts.len() != before {
            state.count_changed = true;
            edge.hub.queue_presence(&target, state);
        }
    }
}

/// The client method a SignalR connection's presence changes invoke (documented in
/// docs/signalr.md): its one argument is the native `presence` frame's object.
const PRESENCE_METHOD: &str = "presence";

async fn flush(edge: &EdgeState, target: &Arc<Target>) {
    let Some(group) = target.group() else { return };
    let local_count = target.with_members(|m| m.len());
    let (update, frame) = {
        let mut slot = target.presence.lock();
        let Some(state) = slot.as_mut() else { return };
        state.queued = false;
        let update = (state.publish_due || !state.unpublished.is_empty()).then(|| {
            let changes = std::mem::take(&mut state.unpublished);
            let update = PresenceUpdate {
                app: target.scope.app.to_string(),
                hub: target.scope.hub.to_string(),
                group: group.to_string(),
                node: edge.hub.config.node.to_string(),
                joined: changes.joined,
                left: changes.left,
                local_count: u32::try_from(local_count).unwrap_or(u32::MAX),
                truncated: changes.truncated,
                sync_request: state.sync_request,
            };
            state.publish_due = false;
            state.sync_request = false;
            update
        });
        let count = local_count as u64 + state.remote_counts.values().map(|c| u64::from(*c)).sum::<u64>();
        let frame = match state.mode {
            PresenceEvents::Members if !state.undelivered.is_empty() => {
                let changes = std::mem::take(&mut state.undelivered);
                let joined: Vec<PresenceChange<'_>> = changes.joined.iter().map(change_view).collect();
                let left: Vec<PresenceChange<'_>> = changes.left.iter().map(change_view).collect();
                state.last_delivered_count = Some(count);
                state.count_changed = false;
                Some(native::encode_presence_members(group.as_str(), &joined, &left, count, changes.truncated))
            }
            PresenceEvents::Count if state.count_changed && state.last_delivered_count != Some(count) => {
                state.last_delivered_count = Some(count);
                state.count_changed = false;
                Some(native::encode_presence_count(group.as_str(), count))
            }
            _ => {
                state.count_changed = false;
                None
            }
        };
        (update, frame)
    };
    if let Some(update) = update {
        metrics::counter!("signalbox_presence_updates_published_total").increment(1);
        if let Err(err) = edge.hub.bus.publish(target.subject.clone(), wire::encode(Body::PresenceUpdate(update))).await
        {
            tracing::warn!(subject = %target.subject, error = %err, "could not publish a presence update");
        }
    }
    if let Some(notice) = frame {
        // Framed once per format in use, as messages are.
        let mut frames: [Option<bytes::Bytes>; WireFormat::COUNT] = Default::default();
        let delivered = target.with_members(|members| {
            for conn in members.values() {
                let format = conn.format();
                let frame = frames[format.index()].get_or_insert_with(|| format.frame_notice(PRESENCE_METHOD, &notice));
                conn.outbox.push(frame.clone());
            }
            members.len()
        });
        metrics::counter!("signalbox_presence_frames_total").increment(delivered as u64);
    }
}

fn change_view(member: &PresenceMember) -> PresenceChange<'_> {
    PresenceChange { user_id: member.user.as_deref(), connection_id: &member.connection_id }
}

/// Publishes this node's heartbeat now and every [`HEARTBEAT`] (retrying soon when the bus is
/// not up yet, so a starting node is known at once).
pub(crate) async fn beat(edge: Arc<EdgeState>) {
    loop {
        let wait = if send_heartbeat(&edge).await { HEARTBEAT } else { Duration::from_millis(100) };
        tokio::time::sleep(wait).await;
    }
}

/// Publishes this node's heartbeat; false if the bus refused it.
pub(crate) async fn send_heartbeat(edge: &EdgeState) -> bool {
    let heartbeat = Heartbeat {
        node: edge.hub.config.node.to_string(),
        started_at_millis: edge.hub.started_at_millis,
        connections: edge.hub.connection_count() as u64,
    };
    let subject = edge.hub.config.subjects.heartbeat(&edge.hub.config.node);
    match edge.hub.bus.publish(subject, wire::encode(Body::Heartbeat(heartbeat))).await {
        Ok(()) => {
            edge.announced.store(true, std::sync::atomic::Ordering::Relaxed);
            true
        }
        Err(err) => {
            tracing::debug!(error = %err, "could not publish a heartbeat");
            false
        }
    }
}

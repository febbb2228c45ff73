//! Presence bookkeeping on a group target: the joins and leaves not yet told, here and
//! elsewhere, the other nodes' counts, and the edges heard from. The presence flusher
//! (`crate::presence`) takes what is due once per interval and does the I/O.
//!
//! Lists are cut at [`MAX_LISTED`] entries per frame (`truncated`), after which the client asks
//! for the full list. A node not heard from for [`PEER_TIMEOUT`] is dropped from the count.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use signalbox_core::NodeId;
use signalbox_core::settings::PresenceMode;
use signalbox_proto::wire::{Heartbeat, PresenceEntry, PresenceMember, PresenceUpdate};

use super::presence_users::{UserChange, Users};
use super::{Hub, Target};
use crate::conn::{Conn, ConnKey};

/// Joined or left members listed per frame and per update.
pub(crate) const MAX_LISTED: usize = 100;
/// Another edge silent this long no longer counts.
pub(crate) const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// What a flush of one group target has to tell.
pub(crate) struct PresenceFlush {
    /// For the other nodes.
    pub(crate) update: Option<PresenceUpdate>,
    /// For the local members.
    pub(crate) notice: Option<Notice>,
}

/// What a flush tells the local members.
pub(crate) enum Notice {
    Members(Changes, u64),
    Count(u64),
    /// Users who came and went (groups whose members are users), how many there are, and
    /// when connections that joined meanwhile did (see `Users::joined_at`).
    Users(Vec<UserChange>, u64, HashMap<ConnKey, usize>),
}

/// Joins and leaves not yet told.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub(crate) joined: Vec<PresenceMember>,
    pub(crate) left: Vec<PresenceMember>,
    pub(crate) truncated: bool,
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
    mode: PresenceMode,
    /// For groups whose members are users: who is here and elsewhere.
    users: Users,
    /// Another node asked for everyone held here (groups whose members are users).
    full_due: bool,
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

fn entry_of(conn: &Conn, group: Option<&signalbox_core::GroupName>) -> PresenceEntry {
    PresenceEntry {
        connection_id: conn.id.to_string(),
        user: conn.presence_user().map(ToString::to_string),
        info_json: conn.presence_info().map(str::to_owned),
        group: group.map(ToString::to_string),
    }
}

fn member_of(conn: &Conn, mode: PresenceMode) -> PresenceMember {
    PresenceMember {
        connection_id: conn.id.to_string(),
        user: conn.presence_user().map(ToString::to_string),
        // Only users are shown with their info.
        info_json: (mode == PresenceMode::Users).then(|| conn.presence_info().map(str::to_owned)).flatten(),
    }
}

impl Hub {
    /// A local member joined or left a group target.
    pub(crate) fn presence_changed(&self, target: &Arc<Target>, conn: &Conn, joined: bool) {
        let Some(group) = target.group() else { return };
        let mode = conn.settings.presence_mode(group);
        if mode == PresenceMode::Off {
            return;
        }
        let mut slot = target.presence.lock();
        let state = slot.get_or_insert_with(|| {
            // First presence member here: ask the others how many they hold.
            Box::new(PresenceState { sync_request: true, publish_due: true, ..PresenceState::default() })
        });
        state.mode = mode;
        if conn.moving.load(std::sync::atomic::Ordering::Acquire) {
            // Nobody came or went: only where it is counted changes.
            state.count_changed = true;
            state.publish_due = true;
            return self.queue_presence(target, state);
        }
        let member = member_of(conn, mode);
        if mode == PresenceMode::Users {
            match (conn.presence_user(), joined) {
                (Some(user), true) => state.users.local_joined(user.as_str(), conn.presence_info(), conn.key),
                (Some(user), false) => state.users.local_left(user.as_str()),
                // Anonymous connections are nobody in a group of users.
                (None, _) => return,
            }
        } else {
            state.undelivered.add(joined, member.clone());
        }
        state.unpublished.add(joined, member);
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
        if state.mode == PresenceMode::Off {
            return;
        }
        if update.local_count == 0 {
            state.remote_counts.remove(&node);
        } else {
            state.remote_counts.insert(node.clone(), update.local_count);
        }
        if state.mode == PresenceMode::Users {
            if update.full {
                state.users.remote_replaced(&node, &update.everyone);
            } else {
                state.users.remote_changed(&node, &update.joined, &update.left);
            }
            state.full_due |= update.sync_request;
        } else {
            for member in update.joined {
                state.undelivered.add(true, member);
            }
            for member in update.left {
                state.undelivered.add(false, member);
            }
            state.undelivered.truncated |= update.truncated;
        }
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
        target.with_members(|members| members.values().map(|conn| entry_of(conn, None)).collect())
    }

    /// This node's connections in every group of `scope` whose name starts with `prefix`, each
    /// entry naming its group (for the api's channel lists).
    pub(crate) fn presence_in_groups(&self, scope: &signalbox_core::Scope, prefix: &str) -> Vec<PresenceEntry> {
        let mut entries = Vec::new();
        for target in self.targets() {
            let Some(group) = target.group().filter(|g| target.scope == *scope && g.as_str().starts_with(prefix))
            else {
                continue;
            };
            target.with_members(|members| entries.extend(members.values().map(|conn| entry_of(conn, Some(group)))));
        }
        entries
    }

    /// Takes what a group target's presence has to tell: the update for the other nodes and
    /// the notice for the local members (the presence flusher calls this once per interval).
    pub(crate) fn take_presence(&self, target: &Target) -> Option<PresenceFlush> {
        let group = target.group()?;
        let local_count = target.with_members(|m| m.len());
        let mut slot = target.presence.lock();
        let state = slot.as_mut()?;
        state.queued = false;
        let mode = state.mode;
        // Users are counted per node from these updates: lists cut short would lose some, so
        // everyone is sent instead.
        let full = std::mem::take(&mut state.full_due) || (mode == PresenceMode::Users && state.unpublished.truncated);
        let update = (state.publish_due || full || !state.unpublished.is_empty()).then(|| {
            let changes = std::mem::take(&mut state.unpublished);
            // Everyone held here, instead of the changes (which it includes).
            let everyone: Vec<PresenceMember> = if full {
                target.with_members(|members| members.values().map(|conn| member_of(conn, mode)).collect())
            } else {
                Vec::new()
            };
            let (joined, left) = if full { (Vec::new(), Vec::new()) } else { (changes.joined, changes.left) };
            let update = PresenceUpdate {
                app: target.scope.app.to_string(),
                hub: target.scope.hub.to_string(),
                group: group.to_string(),
                node: self.config.node.to_string(),
                joined,
                left,
                local_count: u32::try_from(local_count).unwrap_or(u32::MAX),
                truncated: changes.truncated && !full,
                sync_request: state.sync_request,
                everyone,
                full,
            };
            state.publish_due = false;
            state.sync_request = false;
            update
        });
        let count = local_count as u64 + state.remote_counts.values().map(|c| u64::from(*c)).sum::<u64>();
        let notice = match state.mode {
            PresenceMode::Users if !state.users.changes.is_empty() => {
                state.count_changed = false;
                let joined_at = std::mem::take(&mut state.users.joined_at);
                Some(Notice::Users(std::mem::take(&mut state.users.changes), state.users.count(), joined_at))
            }
            PresenceMode::Connections if !state.undelivered.is_empty() => {
                state.last_delivered_count = Some(count);
                state.count_changed = false;
                Some(Notice::Members(std::mem::take(&mut state.undelivered), count))
            }
            PresenceMode::Count if state.count_changed && state.last_delivered_count != Some(count) => {
                state.last_delivered_count = Some(count);
                state.count_changed = false;
                Some(Notice::Count(count))
            }
            _ => {
                state.count_changed = false;
                state.users.joined_at.clear();
                None
            }
        };
        Some(PresenceFlush { update, notice })
    }

    /// Counts of nodes that stopped beating no longer count.
    pub(crate) fn forget_silent_peers(&self) {
        for target in self.targets() {
            let mut slot = target.presence.lock();
            let Some(state) = slot.as_mut() else { continue };
            let before = state.remote_counts.len();
            let silent: Vec<NodeId> =
                state.remote_counts.keys().filter(|node| !self.peers.is_live(node)).cloned().collect();
            for node in &silent {
                state.users.remote_gone(node);
            }
            state.remote_counts.retain(|node, _| self.peers.is_live(node));
            if state.remote_counts.len() != before {
                state.count_changed = true;
                self.queue_presence(&target, state);
            }
        }
    }
}

//! A target: the local members of one routing subject (a hub's "all", a group, a user) and
//! this node's subscription to that subject.
//!
//! Lifecycle: created by its first member's join; subscribed (once, however many members
//! join concurrently); emptied when its last member leaves; retired by the sweeper after
//! the linger period if it is still empty, which unsubscribes and drops it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use indexmap::IndexMap;
use parking_lot::RwLock;
use rustc_hash::FxBuildHasher;
use signalbox_bus::SubscriptionId;
use signalbox_core::{GroupName, Scope, UserId};
use signalbox_proto::Subject;

use crate::conn::{Conn, ConnKey};

/// What a target addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetKind {
    All,
    Group(GroupName),
    User(UserId),
}

/// The subscription state of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubState {
    Idle,
    Subscribed(SubscriptionId),
    /// Unsubscribed and removed from the hub: a join that still holds it must start over.
    Retired,
}

pub(crate) type Members = IndexMap<ConnKey, Arc<Conn>, FxBuildHasher>;

#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) scope: Scope,
    pub(crate) kind: TargetKind,
    pub(crate) subject: Subject,
    /// Read by every fan-out, written by joins and leaves. Dense storage so fan-out walks
    /// a contiguous array.
    members: RwLock<Members>,
    /// An async mutex because it is held across the bus subscribe: concurrent first
    /// joiners wait for the one subscription instead of each making their own.
    pub(crate) subscription: tokio::sync::Mutex<SubState>,
    /// When the last member left, in milliseconds of the hub's clock; 0 while it has members.
    emptied_at: AtomicU64,
    /// For groups with history: where live delivery stands. Taken by the group's dispatcher
    /// for each stored message, and by a repair while it fetches what was missed.
    pub(crate) history: parking_lot::Mutex<HistoryCursor>,
    /// For groups of apps with presence events: the changes to tell (boxed: most targets
    /// never need it).
    pub(crate) presence: parking_lot::Mutex<Option<Box<super::presence::PresenceState>>>,
}

/// The order of a group's stored messages as delivered to its members here.
#[derive(Debug, Default)]
pub(crate) struct HistoryCursor {
    /// The position of the last stored message delivered; None before the first.
    pub(crate) last: Option<u64>,
    /// While a repair fetches missed messages: live ones that arrived meanwhile.
    pub(crate) held: Option<Vec<(signalbox_bus::Position, signalbox_proto::wire::Envelope)>>,
}

impl Target {
    pub(crate) fn new(scope: Scope, kind: TargetKind, subject: Subject) -> Self {
        Self {
            scope,
            kind,
            subject,
            members: RwLock::new(IndexMap::default()),
            subscription: tokio::sync::Mutex::new(SubState::Idle),
            emptied_at: AtomicU64::new(0),
            history: parking_lot::Mutex::default(),
            presence: parking_lot::Mutex::default(),
        }
    }

    /// Adds a member. Must be called under the hub's shard lock (see `Hub::add_member`).
    pub(crate) fn insert(&self, conn: &Arc<Conn>) {
        self.members.write().insert(conn.key, Arc::clone(conn));
        self.emptied_at.store(0, Ordering::Relaxed);
    }

    /// Removes a member; records when the target became empty.
    pub(crate) fn remove(&self, key: ConnKey, now_ms: u64) {
        let mut members = self.members.write();
        if members.swap_remove(&key).is_some() && members.is_empty() {
            // 0 means "has members": never store it for an empty target.
            self.emptied_at.store(now_ms.max(1), Ordering::Relaxed);
        }
    }

    /// Runs `f` over the members under the read lock (the fan-out path).
    pub(crate) fn with_members<R>(&self, f: impl FnOnce(&Members) -> R) -> R {
        f(&self.members.read())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.read().is_empty()
    }

    /// Whether the target has been empty since before `deadline_ms`.
    pub(crate) fn empty_since_before(&self, deadline_ms: u64) -> bool {
        let emptied = self.emptied_at.load(Ordering::Relaxed);
        emptied != 0 && emptied <= deadline_ms && self.is_empty()
    }

    pub(crate) fn group(&self) -> Option<&GroupName> {
        match &self.kind {
            TargetKind::Group(g) => Some(g),
            _ => None,
        }
    }
}

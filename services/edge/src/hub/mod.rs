//! The hub: every connection of this node, the targets (hub-wide "all", groups, users)
//! they are members of, and the node's interest in the routing plane.
//!
//! Interest follows membership: a target's subject is subscribed when its first local
//! member joins and unsubscribed by the sweeper once it has been empty for the linger
//! period. Nothing is subscribed that no local connection needs.
//!
//! # Locks
//! Targets live in sharded maps keyed by subject. A member is added under the shard's read
//! lock (or write lock when the target is new), and a target is retired under the shard's
//! write lock only if it is still empty — so a join and a retirement can never interleave.
//! A connection's `groups` mutex is taken before any shard lock, never after.

mod fanout;
pub(crate) use fanout::Outgoing;
mod history;
mod presence;
mod presence_users;
pub(crate) use presence::{Notice, PresenceFlush};
pub(crate) use presence_users::UserChange;
mod recovery;
pub(crate) mod target;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxBuildHasher;
use signalbox_bus::{Bus, BusError, Inbox, Interest, Journal};
use signalbox_core::{AppId, CloseCode, ConnectionId, GroupName, UserId};
use signalbox_proto::Subject;

use crate::config::EdgeConfig;
use crate::conn::{Conn, ConnKey};
use crate::outbox::CloseRequest;
pub(crate) use target::{SubState, Target, TargetKind};

const SHARDS: usize = 16;

/// A map split into [`SHARDS`] independently locked parts.
type Sharded<K, V> = Box<[RwLock<HashMap<K, V, FxBuildHasher>>]>;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The app has `max_connections` on this node.
    AppFull,
    /// This node has `max_connections` in total.
    NodeFull,
    /// A connection of the app with this id is registered here already: an id handed out
    /// before the connection exists (by a negotiate) can be named by whoever holds its connection
    /// token, so registering must never replace one.
    IdInUse,
}

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JoinError {
    #[error("the connection is already in {0} groups")]
    TooManyGroups(u32),
    #[error("the connection is closing")]
    Closing,
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl JoinError {
    /// How a connection that cannot join its first groups is closed: retrying cannot help
    /// with too many groups (4004), it may with a routing plane that is down (1013).
    pub(crate) fn close_request(&self) -> CloseRequest {
        match self {
            Self::TooManyGroups(_) => CloseRequest::new(CloseCode::TooManyGroups, self.to_string()),
            Self::Closing => CloseRequest::default_for(CloseCode::Normal),
            Self::Bus(_) => CloseRequest::new(CloseCode::TryAgainLater, "cannot subscribe right now; retry"),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) config: Arc<EdgeConfig>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) journal: Arc<dyn Journal>,
    /// One interest per dispatcher; a subject always goes to the same one, so its
    /// messages stay in order.
    interests: Vec<Arc<dyn Interest>>,
    targets: Sharded<Subject, Arc<Target>>,
    /// By app and id: a client of one app can never name a connection of another.
    connections: Sharded<(AppId, ConnectionId), Arc<Conn>>,
    /// Connections per app on this node, for the app's `max_connections`.
    per_app: Mutex<HashMap<AppId, u32, FxBuildHasher>>,
    total: AtomicUsize,
    next_key: AtomicU64,
    started: Instant,
    /// When this node started, in Unix milliseconds (in its heartbeats).
    pub(crate) started_at_millis: u64,
    /// Group targets with presence changes to publish and deliver.
    pub(crate) presence_queue: Mutex<Vec<Arc<Target>>>,
    /// The other edges, by their heartbeats.
    pub(crate) peers: presence::Peers,
}

fn shard_of<T: Hash + ?Sized>(value: &T) -> usize {
    (FxBuildHasher.hash_one(value) as usize) % SHARDS
}

impl Hub {
    /// A hub with `dispatchers` inboxes; the caller runs one dispatcher per inbox.
    pub(crate) fn new(
        config: Arc<EdgeConfig>,
        bus: Arc<dyn Bus>,
        journal: Arc<dyn Journal>,
        dispatchers: usize,
    ) -> (Arc<Self>, Vec<Inbox>) {
        let (interests, inboxes) = (0..dispatchers.max(1)).map(|_| bus.open_inbox()).unzip();
        let hub = Self {
            config,
            bus,
            journal,
            interests,
            targets: (0..SHARDS).map(|_| RwLock::default()).collect(),
            connections: (0..SHARDS).map(|_| RwLock::default()).collect(),
            per_app: Mutex::default(),
            total: AtomicUsize::new(0),
            next_key: AtomicU64::new(1),
            started: Instant::now(),
            started_at_millis: u64::try_from(signalbox_core::clock::unix_millis()).unwrap_or_default(),
            presence_queue: Mutex::default(),
            peers: presence::Peers::default(),
        };
        (Arc::new(hub), inboxes)
    }

    /// Milliseconds since the hub started.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Seconds since the hub started (the heartbeat clock).
    pub(crate) fn now_secs(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    pub(crate) fn next_key(&self) -> ConnKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// The interest (dispatcher) a subject belongs to.
    pub(crate) fn interest_for(&self, subject: &Subject) -> &Arc<dyn Interest> {
        &self.interests[(FxBuildHasher.hash_one(subject) as usize) % self.interests.len()]
    }

    /// Admits and registers a connection, or refuses it when a limit is reached.
    pub(crate) fn register(&self, conn: &Arc<Conn>) -> Result<(), Refusal> {
        // The shard stays locked from the check to the insert, so two opens of one id cannot
        // both pass.
        let key = (conn.scope.app.clone(), conn.id.clone());
        let mut shard = self.connections[shard_of(&key)].write();
        if shard.contains_key(&key) {
            return Err(Refusal::IdInUse);
        }
        {
            let mut per_app = self.per_app.lock();
            let count = per_app.entry(conn.scope.app.clone()).or_insert(0);
            if *count >= conn.settings.limits.max_connections {
                return Err(Refusal::AppFull);
            }
            if self.total.fetch_add(1, Ordering::Relaxed) >= self.config.max_connections {
                self.total.fetch_sub(1, Ordering::Relaxed);
                return Err(Refusal::NodeFull);
            }
            *count += 1;
            self.app_gauge(&conn.scope.app, *count);
        }
        shard.insert(key, Arc::clone(conn));
        metrics::gauge!("signalbox_connections").increment(1.0);
        Ok(())
    }

    /// Sets the per-app connection gauge, for the apps the operator listed only.
    fn app_gauge(&self, app: &AppId, count: u32) {
        if self.config.metrics_apps.contains(app) {
            metrics::gauge!("signalbox_app_connections", "app" => app.to_string()).set(f64::from(count));
        }
    }

    /// The app's connection of this id, if it is on this node.
    pub(crate) fn connection(&self, app: &AppId, id: &str) -> Option<Arc<Conn>> {
        let key = (app.clone(), ConnectionId::new(id).ok()?);
        self.connections[shard_of(&key)].read().get(&key).cloned()
    }

    /// Calls `f` on every connection, one shard at a time under its read lock (`f` must be
    /// quick: a queue push or a close request).
    pub(crate) fn for_each_connection(&self, mut f: impl FnMut(&Arc<Conn>)) {
        for shard in self.connections.iter() {
            for conn in shard.read().values() {
                f(conn);
            }
        }
    }

    /// Puts a registered connection in its hub-wide target, its user's target and `groups`,
    /// and waits until the node is subscribed to all of them.
    pub(crate) async fn attach(&self, conn: &Arc<Conn>, groups: &[GroupName]) -> Result<(), JoinError> {
        let subjects = &self.config.subjects;
        let mut targets = vec![self.add_member(conn, TargetKind::All, subjects.all(&conn.scope))];
        if let Some(user) = &conn.user {
            targets.push(self.add_member(conn, TargetKind::User(user.clone()), subjects.user(&conn.scope, user)));
        }
        for target in &targets {
            self.ensure_subscribed(target).await?;
        }
        for group in groups {
            self.join(conn, group).await?;
        }
        Ok(())
    }

    /// Puts a connection in the target of the user it signed in as after connecting.
    pub(crate) async fn attach_user(&self, conn: &Arc<Conn>, user: &UserId) -> Result<(), JoinError> {
        let target = {
            let groups = conn.groups.lock();
            if groups.detached {
                return Err(JoinError::Closing);
            }
            self.add_member(conn, TargetKind::User(user.clone()), self.config.subjects.user(&conn.scope, user))
        };
        self.ensure_subscribed(&target).await?;
        Ok(())
    }

    /// Adds `conn` to `group`. Returns false if it was already a member. Idempotent.
    pub(crate) async fn join(&self, conn: &Arc<Conn>, group: &GroupName) -> Result<bool, JoinError> {
        let target = {
            let mut groups = conn.groups.lock();
            if groups.detached {
                return Err(JoinError::Closing);
            }
            if groups.names.contains(group) {
                return Ok(false);
            }
            let max = conn.settings.limits.max_groups_per_connection;
            if groups.names.len() >= max as usize {
                return Err(JoinError::TooManyGroups(max));
            }
            groups.names.push(group.clone());
            let subject = self.config.subjects.group(&conn.scope, group);
            let target = self.add_member(conn, TargetKind::Group(group.clone()), subject);
            self.presence_changed(&target, conn, true);
            target
        };
        if let Err(err) = self.ensure_subscribed(&target).await {
            self.leave(conn, group);
            return Err(err.into());
        }
        Ok(true)
    }

    /// Removes `conn` from `group`. Returns false if it was not a member.
    pub(crate) fn leave(&self, conn: &Arc<Conn>, group: &GroupName) -> bool {
        let mut groups = conn.groups.lock();
        let Some(pos) = groups.names.iter().position(|g| g == group) else { return false };
        groups.names.swap_remove(pos);
        let subject = self.config.subjects.group(&conn.scope, group);
        if let Some(target) = self.remove_member(conn, &subject) {
            self.presence_changed(&target, conn, false);
        }
        drop(groups);
        conn.recovery.cancel(group);
        true
    }

    /// Takes a connection out of every target and the registry. Safe to call twice.
    pub(crate) fn detach(&self, conn: &Arc<Conn>) {
        let groups = {
            let mut groups = conn.groups.lock();
            if groups.detached {
                return;
            }
            groups.detached = true;
            std::mem::take(&mut groups.names)
        };
        let subjects = &self.config.subjects;
        for group in &groups {
            if let Some(target) = self.remove_member(conn, &subjects.group(&conn.scope, group)) {
                self.presence_changed(&target, conn, false);
            }
        }
        if let Some(user) = conn.target_user() {
            self.remove_member(conn, &subjects.user(&conn.scope, user));
        }
        self.remove_member(conn, &subjects.all(&conn.scope));
        let key = (conn.scope.app.clone(), conn.id.clone());
        let removed = {
            let mut shard = self.connections[shard_of(&key)].write();
            // Only this very connection: never another one that took the id since.
            shard.get(&key).is_some_and(|c| c.key == conn.key) && shard.remove(&key).is_some()
        };
        if removed {
            self.total.fetch_sub(1, Ordering::Relaxed);
            let mut per_app = self.per_app.lock();
            if let Some(count) = per_app.get_mut(&conn.scope.app) {
                *count = count.saturating_sub(1);
                self.app_gauge(&conn.scope.app, *count);
                if *count == 0 {
                    per_app.remove(&conn.scope.app);
                }
            }
            metrics::gauge!("signalbox_connections").decrement(1.0);
        }
    }

    /// The target of `subject`, if this node has one.
    pub(crate) fn target(&self, subject: &Subject) -> Option<Arc<Target>> {
        self.targets[shard_of(subject)].read().get(subject).cloned()
    }

    /// Adds a member to the target of `subject`, creating the target if needed.
    fn add_member(&self, conn: &Arc<Conn>, kind: TargetKind, subject: Subject) -> Arc<Target> {
        let shard = &self.targets[shard_of(&subject)];
        {
            let map = shard.read();
            if let Some(target) = map.get(&subject) {
                target.insert(conn);
                return Arc::clone(target);
            }
        }
        let mut map = shard.write();
        let target = map
            .entry(subject.clone())
            .or_insert_with(|| Arc::new(Target::new(conn.scope.clone(), kind, subject)))
            .clone();
        target.insert(conn);
        target
    }

    /// Removes a member from the target of `subject`; returns the target.
    fn remove_member(&self, conn: &Conn, subject: &Subject) -> Option<Arc<Target>> {
        let target = self.target(subject)?;
        target.remove(conn.key, self.now_ms());
        Some(target)
    }

    /// Subscribes the target's subject unless it already is; concurrent callers share one
    /// subscription.
    async fn ensure_subscribed(&self, target: &Arc<Target>) -> Result<(), BusError> {
        let mut state = target.subscription.lock().await;
        if *state == SubState::Idle {
            let id = self.interest_for(&target.subject).subscribe(target.subject.clone(), None).await?;
            *state = SubState::Subscribed(id);
            metrics::gauge!("signalbox_interest_subscriptions").increment(1.0);
        }
        Ok(())
    }

    /// Retires targets that have been empty for longer than the linger period.
    pub(crate) fn retire_idle_targets(&self) -> usize {
        let linger = u64::try_from(self.config.interest_linger.as_millis()).unwrap_or(u64::MAX);
        let deadline = self.now_ms().saturating_sub(linger);
        let mut retired = 0;
        for shard in self.targets.iter() {
            let candidates: Vec<Subject> =
                shard.read().iter().filter(|(_, t)| t.empty_since_before(deadline)).map(|(s, _)| s.clone()).collect();
            if candidates.is_empty() {
                continue;
            }
            let mut map = shard.write();
            for subject in candidates {
                let Some(target) = map.get(&subject) else { continue };
                if !target.empty_since_before(deadline) {
                    continue;
                }
                // A join is subscribing right now: leave it for the next sweep.
                let Ok(mut state) = target.subscription.try_lock() else { continue };
                if let SubState::Subscribed(id) = *state {
                    self.interest_for(&subject).unsubscribe(id);
                    metrics::gauge!("signalbox_interest_subscriptions").decrement(1.0);
                }
                *state = SubState::Retired;
                drop(state);
                map.remove(&subject);
                retired += 1;
            }
        }
        retired
    }

    /// Every target, for sweeps (a snapshot, taken shard by shard).
    pub(crate) fn targets(&self) -> Vec<Arc<Target>> {
        self.targets.iter().flat_map(|shard| shard.read().values().cloned().collect::<Vec<_>>()).collect()
    }

    /// Number of targets (subscribed or lingering), for tests and metrics.
    pub(crate) fn target_count(&self) -> usize {
        self.targets.iter().map(|s| s.read().len()).sum()
    }
}

//! The journal in process, for `signalbox serve`: the same contract as JetStream — positions
//! per app, a predecessor per group, retention by age and count, delivery in position order on
//! the live subjects of a [`LocalBus`], and history that survives a restart.
//!
//! The state is held in memory and every change is written through to a SQLite file
//! ([`disk`](super::disk)) before it is acknowledged; opening the file loads it back, so a
//! restarted server has the same messages, positions and chains as before.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use signalbox_core::AppId;
use signalbox_core::clock::unix_millis;
use signalbox_proto::{Subject, Subjects};

use super::disk::{Disk, DiskError, LoadedApp, NewMessage};
use super::{Appended, Bounds, Journal, Retention, Stored};
use crate::{BoxFuture, BusError, LocalBus, Position};

#[derive(Debug, Clone)]
pub struct LocalJournal {
    bus: LocalBus,
    subjects: Subjects,
    disk: Disk,
    /// One history per app. An async mutex per app: it is held while a message is written to
    /// disk and handed to the bus, so storage and delivery follow position order; the map's
    /// own lock is held only to find or create an app's history.
    apps: Arc<parking_lot::Mutex<HashMap<AppId, Arc<tokio::sync::Mutex<AppHistory>>>>>,
}

#[derive(Debug)]
struct AppHistory {
    /// Whether the app's row exists on disk yet.
    saved: bool,
    origin: u64,
    retention: Retention,
    next_seq: u64,
    messages: BTreeMap<u64, StoredMessage>,
    /// Each group's stored positions, oldest first.
    groups: HashMap<Subject, VecDeque<u64>>,
    /// Each group's last position ever stored (survives the removal of the messages).
    last: HashMap<Subject, u64>,
    /// `dedup_id` → (position, stored at, Unix ms).
    dedup: HashMap<String, (u64, i64)>,
    /// Positions retention removed from memory and not yet from disk.
    unwritten_removals: Vec<u64>,
}

#[derive(Debug)]
struct StoredMessage {
    subject: Subject,
    previous: u64,
    /// Unix ms (wall clock: it must mean the same after a restart).
    stored_at: i64,
    payload: Bytes,
}

impl AppHistory {
    fn new(retention: Retention) -> Self {
        // Starting from the clock keeps every position above those of any earlier history of
        // this app (one removed, or a lost file), so an old position can never hide a new
        // message and reads as a reset.
        let origin = signalbox_core::clock::unix_micros().max(1);
        Self {
            saved: false,
            origin,
            retention,
            next_seq: origin,
            messages: BTreeMap::new(),
            groups: HashMap::new(),
            last: HashMap::new(),
            dedup: HashMap::new(),
            unwritten_removals: Vec::new(),
        }
    }

    /// Rebuilds a history from disk; retention is applied again by the caller.
    fn loaded(app: LoadedApp) -> Self {
        let mut history = Self { saved: true, origin: app.origin, next_seq: app.origin, ..Self::new(app.retention) };
        for (subject, last) in app.groups {
            let Ok(subject) = Subject::new(&subject) else { continue };
            history.next_seq = history.next_seq.max(last + 1);
            history.last.insert(subject, last);
        }
        let now = unix_millis();
        let window = i64::try_from(app.retention.dedup_window().as_millis()).unwrap_or(i64::MAX);
        for message in app.messages {
            let Ok(subject) = Subject::new(&message.subject) else { continue };
            history.next_seq = history.next_seq.max(message.seq + 1);
            if now.saturating_sub(message.stored_at_ms) < window {
                history.dedup.insert(message.dedup_id, (message.seq, message.stored_at_ms));
            }
            history.groups.entry(subject.clone()).or_default().push_back(message.seq);
            history.messages.insert(
                message.seq,
                StoredMessage {
                    subject,
                    previous: message.previous,
                    stored_at: message.stored_at_ms,
                    payload: message.payload,
                },
            );
        }
        history
    }

    /// Drops what retention no longer keeps by age (the oldest first), and forgets old
    /// `dedup_id`s.
    fn trim(&mut self, now: i64) {
        let max_age = i64::try_from(self.retention.max_age.as_millis()).unwrap_or(i64::MAX);
        while let Some((&seq, message)) = self.messages.first_key_value() {
            if now.saturating_sub(message.stored_at) < max_age {
                break;
            }
            let subject = message.subject.clone();
            self.messages.remove(&seq);
            self.unwritten_removals.push(seq);
            if let Some(group) = self.groups.get_mut(&subject) {
                group.retain(|s| *s != seq);
            }
        }
        let window = i64::try_from(self.retention.dedup_window().as_millis()).unwrap_or(i64::MAX);
        self.dedup.retain(|_, (_, at)| now.saturating_sub(*at) < window);
    }

    /// Drops a group's oldest messages beyond the retention count.
    fn evict(&mut self, subject: &Subject) {
        let max = self.retention.max_messages as usize;
        let Some(group) = self.groups.get_mut(subject) else { return };
        if group.len() <= max {
            return;
        }
        let evicted: Vec<u64> = group.drain(..group.len() - max).collect();
        for seq in evicted {
            self.messages.remove(&seq);
            self.unwritten_removals.push(seq);
        }
    }

    /// Applies the whole retention to every group (after loading, or a new retention).
    fn trim_all(&mut self, now: i64) {
        self.trim(now);
        let subjects: Vec<Subject> = self.groups.keys().cloned().collect();
        for subject in &subjects {
            self.evict(subject);
        }
    }
}

impl LocalJournal {
    /// Opens the journal stored at `path` (created if missing) and loads what it kept.
    pub async fn open(bus: LocalBus, subjects: Subjects, path: &Path) -> Result<Self, DiskError> {
        let disk = Disk::open(path).await?;
        let mut apps = HashMap::new();
        let now = unix_millis();
        for loaded in disk.load().await? {
            let Ok(app) = AppId::new(&loaded.app) else { continue };
            let mut history = AppHistory::loaded(loaded);
            history.trim_all(now);
            let removed = std::mem::take(&mut history.unwritten_removals);
            disk.remove_messages(app.as_str(), &removed).await?;
            apps.insert(app, Arc::new(tokio::sync::Mutex::new(history)));
        }
        Ok(Self { bus, subjects, disk, apps: Arc::new(parking_lot::Mutex::new(apps)) })
    }

    fn history(&self, app: &AppId, retention: Retention) -> Arc<tokio::sync::Mutex<AppHistory>> {
        Arc::clone(
            self.apps
                .lock()
                .entry(app.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(AppHistory::new(retention)))),
        )
    }

    fn existing(&self, app: &AppId) -> Option<Arc<tokio::sync::Mutex<AppHistory>>> {
        self.apps.lock().get(app).cloned()
    }

    async fn save_app(&self, app: &AppId, history: &mut AppHistory) -> Result<(), BusError> {
        self.disk.save_app(app.as_str(), history.origin, history.retention).await.map_err(unavailable)?;
        history.saved = true;
        Ok(())
    }
}

/// A history file that cannot be written: nothing was stored.
fn unavailable(err: DiskError) -> BusError {
    tracing::error!(error = %err, "cannot write the history file");
    BusError::Transport(Box::new(err))
}

impl Journal for LocalJournal {
    fn configure(&self, app: &AppId, retention: Retention) -> BoxFuture<'_, Result<(), BusError>> {
        let history = self.history(app, retention);
        let app = app.clone();
        Box::pin(async move {
            let mut history = history.lock().await;
            let changed = history.retention != retention || !history.saved;
            history.retention = retention;
            history.trim_all(unix_millis());
            if changed {
                self.save_app(&app, &mut history).await?;
            }
            Ok(())
        })
    }

    fn append(
        &self,
        app: &AppId,
        retention: Retention,
        subject: Subject,
        payload: Bytes,
        dedup_id: String,
    ) -> BoxFuture<'_, Result<Appended, BusError>> {
        let history = self.history(app, retention);
        let app = app.clone();
        Box::pin(async move {
            let live = self.subjects.live_of_history(&subject).ok_or(BusError::InvalidSubject)?;
            let mut history = history.lock().await;
            let now = unix_millis();
            history.trim(now);
            if let Some(&(seq, _)) = history.dedup.get(&dedup_id) {
                return Ok(Appended { seq, duplicate: true });
            }
            if !history.saved {
                self.save_app(&app, &mut history).await?;
            }
            let seq = history.next_seq;
            let previous = history.last.get(&subject).copied().unwrap_or(0);
            // Stored durably first: nothing is acknowledged or delivered that a restart loses.
            let message = NewMessage {
                seq,
                subject: subject.as_str(),
                previous,
                stored_at_ms: now,
                dedup_id: &dedup_id,
                payload: &payload,
            };
            self.disk.append(app.as_str(), message, &history.unwritten_removals).await.map_err(unavailable)?;
            history.unwritten_removals.clear();
            history.next_seq += 1;
            history.last.insert(subject.clone(), seq);
            history.messages.insert(
                seq,
                StoredMessage { subject: subject.clone(), previous, stored_at: now, payload: payload.clone() },
            );
            history.groups.entry(subject.clone()).or_default().push_back(seq);
            history.dedup.insert(dedup_id, (seq, now));
            // Count retention for this group now; written to disk with the next append.
            history.evict(&subject);
            // Delivered while the app's history is locked, so deliveries follow positions.
            self.bus.publish_positioned(live, payload, Position { seq, previous }).await;
            Ok(Appended { seq, duplicate: false })
        })
    }

    fn read(
        &self,
        app: &AppId,
        subject: &Subject,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Stored>, BusError>> {
        let history = self.existing(app);
        let subject = subject.clone();
        Box::pin(async move {
            let Some(history) = history else { return Ok(Vec::new()) };
            let mut history = history.lock().await;
            history.trim(unix_millis());
            let Some(group) = history.groups.get(&subject) else { return Ok(Vec::new()) };
            let stored = group
                .iter()
                .filter(|&&seq| seq > after)
                .take(limit)
                .filter_map(|seq| history.messages.get(seq).map(|m| (seq, m)))
                .map(|(&seq, m)| Stored {
                    position: Position { seq, previous: m.previous },
                    payload: m.payload.clone(),
                })
                .collect();
            Ok(stored)
        })
    }

    fn bounds(&self, app: &AppId) -> BoxFuture<'_, Result<Option<Bounds>, BusError>> {
        let history = self.existing(app);
        Box::pin(async move {
            let Some(history) = history else { return Ok(None) };
            let mut history = history.lock().await;
            history.trim(unix_millis());
            let first = history.messages.first_key_value().map_or(history.next_seq, |(&seq, _)| seq);
            Ok(Some(Bounds { origin: history.origin, first }))
        })
    }

    fn remove(&self, app: &AppId) -> BoxFuture<'_, Result<(), BusError>> {
        let removed = self.apps.lock().remove(app);
        let app = app.clone();
        Box::pin(async move {
            // Wait for an append in flight to finish before its rows are deleted.
            if let Some(history) = removed {
                let _settled = history.lock().await;
            }
            self.disk.remove_app(app.as_str()).await.map_err(unavailable)
        })
    }
}

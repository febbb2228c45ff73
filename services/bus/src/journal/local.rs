//! The journal in process, for `signalbox serve`: the same contract as JetStream — positions
//! per app, a predecessor per group, retention by age and count, and delivery in position order
//! on the live subjects of a [`LocalBus`] — kept in memory: the embedded mode's history does
//! not outlive the process, and positions start from the clock so they still only grow.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use signalbox_core::AppId;
use signalbox_proto::{Subject, Subjects};

use super::{Appended, Journal, Retention, Stored};
use crate::{BoxFuture, BusError, LocalBus, Position};

#[derive(Debug, Clone)]
pub struct LocalJournal {
    bus: LocalBus,
    subjects: Subjects,
    /// One history per app. An async mutex per app: it is held while a stored message is handed
    /// to the bus, so delivery follows position order; the map's own lock is held only to find
    /// or create an app's history.
    apps: Arc<parking_lot::Mutex<HashMap<AppId, Arc<tokio::sync::Mutex<AppHistory>>>>>,
}

#[derive(Debug)]
struct AppHistory {
    retention: Retention,
    next_seq: u64,
    messages: BTreeMap<u64, StoredMessage>,
    /// Each group's stored positions, oldest first.
    groups: HashMap<Subject, VecDeque<u64>>,
    /// Each group's last position ever stored (survives the removal of the messages).
    last: HashMap<Subject, u64>,
    dedup: HashMap<String, (u64, Instant)>,
}

#[derive(Debug)]
struct StoredMessage {
    subject: Subject,
    previous: u64,
    stored_at: Instant,
    payload: Bytes,
}

impl AppHistory {
    fn new(retention: Retention) -> Self {
        Self {
            retention,
            // History here does not outlive the process: starting from the clock keeps every
            // position above those of an earlier run, so a client's old position can never
            // hide a new message, and a recovery across a restart reports the loss.
            next_seq: signalbox_core::clock::unix_micros().max(1),
            messages: BTreeMap::new(),
            groups: HashMap::new(),
            last: HashMap::new(),
            dedup: HashMap::new(),
        }
    }

    /// Drops what retention no longer keeps: too old, or beyond a group's count.
    fn trim(&mut self, now: Instant) {
        while let Some((&seq, message)) = self.messages.first_key_value() {
            if now.duration_since(message.stored_at) < self.retention.max_age {
                break;
            }
            let subject = message.subject.clone();
            self.messages.remove(&seq);
            if let Some(group) = self.groups.get_mut(&subject) {
                group.retain(|s| *s != seq);
            }
        }
        let window = self.retention.dedup_window();
        self.dedup.retain(|_, (_, at)| now.duration_since(*at) < window);
    }
}

impl LocalJournal {
    pub fn new(bus: LocalBus, subjects: Subjects) -> Self {
        Self { bus, subjects, apps: Arc::default() }
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
}

impl Journal for LocalJournal {
    fn configure(&self, app: &AppId, retention: Retention) -> BoxFuture<'_, Result<(), BusError>> {
        let history = self.history(app, retention);
        Box::pin(async move {
            let mut history = history.lock().await;
            history.retention = retention;
            history.trim(Instant::now());
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
        Box::pin(async move {
            let live = self.subjects.live_of_history(&subject).ok_or(BusError::InvalidSubject)?;
            let mut history = history.lock().await;
            let now = Instant::now();
            history.trim(now);
            if let Some(&(seq, _)) = history.dedup.get(&dedup_id) {
                return Ok(Appended { seq, duplicate: true });
            }
            let seq = history.next_seq;
            history.next_seq += 1;
            let previous = history.last.insert(subject.clone(), seq).unwrap_or(0);
            let message =
                StoredMessage { subject: subject.clone(), previous, stored_at: now, payload: payload.clone() };
            history.messages.insert(seq, message);
            let max = history.retention.max_messages as usize;
            let group = history.groups.entry(subject).or_default();
            group.push_back(seq);
            let evicted: Vec<u64> =
                if group.len() > max { group.drain(..group.len() - max).collect() } else { Vec::new() };
            for old in evicted {
                history.messages.remove(&old);
            }
            history.dedup.insert(dedup_id, (seq, now));
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
            history.trim(Instant::now());
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

    fn first_position(&self, app: &AppId) -> BoxFuture<'_, Result<Option<u64>, BusError>> {
        let history = self.existing(app);
        Box::pin(async move {
            let Some(history) = history else { return Ok(None) };
            let mut history = history.lock().await;
            history.trim(Instant::now());
            Ok(Some(history.messages.first_key_value().map_or(history.next_seq, |(&seq, _)| seq)))
        })
    }

    fn remove(&self, app: &AppId) -> BoxFuture<'_, Result<(), BusError>> {
        self.apps.lock().remove(app);
        Box::pin(async { Ok(()) })
    }
}

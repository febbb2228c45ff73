//! Group history: a [`Journal`] stores messages of groups with history, assigns their positions
//! at the one place where their order is decided, and delivers them live *from* that order.
//!
//! # Contract
//! - **append** stores a message at the end of its group's history. `Ok` means stored durably.
//!   The message is then delivered on the group's live subject (`…m.{app}…`) to the bus's
//!   subscribers, after every message of the app stored before it, carrying its
//!   [`Position`](crate::Position): its own position and the position of the group's previous
//!   message. Two appenders racing on one group cannot both claim the same predecessor: the
//!   chain of `previous` positions is exact.
//! - A repeat of the same `dedup_id` within the dedup window returns the original position
//!   with `duplicate` set, and is neither stored nor delivered again.
//! - **read** returns a group's stored messages after a position, oldest first, each with its
//!   position and predecessor.
//! - **first_position** is the app's oldest stored position: every message stored after it is
//!   still stored (retention removes the oldest first), which lets a reader tell "nothing was
//!   published" from "it expired".
//!
//! Two implementations: [`NatsJournal`] (one JetStream stream per app, republishing to the live
//! subjects) and [`LocalJournal`] (in process, for `signalbox serve`), one conformance suite.

mod local;
mod nats;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use signalbox_core::AppId;
use signalbox_proto::Subject;

pub use local::LocalJournal;
pub use nats::NatsJournal;

use crate::{BoxFuture, BusError, Position};

/// How much of a group's history is kept: the oldest go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_messages: u32,
}

impl From<&signalbox_core::settings::HistorySettings> for Retention {
    fn from(settings: &signalbox_core::settings::HistorySettings) -> Self {
        Self { max_age: Duration::from_secs(u64::from(settings.max_age_seconds)), max_messages: settings.max_messages }
    }
}

impl Retention {
    /// The window within which a repeated `dedup_id` is recognised (at most the retention age).
    pub fn dedup_window(&self) -> Duration {
        self.max_age.min(Duration::from_secs(300))
    }
}

/// A stored message, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub position: Position,
    pub payload: Bytes,
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// The `dedup_id` was seen before: `seq` is the original message's position.
    pub duplicate: bool,
}

/// Group history. See the module docs for the contract.
pub trait Journal: Send + Sync + fmt::Debug + 'static {
    /// Creates or updates the app's history with `retention` (idempotent).
    fn configure(&self, app: &AppId, retention: Retention) -> BoxFuture<'_, Result<(), BusError>>;

    /// Stores `payload` on the history subject `subject` of `app` (see `Subjects::history`),
    /// creating the app's history with `retention` if needed.
    fn append(
        &self,
        app: &AppId,
        retention: Retention,
        subject: Subject,
        payload: Bytes,
        dedup_id: String,
    ) -> BoxFuture<'_, Result<Appended, BusError>>;

    /// Up to `limit` stored messages of `subject` after position `after`, oldest first.
    fn read(
        &self,
        app: &AppId,
        subject: &Subject,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Stored>, BusError>>;

    /// The position of the app's oldest stored message; when nothing is stored, the position
    /// the next message will get; `None` when the app has no history here at all. Positions
    /// only grow, even across a lost or recreated history (they then start from the clock), so
    /// a client's old position never hides a new message.
    fn first_position(&self, app: &AppId) -> BoxFuture<'_, Result<Option<u64>, BusError>>;

    /// Removes the app's history.
    fn remove(&self, app: &AppId) -> BoxFuture<'_, Result<(), BusError>>;
}

/// Whether a reader that last saw position `after` of a group missed nothing, given the first
/// stored message after it (if any) and the app's oldest stored position (None: no history).
pub fn continuous(after: u64, first_after: Option<&Stored>, first_position: Option<u64>) -> bool {
    match (first_after, first_position) {
        // The first message still stored after `after` says which message came before it.
        (Some(stored), _) => stored.position.previous <= after,
        // Nothing stored after `after`: nothing was published, unless it already expired —
        // which retention can only have done if it removed everything up to there.
        (None, Some(first)) => first <= after + 1,
        // No history at all: a reader that saw nothing missed nothing; one that saw positions
        // saw a history that is gone.
        (None, None) => after == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: u64, previous: u64) -> Stored {
        Stored { position: Position { seq, previous }, payload: Bytes::new() }
    }

    #[test]
    fn continuity() {
        assert!(continuous(5, Some(&stored(9, 5)), Some(1)), "the next message follows 5");
        assert!(!continuous(5, Some(&stored(9, 7)), Some(1)), "7 was missed");
        assert!(continuous(0, Some(&stored(3, 0)), Some(1)), "from the beginning");
        assert!(!continuous(0, Some(&stored(30, 12)), Some(20)), "older ones expired");
        assert!(continuous(10, None, Some(11)), "nothing after 10 was ever stored");
        assert!(!continuous(5, None, Some(11)), "6..10 expired");
        assert!(continuous(0, None, None), "a new group: nothing to miss");
        assert!(!continuous(7, None, None), "a position of a history that is gone");
    }
}

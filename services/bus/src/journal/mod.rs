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
//! - **bounds** are where the app's history began (its *origin*: positions below it belong to a
//!   history that is gone) and its oldest stored position (every message stored after it is
//!   still stored: retention removes the oldest first). They let a reader tell "nothing was
//!   published" from "it expired" and from "that history was lost".
//! - History outlives the process: both implementations store it durably, so positions and
//!   messages survive a restart.
//!
//! Two implementations: [`NatsJournal`] (one JetStream stream per app, republishing to the live
//! subjects) and [`LocalJournal`] (in process with a SQLite file beside the embedded mode's
//! database, for `signalbox serve`), one conformance suite.

mod disk;
mod local;
mod nats;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use signalbox_core::AppId;
use signalbox_proto::Subject;

pub use disk::DiskError;
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

    /// Where the app's history began and what of it is kept; `None` when the app has no
    /// history here at all. Positions only grow, even across a lost or recreated history (a
    /// new one starts from the clock), so a client's old position never hides a new message.
    fn bounds(&self, app: &AppId) -> BoxFuture<'_, Result<Option<Bounds>, BusError>>;

    /// Removes the app's history.
    fn remove(&self, app: &AppId) -> BoxFuture<'_, Result<(), BusError>>;
}

/// Where an app's history begins and what of it is still stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The first position this history assigned (or will assign): every position it ever gave
    /// out is at least this, so a smaller one was given out by a history that is gone.
    pub origin: u64,
    /// The oldest position still stored; when nothing is stored, the position the next
    /// message will get.
    pub first: u64,
}

/// Whether a reader that last saw position `after` of a group missed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// Everything stored after `after` follows it without a gap.
    Complete,
    /// Retention removed messages the reader had not seen.
    Expired,
    /// `after` was given out by a history that no longer exists.
    Reset,
}

/// Decides [`Continuity`] for a reader that last saw `after` (0: nothing yet), given the first
/// message stored after it (if any) and the app's [`Bounds`] (`None`: no history at all).
pub fn continuity(after: u64, first_after: Option<&Stored>, bounds: Option<Bounds>) -> Continuity {
    let Some(bounds) = bounds else {
        // No history: a reader that saw nothing missed nothing; one that saw positions saw a
        // history that is gone.
        return if after == 0 { Continuity::Complete } else { Continuity::Reset };
    };
    if after != 0 && after < bounds.origin {
        return Continuity::Reset;
    }
    match first_after {
        // The first message still stored after `after` says which message came before it.
        Some(stored) if stored.position.previous <= after => Continuity::Complete,
        Some(_) => Continuity::Expired,
        // Nothing stored after `after`: nothing was published, unless it already expired —
        // which retention can only have done if it removed everything up to there.
        None if bounds.first <= after + 1 => Continuity::Complete,
        None => Continuity::Expired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: u64, previous: u64) -> Stored {
        Stored { position: Position { seq, previous }, payload: Bytes::new() }
    }

    #[test]
    fn continuity_of_a_reader() {
        use Continuity::*;
        let kept = |origin, first| Some(Bounds { origin, first });
        assert_eq!(continuity(5, Some(&stored(9, 5)), kept(1, 1)), Complete, "the next message follows 5");
        assert_eq!(continuity(5, Some(&stored(9, 7)), kept(1, 1)), Expired, "7 was missed");
        assert_eq!(continuity(0, Some(&stored(3, 0)), kept(1, 1)), Complete, "from the beginning");
        assert_eq!(continuity(0, Some(&stored(30, 12)), kept(1, 20)), Expired, "older ones expired");
        assert_eq!(continuity(10, None, kept(1, 11)), Complete, "nothing after 10 was ever stored");
        assert_eq!(continuity(5, None, kept(1, 11)), Expired, "6..10 expired");
        assert_eq!(continuity(0, None, None), Complete, "a new group: nothing to miss");
        assert_eq!(continuity(7, None, None), Reset, "a position of a history that is gone");
    }

    #[test]
    fn a_position_from_before_the_history_began_is_a_reset() {
        use Continuity::*;
        // A history lost and begun again at 1000: its first message names no predecessor,
        // which alone would look like "nothing was missed".
        let new_history = Some(Bounds { origin: 1000, first: 1000 });
        assert_eq!(continuity(50, Some(&stored(1000, 0)), new_history), Reset);
        assert_eq!(continuity(50, None, new_history), Reset);
        assert_eq!(continuity(1000, None, new_history), Complete, "a position of this history");
        assert_eq!(continuity(0, Some(&stored(1000, 0)), new_history), Complete, "from the start");
    }
}

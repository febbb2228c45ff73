//! Why a group was not recovered: the machine-readable `reason` of a recovery outcome, each
//! with what the client should do about it. `docs/protocol.md` lists them; a test there keeps
//! the two in step.

use serde::{Deserialize, Serialize};

use crate::ClientAction;

/// Why a group's recovery did not deliver every message after the client's position.
/// Values are stable: they are part of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryFailure {
    /// The group keeps no history: there is nothing to recover (the group was still joined).
    NoHistory,
    /// Some messages after the position were removed by retention (age or count) before the
    /// client came back; what is still kept was replayed.
    Expired,
    /// The position belongs to a history that no longer exists: it was removed (history
    /// disabled, the app's history deleted) or its storage was lost, and a new one began.
    Reset,
    /// The token does not permit joining the group: it was not joined.
    Forbidden,
    /// History could not be read right now.
    Unavailable,
    /// The connection closed before the replay finished.
    Closed,
}

impl RecoveryFailure {
    pub const ALL: [Self; 6] =
        [Self::NoHistory, Self::Expired, Self::Reset, Self::Forbidden, Self::Unavailable, Self::Closed];

    /// The code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoHistory => "no_history",
            Self::Expired => "expired",
            Self::Reset => "reset",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
            Self::Closed => "closed",
        }
    }

    /// A human sentence for the same reason.
    pub fn message(self) -> &'static str {
        match self {
            Self::NoHistory => "the group keeps no history",
            Self::Expired => "messages after this position expired from history (retention)",
            Self::Reset => "this position belongs to a history that no longer exists",
            Self::Forbidden => "the token does not permit joining this group",
            Self::Unavailable => "history is unavailable right now; reconnect to retry",
            Self::Closed => "the connection closed during recovery",
        }
    }

    /// What the client should do: reload its state from the application (give up on
    /// recovering), or reconnect and recover again.
    pub fn action(self) -> ClientAction {
        match self {
            Self::Unavailable | Self::Closed => ClientAction::Retry,
            Self::NoHistory | Self::Expired | Self::Reset | Self::Forbidden => ClientAction::GiveUp,
        }
    }
}

impl std::fmt::Display for RecoveryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

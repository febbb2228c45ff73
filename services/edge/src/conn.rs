//! A connection as the hub sees it: the shared handle fan-out pushes into, whatever the
//! protocol and transport behind it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use signalbox_core::{AppSettings, ConnectionId, GroupName, KeyId, Scope, UserId, WebhookEvents};

use crate::outbox::{CloseRequest, Outbox};
use crate::protocol::{Format, FormatCell};
use crate::recoveries::Recoveries;

/// A node-local number for a connection: cheaper to hash and compare than its id.
pub(crate) type ConnKey = u64;

/// One client connection on this node.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) key: ConnKey,
    pub(crate) id: ConnectionId,
    pub(crate) scope: Scope,
    pub(crate) user: Option<UserId>,
    /// The app key that signed the connection's token: revoking it closes the connection.
    pub(crate) key_id: KeyId,
    pub(crate) format: FormatCell,
    /// The client's opening is answered (for protocols that have one): messages and
    /// keep-alives may go out.
    pub(crate) open: AtomicBool,
    /// The app's settings when the connection opened (its limits apply for its lifetime).
    pub(crate) settings: Arc<AppSettings>,
    /// Seconds since the Unix epoch.
    pub(crate) connected_at: u64,
    pub(crate) outbox: Outbox,
    /// The groups the connection is in. A mutex because the session (client joins) and
    /// control messages (REST joins) both change it; held while the hub updates the
    /// group's members, so membership and this list never disagree.
    pub(crate) groups: Mutex<Groups>,
    /// When the last frame arrived, in seconds of the hub's clock (read by the sweeper).
    pub(crate) last_seen: AtomicU32,
    /// Groups this connection is recovering from history, or has just recovered.
    pub(crate) recovery: Recoveries,
    /// The token's `info` (public, shown in presence), as JSON.
    pub(crate) info: Option<Arc<str>>,
    /// What the app's webhooks want to hear about, when the connection opened.
    pub(crate) webhook_events: WebhookEvents,
    /// Its `connected` event was emitted: only then is a `disconnected` owed.
    pub(crate) announced: AtomicBool,
    /// Its client may ask to resume it on a new socket (SignalR's stateful reconnect, agreed
    /// at negotiate): it retains what it sends once its opening asks for it.
    pub(crate) resumable: bool,
    /// It is changing edges (a resume on another node): its joins and leaves change counts,
    /// not who is there, and nobody is told it came or went.
    pub(crate) moving: AtomicBool,
    /// Who it is in groups whose members are users, when its protocol says so at a join
    /// (Pusher's signed `channel_data`) rather than at connect. Set once.
    pub(crate) member: OnceLock<Member>,
    /// The user it signed in as after connecting (Pusher's `pusher:signin`). Set once.
    pub(crate) signed_in: OnceLock<UserId>,
}

/// A connection's user and public info, as a join named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) user: UserId,
    pub(crate) info: Option<Arc<str>>,
}

/// The group list of a connection plus whether it has left the hub.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    pub(crate) names: Vec<GroupName>,
    /// Set once the connection started leaving the hub: no join may succeed after.
    pub(crate) detached: bool,
}

impl Conn {
    /// Its user in presence: the one a join named, else its token's.
    pub(crate) fn presence_user(&self) -> Option<&UserId> {
        self.member.get().map(|m| &m.user).or(self.user.as_ref())
    }

    /// The user whose messages it gets: its token's, or the one it signed in as.
    pub(crate) fn target_user(&self) -> Option<&UserId> {
        self.user.as_ref().or(self.signed_in.get())
    }

    /// Its public info in presence, as JSON.
    pub(crate) fn presence_info(&self) -> Option<&str> {
        self.member.get().map_or(self.info.as_deref(), |m| m.info.as_deref())
    }

    pub(crate) fn format(&self) -> Format {
        self.format.get()
    }

    pub(crate) fn set_format(&self, format: Format) {
        self.format.set(format);
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub(crate) fn close(&self, request: CloseRequest) {
        self.outbox.close(request);
    }

    pub(crate) fn touch(&self, now: u32) {
        self.last_seen.store(now, Ordering::Relaxed);
    }

    pub(crate) fn group_names(&self) -> Vec<GroupName> {
        self.groups.lock().names.clone()
    }

    /// Ends the replay of `group` at `replayed_up_to`: queues the live messages held meanwhile
    /// that the replay did not send.
    pub(crate) fn finish_recovery(&self, group: &GroupName, replayed_up_to: u64) {
        self.recovery.finish(group, replayed_up_to, |frame| {
            self.outbox.push_counted(frame, None);
        });
    }
}

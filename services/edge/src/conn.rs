//! A connection as the hub sees it: the shared handle fan-out pushes into, whatever the
//! protocol and transport behind it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use signalbox_core::{AppSettings, ConnectionId, GroupName, KeyId, Scope, UserId, WebhookEvents};
use signalbox_proto::signalr::HubProtocol;

use crate::outbox::{CloseRequest, Outbox, Pushed};
use crate::recoveries::Recoveries;
use crate::ws::codec;

/// A node-local number for a connection: cheaper to hash and compare than its id.
pub(crate) type ConnKey = u64;

/// How outbound frames are encoded for a connection: the protocol's message encoding plus
/// the transport's framing. Fan-out encodes a message once per format present among the
/// recipients and shares the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum WireFormat {
    /// `signalbox.json.v1` in WebSocket text frames.
    NativeJsonWebSocket,
    /// SignalR JSON hub protocol records in WebSocket text frames.
    SignalRWebSocket,
    /// SignalR MessagePack messages in WebSocket binary frames.
    SignalRMsgPackWebSocket,
    /// SignalR records as they are: Server-Sent Events frame them when writing.
    SignalRServerSentEvents,
    /// SignalR records as they are: a poll answers with the records queued.
    SignalRLongPolling,
    /// SignalR MessagePack messages as they are, for long polls.
    SignalRMsgPackLongPolling,
}

impl WireFormat {
    pub(crate) const COUNT: usize = 6;

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    fn from_index(index: u8) -> Self {
        match index {
            1 => Self::SignalRWebSocket,
            2 => Self::SignalRMsgPackWebSocket,
            3 => Self::SignalRServerSentEvents,
            4 => Self::SignalRLongPolling,
            5 => Self::SignalRMsgPackLongPolling,
            _ => Self::NativeJsonWebSocket,
        }
    }

    pub(crate) fn is_signalr(self) -> bool {
        !matches!(self, Self::NativeJsonWebSocket)
    }

    pub(crate) fn is_long_polling(self) -> bool {
        matches!(self, Self::SignalRLongPolling | Self::SignalRMsgPackLongPolling)
    }

    /// The SignalR hub protocol of this format (JSON for the native one, which never asks).
    pub(crate) fn hub_protocol(self) -> HubProtocol {
        match self {
            Self::SignalRMsgPackWebSocket | Self::SignalRMsgPackLongPolling => HubProtocol::MessagePack,
            _ => HubProtocol::Json,
        }
    }

    /// The same transport with another SignalR hub protocol; `None` where the transport cannot
    /// carry it (MessagePack is binary: not over Server-Sent Events).
    pub(crate) fn with_hub_protocol(self, protocol: HubProtocol) -> Option<Self> {
        match (self, protocol) {
            (Self::SignalRWebSocket | Self::SignalRMsgPackWebSocket, HubProtocol::Json) => Some(Self::SignalRWebSocket),
            (Self::SignalRWebSocket | Self::SignalRMsgPackWebSocket, HubProtocol::MessagePack) => {
                Some(Self::SignalRMsgPackWebSocket)
            }
            (Self::SignalRLongPolling | Self::SignalRMsgPackLongPolling, HubProtocol::Json) => {
                Some(Self::SignalRLongPolling)
            }
            (Self::SignalRLongPolling | Self::SignalRMsgPackLongPolling, HubProtocol::MessagePack) => {
                Some(Self::SignalRMsgPackLongPolling)
            }
            (Self::SignalRServerSentEvents, HubProtocol::Json) => Some(self),
            _ => None,
        }
    }

    /// Wraps one protocol payload in this format's transport framing.
    pub(crate) fn frame(self, payload: &[u8]) -> Bytes {
        match self {
            Self::NativeJsonWebSocket | Self::SignalRWebSocket => codec::text_frame(payload),
            Self::SignalRMsgPackWebSocket => codec::binary_frame(payload),
            Self::SignalRServerSentEvents | Self::SignalRLongPolling | Self::SignalRMsgPackLongPolling => {
                Bytes::copy_from_slice(payload)
            }
        }
    }

    /// A notice of the server's own (a presence change) in this format: the native frame's
    /// JSON object as it is, or for SignalR an invocation of the client method `method` with
    /// that object as its one argument — never a frame the client's protocol cannot read.
    pub(crate) fn frame_notice(self, method: &str, notice: &[u8]) -> Bytes {
        if self.is_signalr() {
            self.frame(&self.hub_protocol().encode_invocation(method, notice))
        } else {
            self.frame(notice)
        }
    }

    pub(crate) fn protocol(self) -> &'static str {
        match self {
            Self::NativeJsonWebSocket => signalbox_proto::native::SUBPROTOCOL,
            Self::SignalRMsgPackWebSocket | Self::SignalRMsgPackLongPolling => "signalr.messagepack.v1",
            _ => "signalr.json.v1",
        }
    }

    /// The largest frame a message whose payload is at most `max_payload` bytes (an app's
    /// `max_message_bytes`) can become in this format, everything around the payload
    /// included: the queue must take at least that, or the payload limit a publisher is told
    /// would not be the limit (the message would be accepted, then close every member 4100).
    pub(crate) fn max_message_frame(self, max_payload: usize) -> usize {
        // An event or group name as a JSON string, every byte escaped at worst (`\u00XX`).
        const NAME: usize = 2 + 6 * signalbox_core::ids::NAME_MAX_BYTES;
        // A WebSocket frame header (at most 10 bytes) and a MessagePack length prefix (5).
        const FRAMING: usize = 16;
        match self {
            // `{"type":"message","event":…,"data":…,"encoding":"base64","group":…,"seq":…}`
            // (about 90 bytes of fixed text); binary data goes out as base64.
            Self::NativeJsonWebSocket => FRAMING + 128 + 2 * NAME + max_payload.max(2 + max_payload.div_ceil(3) * 4),
            // `{"type":1,"target":…,"arguments":[…]}` and the record separator.
            Self::SignalRWebSocket | Self::SignalRServerSentEvents | Self::SignalRLongPolling => {
                FRAMING + 64 + NAME + max_payload
            }
            // JSON turned into MessagePack shrinks or keeps its size except for numbers with a
            // fraction or an exponent: at least 3 characters (`0.5`, `1e5`) become a 9-byte
            // float, so a payload grows at most three times.
            Self::SignalRMsgPackWebSocket | Self::SignalRMsgPackLongPolling => FRAMING + 64 + NAME + 3 * max_payload,
        }
    }

    pub(crate) fn transport(self) -> &'static str {
        match self {
            Self::NativeJsonWebSocket | Self::SignalRWebSocket | Self::SignalRMsgPackWebSocket => "websocket",
            Self::SignalRServerSentEvents => "server-sent-events",
            Self::SignalRLongPolling | Self::SignalRMsgPackLongPolling => "long-polling",
        }
    }
}

/// A connection's wire format: fixed for native connections, chosen by the handshake for
/// SignalR ones (JSON or MessagePack).
#[derive(Debug)]
pub(crate) struct FormatCell(AtomicU8);

impl FormatCell {
    pub(crate) fn new(format: WireFormat) -> Self {
        Self(AtomicU8::new(format as u8))
    }

    pub(crate) fn get(&self) -> WireFormat {
        WireFormat::from_index(self.0.load(Ordering::Acquire))
    }

    pub(crate) fn set(&self, format: WireFormat) {
        self.0.store(format as u8, Ordering::Release);
    }
}

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
    /// The protocol's opening is done (SignalR: the handshake): messages and pings may go out.
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
}

/// The group list of a connection plus whether it has left the hub.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    pub(crate) names: Vec<GroupName>,
    /// Set once the connection started leaving the hub: no join may succeed after.
    pub(crate) detached: bool,
}

impl Conn {
    pub(crate) fn format(&self) -> WireFormat {
        self.format.get()
    }

    pub(crate) fn set_format(&self, format: WireFormat) {
        self.format.set(format);
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Frames and queues one protocol payload for this connection alone.
    pub(crate) fn send(&self, payload: &[u8]) -> Pushed {
        self.outbox.push(self.format().frame(payload))
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
            self.outbox.push(frame);
        });
    }
}

//! The seam between the edge and the protocols its clients speak.
//!
//! A protocol is one module behind [`Protocol`]: it turns what a client sends into
//! [`Command`]s (join, leave, publish, ping, presence, upstream events …) and encodes
//! everything the edge sends ([`Outbound`]: messages, presence, replies, errors, close
//! reasons) in its own format. The session executes commands the same way for every
//! protocol; the hub and fan-out hold frames per [`Format`] and never ask which protocol
//! made them.
//!
//! A [`Format`] is an encoding (a registered protocol) carried by a [`Transport`] (WebSocket,
//! Server-Sent Events, long polling): any transport a protocol allows combines with it.
//! Adding a protocol means adding a module and a line in [`PROTOCOLS`]; see
//! docs/architecture.md, "Adding a protocol".

pub(crate) mod native;
pub(crate) mod pusher;
pub(crate) mod signalr;

#[cfg(test)]
mod conformance;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::any;
use bytes::Bytes;
use signalbox_core::{CloseCode, ErrorCode, EventName, GroupName};
use signalbox_proto::native::{GroupRecovery, PresenceChange, ReplyId};
use signalbox_proto::presence::PresenceSummary;
use signalbox_proto::wire::DataKind;

use crate::EdgeState;
use crate::outbox::CloseRequest;
use crate::ws::codec;

/// The routes of every protocol's entry: `GET /client` (native), SignalR's
/// `/client/negotiate` and `/client/` (also `/client?hub=…`, without the slash), and
/// Pusher's `/app/{key}`.
pub(crate) fn routes() -> Router<Arc<EdgeState>> {
    Router::new().route("/client", any(client)).merge(signalr::routes()).merge(pusher::routes())
}

/// `/client`: the native protocol's WebSocket, or a SignalR transport request when the query
/// names a hub — so a SignalR client never gets a native welcome it cannot read.
async fn client(State(edge): State<Arc<EdgeState>>, request: axum::extract::Request) -> axum::response::Response {
    use axum::handler::Handler as _;
    use axum::response::IntoResponse as _;
    if signalr::names_a_hub(request.uri().query()) {
        return signalr::transport(edge, request).await;
    }
    if request.method() != ::http::Method::GET {
        return ::http::StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    native::upgrade.call(request, edge).await
}

/// One protocol's two directions. Implementations hold no per-connection state: what a
/// connection's decoding needs between calls lives in its [`Input`].
pub(crate) trait Protocol: Sync + std::fmt::Debug {
    /// What the protocol is called and what it needs of the edge.
    fn info(&self) -> &ProtocolInfo;
    /// Reads what arrived (one transport message, or a part of a stream): every complete
    /// client message becomes a command, in order; an incomplete tail waits in `input`.
    /// An error closes the connection with its code.
    fn decode(&self, input: &mut Input, data: &[u8], commands: &mut Vec<Command>) -> Result<(), Violation>;
    /// Encodes something the edge sends, without transport framing; `None` when the
    /// protocol has no such thing (it is then not sent).
    fn encode(&self, outbound: &Outbound<'_>) -> Option<Vec<u8>>;
}

/// What a protocol is called and what it needs of the edge.
#[derive(Debug)]
pub(crate) struct ProtocolInfo {
    /// As connection details and metrics name it (a WebSocket subprotocol, or SignalR's
    /// `signalr.json.v1`).
    pub(crate) name: &'static str,
    /// Its messages are binary (WebSocket binary frames; not over Server-Sent Events).
    pub(crate) binary: bool,
    /// Its messages carry their own boundaries: a transport may cut or join them anywhere.
    /// Otherwise each call of [`Protocol::decode`] is one whole message (a WebSocket frame).
    pub(crate) delimits: bool,
    /// The protocol's own keep-alive ([`Outbound::KeepAlive`]) must reach the client at least
    /// this often; `None`: the transport's (WebSocket pings) is enough.
    pub(crate) keepalive: Option<Duration>,
    /// The client speaks first ([`Command::Open`]): until then the connection is not open,
    /// and only the answer to its opening goes out. The encodings the opening may choose.
    pub(crate) opening: Option<&'static [Encoding]>,
    /// The largest message frame (before transport framing) for a payload of at most
    /// `max_payload` bytes, with the longest names: the outbound queue takes at least two.
    pub(crate) message_bound: fn(max_payload: usize) -> usize,
    /// The close code a client of this protocol is sent for a Signalbox close code (where the
    /// protocol gives a code another meaning).
    pub(crate) close_code: fn(CloseCode) -> u16,
}

/// An event or group name as a JSON string, every byte escaped at worst (`\u00XX`): for
/// [`ProtocolInfo::message_bound`].
pub(crate) const ESCAPED_NAME: usize = 2 + 6 * signalbox_core::ids::NAME_MAX_BYTES;

impl ProtocolInfo {
    /// Whether the protocol reads binary messages, or its opening may choose one that does.
    pub(crate) fn reads_binary(&self) -> bool {
        self.binary || self.opening.unwrap_or_default().iter().any(|e| e.protocol().info().binary)
    }
}

/// A registered protocol, by its place in [`PROTOCOLS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Encoding(u8);

impl Encoding {
    pub(crate) const NATIVE: Self = Self(0);
    pub(crate) const SIGNALR_JSON: Self = Self(1);
    pub(crate) const SIGNALR_MESSAGEPACK: Self = Self(2);
    pub(crate) const PUSHER: Self = Self(3);

    pub(crate) fn protocol(self) -> &'static dyn Protocol {
        PROTOCOLS[usize::from(self.0)]
    }

    /// The encoding of this name (`ProtocolInfo::name`).
    pub(crate) fn named(name: &str) -> Option<Self> {
        (0..PROTOCOLS.len()).map(|i| Self(i as u8)).find(|e| e.protocol().info().name == name)
    }
}

/// Every protocol the edge speaks, in [`Encoding`] order.
static PROTOCOLS: [&dyn Protocol; 4] = [
    &native::Native,
    &signalr::SignalR(signalbox_proto::signalr::HubProtocol::Json),
    &signalr::SignalR(signalbox_proto::signalr::HubProtocol::MessagePack),
    &pusher::Pusher,
];

/// What carries a connection's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    WebSocket,
    /// The protocol's messages as they are; the stream writes them as events.
    ServerSentEvents,
    /// The protocol's messages as they are; a poll answers with those queued.
    LongPolling,
}

impl Transport {
    const ALL: [Self; 3] = [Self::WebSocket, Self::ServerSentEvents, Self::LongPolling];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::ServerSentEvents => "server-sent-events",
            Self::LongPolling => "long-polling",
        }
    }

    /// Whether it can carry a protocol's messages: the HTTP transports join queued messages
    /// into one response or event, so the protocol must delimit them; Server-Sent Events
    /// carry text only.
    pub(crate) fn carries(self, info: &ProtocolInfo) -> bool {
        match self {
            Self::WebSocket => true,
            Self::ServerSentEvents => info.delimits && !info.binary,
            Self::LongPolling => info.delimits,
        }
    }

    /// Bytes a frame adds to a message at most.
    const FRAMING: usize = 16;
}

/// How outbound frames are encoded for a connection: a protocol's encoding carried by a
/// transport. Fan-out encodes a message once per format present among the recipients and
/// shares the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Format {
    pub(crate) encoding: Encoding,
    pub(crate) transport: Transport,
}

impl Format {
    /// How many formats there are (the size of a per-format frame cache).
    pub(crate) const COUNT: usize = PROTOCOLS.len() * Transport::ALL.len();

    pub(crate) const fn new(encoding: Encoding, transport: Transport) -> Self {
        Self { encoding, transport }
    }

    /// This format's place in a per-format cache, below [`Format::COUNT`].
    pub(crate) fn index(self) -> usize {
        usize::from(self.encoding.0) * Transport::ALL.len() + self.transport as usize
    }

    fn from_index(index: u8) -> Self {
        let transports = Transport::ALL.len() as u8;
        Self { encoding: Encoding(index / transports), transport: Transport::ALL[usize::from(index % transports)] }
    }

    pub(crate) fn protocol(self) -> &'static dyn Protocol {
        self.encoding.protocol()
    }

    pub(crate) fn info(self) -> &'static ProtocolInfo {
        self.protocol().info()
    }

    /// The same transport with another encoding; `None` where the transport cannot carry it.
    pub(crate) fn with_encoding(self, encoding: Encoding) -> Option<Self> {
        self.transport.carries(encoding.protocol().info()).then_some(Self { encoding, ..self })
    }

    /// Wraps one protocol message in the transport's framing.
    pub(crate) fn frame(self, message: &[u8]) -> Bytes {
        match self.transport {
            Transport::WebSocket if self.info().binary => codec::binary_frame(message),
            Transport::WebSocket => codec::text_frame(message),
            Transport::ServerSentEvents | Transport::LongPolling => Bytes::copy_from_slice(message),
        }
    }

    /// Encodes and frames something the edge sends; `None` when the protocol has no such thing.
    pub(crate) fn encode(self, outbound: &Outbound<'_>) -> Option<Bytes> {
        self.protocol().encode(outbound).map(|message| self.frame(&message))
    }

    /// The largest frame a message whose payload is at most `max_payload` bytes (an app's
    /// `max_message_bytes`) can become in this format, everything around the payload
    /// included: the queue must take at least that, or the payload limit a publisher is told
    /// would not be the limit (the message would be accepted, then close every member 4100).
    pub(crate) fn max_message_frame(self, max_payload: usize) -> usize {
        Transport::FRAMING + (self.info().message_bound)(max_payload)
    }

    /// The largest message frame of any format the connection may come to use (its opening
    /// may still choose another encoding).
    pub(crate) fn max_reachable_frame(self, max_payload: usize) -> usize {
        let reachable = self.info().opening.unwrap_or_default().iter().filter_map(|e| self.with_encoding(*e));
        reachable.chain([self]).map(|format| format.max_message_frame(max_payload)).max().unwrap_or_default()
    }

    /// Every format, for tests that must cover them all.
    #[cfg(test)]
    pub(crate) fn all() -> impl Iterator<Item = Self> {
        (0..Self::COUNT as u8).map(Self::from_index)
    }
}

/// A connection's format: chosen at connect, changed by the client's opening.
#[derive(Debug)]
pub(crate) struct FormatCell(AtomicU8);

impl FormatCell {
    pub(crate) fn new(format: Format) -> Self {
        Self(AtomicU8::new(format.index() as u8))
    }

    pub(crate) fn get(&self) -> Format {
        Format::from_index(self.0.load(Ordering::Acquire))
    }

    pub(crate) fn set(&self, format: Format) {
        self.0.store(format.index() as u8, Ordering::Release);
    }
}

/// A connection's decoding state between calls of [`Protocol::decode`].
#[derive(Debug, Default)]
pub(crate) struct Input {
    /// What arrived but does not make a whole message yet.
    pub(crate) partial: Vec<u8>,
    /// The client's opening was read (always true for protocols without one).
    pub(crate) opened: bool,
    /// The largest message a client may send, with what surrounds its payload.
    pub(crate) max_message: usize,
    /// The client numbers its counted messages (SignalR's stateful reconnect): set by the
    /// opening that asks for it.
    pub(crate) sequence: Option<Sequencing>,
    /// The connection's id, for what a client signs with it (Pusher's socket id).
    pub(crate) connection: Option<signalbox_core::ConnectionId>,
}

/// The numbering of a client's counted messages, to drop the copies it sends again after a
/// resume: each counted message takes the next id; one whose id was seen already is a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sequencing {
    /// The id the next counted message takes.
    pub(crate) next: u64,
    /// The highest id received.
    pub(crate) latest: u64,
}

impl Default for Sequencing {
    fn default() -> Self {
        Self { next: 1, latest: 0 }
    }
}

impl Sequencing {
    /// Takes the next id; false for a copy of a message already received.
    pub(crate) fn count(&mut self) -> bool {
        let id = self.next;
        self.next += 1;
        if id <= self.latest {
            return false;
        }
        self.latest = id;
        true
    }

    /// The client says its next counted message is `next` (after a resume): it may go back
    /// (copies follow), never beyond what was received.
    pub(crate) fn restart_at(&mut self, next: u64) -> Result<(), Violation> {
        if next > self.next {
            let message = format!("Sequence ID {next} is greater than the {} messages received", self.next - 1);
            return Err(Violation::new(CloseCode::ProtocolError, message));
        }
        self.next = next;
        Ok(())
    }
}

impl Input {
    /// A partial-message buffer bigger than this is freed once empty.
    const KEPT_BUFFER: usize = 16 * 1024;

    pub(crate) fn new(info: &ProtocolInfo, max_message: usize) -> Self {
        Self { partial: Vec::new(), opened: info.opening.is_none(), max_message, sequence: None, connection: None }
    }

    /// Drops the first `consumed` bytes; refuses a tail that outgrew the message limit.
    pub(crate) fn keep_tail(&mut self, consumed: usize) -> Result<(), Violation> {
        self.partial.drain(..consumed);
        if self.partial.len() > self.max_message {
            let message = format!("the maximum message size of {} bytes was exceeded", self.max_message);
            self.partial = Vec::new();
            return Err(Violation::new(CloseCode::MessageTooBig, message));
        }
        if self.partial.is_empty() && self.partial.capacity() > Self::KEPT_BUFFER {
            self.partial = Vec::new();
        }
        Ok(())
    }
}

/// What the client asked for, whatever its protocol.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// The client's opening (SignalR's handshake) was accepted: answer it, switch to
    /// `encoding`, then join the connection's targets and groups. `sequenced`: the client
    /// numbers counted messages and acknowledges them (it can resume).
    Open {
        encoding: Encoding,
        sequenced: bool,
    },
    /// The client has every counted message up to `through`.
    Ack {
        through: u64,
    },
    /// The connection signs in as a user (Pusher's `pusher:signin`): proven by the app
    /// backend's signature over `user_data`, which the answer echoes.
    SignIn {
        proof: JoinProof,
        member: JoinMember,
        user_data: String,
    },
    /// Joins a group: by the connection's permissions, or by `proof` — a signature of the
    /// app's backend that grants this one join (Pusher's private channels).
    Join {
        reply: Option<ReplyId>,
        group: GroupName,
        since: Option<u64>,
        proof: Option<JoinProof>,
        /// Who the connection is in this group of users (Pusher's `channel_data`, signed by
        /// the proof); the answer then lists the group's members.
        member: Option<JoinMember>,
    },
    Leave {
        reply: Option<ReplyId>,
        group: GroupName,
    },
    /// Publishes to a group; `members_only`: only if the connection is in it (Pusher's client
    /// events).
    Publish {
        reply: Option<ReplyId>,
        group: GroupName,
        event: EventName,
        data: Bytes,
        no_echo: bool,
        members_only: bool,
    },
    Ping {
        reply: Option<ReplyId>,
    },
    /// Who is in a group.
    Presence {
        reply: Option<ReplyId>,
        group: GroupName,
    },
    /// An event (a SignalR hub method call) for the app's upstream webhook; its answer is the
    /// reply. `invocation_id` is passed upstream for protocols that have one.
    Event {
        reply: Option<ReplyId>,
        event: String,
        data: Bytes,
        invocation_id: Option<String>,
    },
    /// A request that could not be read: answered with an error, and counted (too many in a
    /// row close the connection).
    Invalid {
        reply: Option<ReplyId>,
        code: ErrorCode,
        message: String,
    },
    /// A request the edge does not do (SignalR streaming): answered with an error.
    Unsupported {
        reply: Option<ReplyId>,
        message: String,
    },
    /// The client says goodbye.
    Close,
}

/// What grants a join without a permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JoinProof {
    /// The app backend's signature: HMAC-SHA256 of `signed` with the secret of the app key
    /// `key` (hex).
    Signed { key: String, signed: String, signature: String },
    /// The connection signed in as this user (a group only the user may join: Pusher's
    /// `#server-to-user-…`).
    SignedInAs(signalbox_core::UserId),
}

/// Who a join names the connection as, in a group whose members are users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinMember {
    pub(crate) user: signalbox_core::UserId,
    /// Public info, as JSON.
    pub(crate) info: Option<String>,
}

/// Input that ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Violation {
    pub(crate) code: CloseCode,
    pub(crate) message: String,
}

impl Violation {
    pub(crate) fn new(code: CloseCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// A message delivered by the hub.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageOut<'a> {
    pub(crate) event: &'a str,
    pub(crate) kind: DataKind,
    /// JSON text, or the bytes of binary data.
    pub(crate) data: &'a [u8],
    /// The group, for group deliveries.
    pub(crate) group: Option<&'a str>,
    /// The user, for deliveries to a user (Pusher names their own channel).
    pub(crate) user: Option<&'a str>,
    /// The publishing client's user, in a group whose members are users.
    pub(crate) sender: Option<&'a str>,
    /// The position of a stored message in its group.
    pub(crate) seq: Option<u64>,
}

/// Who came and went in a group, or how many are there.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PresenceNotice<'a> {
    Members {
        group: &'a str,
        joined: &'a [PresenceChange<'a>],
        left: &'a [PresenceChange<'a>],
        count: u64,
        truncated: bool,
    },
    Count {
        group: &'a str,
        count: u64,
    },
    /// In a group whose members are users: a user came (their first connection in it).
    UserAdded {
        group: &'a str,
        user: &'a str,
        /// Their public info, as JSON.
        info: Option<&'a str>,
        count: u64,
    },
    /// In a group whose members are users: a user went (their last connection left it).
    UserRemoved {
        group: &'a str,
        user: &'a str,
        count: u64,
    },
}

/// How a request with a reply id went.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer<'a> {
    Ok,
    /// A stored publish: its position in the group.
    Position(u64),
    /// A join with `since`.
    Recovery(&'a GroupRecovery),
    Presence(&'a PresenceSummary),
    /// The upstream's answer to an event (JSON; empty for none).
    Data(&'a [u8]),
}

/// Everything the edge sends a client.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outbound<'a> {
    /// The server's first words on a connection that needs no opening.
    Welcome {
        connection_id: &'a str,
        user: Option<&'a str>,
        heartbeat_seconds: u64,
    },
    /// The client's opening is accepted.
    Opened,
    /// The client's opening is refused (the connection then closes).
    OpenRefused(&'a str),
    Message(MessageOut<'a>),
    Presence(PresenceNotice<'a>),
    Reply {
        to: &'a ReplyId,
        answer: Answer<'a>,
    },
    /// A request failed; without a reply id, the protocol says so if it can.
    Error {
        to: Option<&'a ReplyId>,
        code: ErrorCode,
        message: &'a str,
    },
    /// The answer to a ping.
    Pong(Option<&'a ReplyId>),
    /// How the recovery of groups asked for at connect went.
    Recovery(&'a [GroupRecovery]),
    /// The protocol's own keep-alive.
    KeepAlive,
    /// This node is going away: reconnect (elsewhere) now.
    Reconnect(&'a str),
    /// The last words before the transport closes.
    Close(&'a CloseRequest),
    /// Every counted client message up to this id arrived.
    Ack(u64),
    /// The id of the next counted message: first on a resumed connection.
    Sequence(u64),
    /// A sign-in succeeded; the user data it signed.
    SignedIn(&'a str),
}

impl Outbound<'_> {
    /// Whether the client counts it (a resumable connection retains it until acknowledged):
    /// messages, presence, replies and errors it can tie to a request.
    pub(crate) fn is_counted(&self) -> bool {
        matches!(self, Self::Message(_) | Self::Presence(_) | Self::Reply { .. } | Self::Error { to: Some(_), .. })
    }
}

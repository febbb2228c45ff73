//! What travels on the routing plane: one [`Packet`] per bus message, as a version byte
//! followed by a protobuf body (prost derives the schema from these structs; field tags are
//! the compatibility contract — never reuse or renumber one).
//!
//! A receiver that meets an unknown version, a truncated body or an empty packet gets a
//! [`DecodeError`]; it counts it, logs it once and drops the packet.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;

/// The version byte every packet starts with.
pub const WIRE_VERSION: u8 = 1;

/// A message to deliver to clients: the routing envelope.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    #[prost(string, tag = "1")]
    pub app: String,
    /// The hub token (`_` for the native hub).
    #[prost(string, tag = "2")]
    pub hub: String,
    #[prost(oneof = "Target", tags = "3, 4, 5, 6")]
    pub target: Option<Target>,
    /// Connection ids that must not receive it.
    #[prost(string, repeated, tag = "7")]
    pub exclude: Vec<String>,
    #[prost(string, tag = "8")]
    pub event: String,
    /// The payload; its meaning is given by `data_kind`.
    #[prost(bytes = "bytes", tag = "9")]
    pub data: Bytes,
    #[prost(enumeration = "DataKind", tag = "10")]
    pub data_kind: i32,
    /// Unique message id (the api's, or the edge's for client publishes).
    #[prost(string, tag = "11")]
    pub id: String,
    /// Position in the group's history, when the group keeps history.
    #[prost(uint64, optional, tag = "12")]
    pub position: Option<u64>,
    /// When the api (or edge) accepted it, microseconds since the Unix epoch.
    #[prost(uint64, tag = "13")]
    pub published_at_micros: u64,
    /// W3C trace context of the publish.
    #[prost(string, tag = "14")]
    pub traceparent: String,
    #[prost(string, tag = "15")]
    pub tracestate: String,
    /// The connection that published it, for client publishes.
    #[prost(string, optional, tag = "16")]
    pub origin_connection: Option<String>,
    /// That connection's user in the group, for client publishes to a group whose members are
    /// users (Pusher's presence channels tell it with each client event).
    #[prost(string, optional, tag = "17")]
    pub origin_user: Option<String>,
}

/// Who an envelope is for.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Target {
    /// Every connection of the hub.
    #[prost(bool, tag = "3")]
    All(bool),
    #[prost(string, tag = "4")]
    Group(String),
    #[prost(string, tag = "5")]
    User(String),
    #[prost(string, tag = "6")]
    Connection(String),
}

/// How to read an envelope's `data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataKind {
    /// UTF-8 JSON text, already validated by whoever accepted the message.
    Json = 0,
    /// Opaque bytes.
    Binary = 1,
}

/// A node-to-node control operation, sent on a user subject (applies to all of the user's
/// connections) or on a node subject (applies to one connection).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Control {
    #[prost(string, tag = "1")]
    pub app: String,
    #[prost(string, tag = "2")]
    pub hub: String,
    /// The connection, for node subjects; empty for user subjects.
    #[prost(string, tag = "3")]
    pub connection: String,
    /// The user, for user subjects.
    #[prost(string, tag = "4")]
    pub user: String,
    #[prost(oneof = "ControlOp", tags = "5, 6, 7, 8, 9")]
    pub op: Option<ControlOp>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ControlOp {
    #[prost(message, tag = "5")]
    Close(CloseOp),
    #[prost(string, tag = "6")]
    Join(String),
    #[prost(string, tag = "7")]
    Leave(String),
    /// Asks for the connection's info; answered with a [`ControlReply`].
    #[prost(bool, tag = "8")]
    Query(bool),
    /// Asks a node (not a connection: `connection` is empty) for its connections in a group
    /// or of a user; answered with a [`ControlReply`] carrying `presence`.
    #[prost(message, tag = "9")]
    Presence(PresenceQuery),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PresenceQuery {
    #[prost(string, optional, tag = "1")]
    pub group: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub user: Option<String>,
    /// Every group whose name starts with this (entries then name their group).
    #[prost(string, optional, tag = "3")]
    pub prefix: Option<String>,
}

/// One connection in a presence answer.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PresenceEntry {
    #[prost(string, tag = "1")]
    pub connection_id: String,
    #[prost(string, optional, tag = "2")]
    pub user: Option<String>,
    /// The token's `info` claim, as JSON.
    #[prost(string, optional, tag = "3")]
    pub info_json: Option<String>,
    /// The group, in answers about several groups.
    #[prost(string, optional, tag = "4")]
    pub group: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CloseOp {
    #[prost(uint32, tag = "1")]
    pub code: u32,
    #[prost(string, tag = "2")]
    pub reason: String,
}

/// The answer of a node to a [`Control`] sent as a request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ControlReply {
    #[prost(enumeration = "ControlStatus", tag = "1")]
    pub status: i32,
    #[prost(message, optional, tag = "2")]
    pub info: Option<ConnectionInfo>,
    /// For `Refused`: the protocol error code (`too_many_groups`, …).
    #[prost(string, tag = "3")]
    pub error_code: String,
    #[prost(string, tag = "4")]
    pub error_message: String,
    /// For a presence query: the node's matching connections.
    #[prost(message, repeated, tag = "5")]
    pub presence: Vec<PresenceEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ControlStatus {
    Done = 0,
    NotFound = 1,
    Refused = 2,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectionInfo {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, optional, tag = "2")]
    pub user: Option<String>,
    #[prost(string, repeated, tag = "3")]
    pub groups: Vec<String>,
    #[prost(string, tag = "4")]
    pub protocol: String,
    #[prost(string, tag = "5")]
    pub transport: String,
    #[prost(string, tag = "6")]
    pub node: String,
    /// Seconds since the Unix epoch.
    #[prost(uint64, tag = "7")]
    pub connected_at: u64,
}

/// An edge's request to the api.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ApiRequest {
    #[prost(string, tag = "1")]
    pub app: String,
    #[prost(oneof = "ApiQuery", tags = "2, 3, 4, 5, 6")]
    pub query: Option<ApiQuery>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ApiQuery {
    /// Look up a key by id.
    #[prost(string, tag = "2")]
    Key(String),
    #[prost(message, tag = "3")]
    UserGroups(UserGroupsQuery),
    /// Who is in a group, on every node (for a client's `presence` request).
    #[prost(message, tag = "4")]
    Presence(GroupPresenceQuery),
    /// Ask the app's `connect` webhook whether (and how) a connection may open.
    #[prost(message, tag = "5")]
    Connect(ConnectRequest),
    /// A client event for the app's `event` webhook; its answer goes back to the client.
    #[prost(message, tag = "6")]
    ClientEvent(ClientEventRequest),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GroupPresenceQuery {
    #[prost(string, tag = "1")]
    pub hub: String,
    #[prost(string, tag = "2")]
    pub group: String,
}

/// A connection about to open, as the `connect` webhook sees it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectRequest {
    #[prost(string, tag = "1")]
    pub connection_id: String,
    #[prost(string, tag = "2")]
    pub hub: String,
    #[prost(string, optional, tag = "3")]
    pub user: Option<String>,
    #[prost(string, repeated, tag = "4")]
    pub groups: Vec<String>,
    #[prost(string, repeated, tag = "5")]
    pub permissions: Vec<String>,
    /// Every claim of the client's token, as JSON.
    #[prost(string, tag = "6")]
    pub claims_json: String,
    /// The connect URL's query parameters (without the token), as a JSON object.
    #[prost(string, tag = "7")]
    pub query_json: String,
    /// Selected request headers (origin, user agent), as a JSON object.
    #[prost(string, tag = "8")]
    pub headers_json: String,
    #[prost(uint32, tag = "9")]
    pub timeout_ms: u32,
}

/// The `connect` webhook's decision.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectDecision {
    #[prost(enumeration = "ConnectOutcome", tag = "1")]
    pub outcome: i32,
    /// Why, for a rejection or a failure (shown to the client as the close reason).
    #[prost(string, tag = "2")]
    pub reason: String,
    /// Replaces the token's user id.
    #[prost(string, optional, tag = "3")]
    pub user: Option<String>,
    /// When set, `groups` replaces the token's groups.
    #[prost(bool, tag = "4")]
    pub replace_groups: bool,
    #[prost(string, repeated, tag = "5")]
    pub groups: Vec<String>,
    /// When set, `permissions` replaces the token's permissions.
    #[prost(bool, tag = "6")]
    pub replace_permissions: bool,
    #[prost(string, repeated, tag = "7")]
    pub permissions: Vec<String>,
    /// Replaces the token's `info`, as JSON.
    #[prost(string, optional, tag = "8")]
    pub info_json: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConnectOutcome {
    /// Accepted (with the changes the decision carries).
    Accept = 0,
    /// Refused by the webhook.
    Reject = 1,
    /// The webhook could not be asked or did not answer well; the app's policy decides.
    Failed = 2,
    /// The app has no `connect` webhook.
    NoWebhook = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientEventRequest {
    #[prost(string, tag = "1")]
    pub connection_id: String,
    #[prost(string, tag = "2")]
    pub hub: String,
    #[prost(string, optional, tag = "3")]
    pub user: Option<String>,
    #[prost(string, tag = "4")]
    pub event: String,
    /// The event's data, as JSON.
    #[prost(bytes = "bytes", tag = "5")]
    pub data: Bytes,
    #[prost(uint32, tag = "6")]
    pub timeout_ms: u32,
    /// For a SignalR hub method call: the caller's invocation id, when it wants a Completion.
    #[prost(string, optional, tag = "7")]
    pub invocation_id: Option<String>,
}

/// The app of an [`ApiRequest`] that looks a key up by its id alone (Azure SignalR-style
/// tokens name no app): the answer names the key's app.
pub const ANY_APP: &str = "-";

#[derive(Clone, PartialEq, prost::Message)]
pub struct UserGroupsQuery {
    #[prost(string, tag = "1")]
    pub hub: String,
    #[prost(string, tag = "2")]
    pub user: String,
}

/// The api's answer to an [`ApiRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct ApiReply {
    #[prost(oneof = "ApiAnswer", tags = "1, 2, 3, 4, 5, 6")]
    pub answer: Option<ApiAnswer>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ApiAnswer {
    #[prost(message, tag = "1")]
    Key(KeyInfo),
    #[prost(message, tag = "2")]
    UserGroups(GroupList),
    /// The request could not be answered (unknown key, store down, …): a safe message.
    #[prost(message, tag = "3")]
    Error(ApiFailure),
    #[prost(message, tag = "4")]
    Presence(PresenceList),
    #[prost(message, tag = "5")]
    Connect(ConnectDecision),
    /// The `event` webhook's answer, as JSON.
    #[prost(bytes = "bytes", tag = "6")]
    EventReply(Bytes),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PresenceList {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<PresenceEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyInfo {
    #[prost(string, tag = "1")]
    pub key_id: String,
    #[prost(string, tag = "2")]
    pub app: String,
    /// The HMAC secret that verifies the key's tokens. Only on the trusted routing plane.
    #[prost(bytes = "vec", tag = "3")]
    pub secret: Vec<u8>,
    #[prost(bool, tag = "4")]
    pub revoked: bool,
    /// The app's settings as JSON.
    #[prost(string, tag = "5")]
    pub settings_json: String,
    /// The events the app's webhooks ask for (`connect`, `connected`, `disconnected`, `event`).
    #[prost(string, repeated, tag = "6")]
    pub webhook_events: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GroupList {
    #[prost(string, repeated, tag = "1")]
    pub groups: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ApiFailure {
    #[prost(enumeration = "ApiFailureKind", tag = "1")]
    pub kind: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ApiFailureKind {
    NotFound = 0,
    Unavailable = 1,
    /// No webhook handles the request.
    NoUpstream = 2,
    /// The webhook failed, timed out or answered with an error.
    UpstreamFailed = 3,
}

/// Announced by the api when something edges cache changes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfigChange {
    #[prost(string, tag = "1")]
    pub app: String,
    #[prost(oneof = "ConfigChangeKind", tags = "2, 3, 4")]
    pub kind: Option<ConfigChangeKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ConfigChangeKind {
    #[prost(string, tag = "2")]
    KeyRevoked(String),
    #[prost(bool, tag = "3")]
    SettingsChanged(bool),
    #[prost(bool, tag = "4")]
    AppDeleted(bool),
}

/// Everything that travels on the bus.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Packet {
    #[prost(oneof = "Body", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12")]
    pub body: Option<Body>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    #[prost(message, tag = "1")]
    Message(Envelope),
    #[prost(message, tag = "2")]
    Control(Control),
    #[prost(message, tag = "3")]
    ControlReply(ControlReply),
    #[prost(message, tag = "4")]
    ApiRequest(ApiRequest),
    #[prost(message, tag = "5")]
    ApiReply(ApiReply),
    #[prost(message, tag = "6")]
    ConfigChange(ConfigChange),
    #[prost(message, tag = "7")]
    Heartbeat(Heartbeat),
    #[prost(message, tag = "8")]
    PresenceUpdate(PresenceUpdate),
    #[prost(message, tag = "9")]
    ConnectionEvent(ConnectionEvent),
    #[prost(message, tag = "10")]
    Transport(TransportRequest),
    #[prost(message, tag = "11")]
    TransportReply(TransportReply),
    #[prost(message, tag = "12")]
    Handover(Handover),
}

/// An HTTP transport request of a SignalR connection (a long poll, a send, a delete) that
/// reached an edge other than the one holding the connection: forwarded on the connection's
/// subject, after the receiving edge checked the token and the connection token.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TransportRequest {
    #[prost(string, tag = "1")]
    pub app: String,
    #[prost(string, tag = "2")]
    pub connection: String,
    #[prost(enumeration = "TransportKind", tag = "3")]
    pub kind: i32,
    /// What a send carries.
    #[prost(bytes = "bytes", tag = "4")]
    pub body: Bytes,
    /// The user of the token that made the request: must be the connection's.
    #[prost(string, optional, tag = "5")]
    pub user: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum TransportKind {
    /// `GET`: a long poll.
    Poll = 0,
    /// `POST`: messages from the client.
    Send = 1,
    /// `DELETE`: the client ends a long-polling connection.
    Delete = 2,
    /// Another edge asks about a resumable connection its client resumes there: answered
    /// with a [`Handover`] that describes it (nothing changes hands yet).
    Describe = 3,
    /// Another edge, subscribed to the connection's targets, takes it over: answered with a
    /// [`Handover`] carrying everything not acknowledged; the connection then leaves here.
    Handover = 4,
}

/// A resumable connection changing edges (stateful reconnect on another node).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Handover {
    /// 200: here it is; 404: it ended (its token may not open it again); 409: it cannot be
    /// resumed.
    #[prost(uint32, tag = "1")]
    pub status: u32,
    #[prost(string, optional, tag = "2")]
    pub user: Option<String>,
    #[prost(string, repeated, tag = "3")]
    pub groups: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub permissions: Vec<String>,
    #[prost(string, optional, tag = "5")]
    pub info_json: Option<String>,
    #[prost(string, tag = "6")]
    pub key_id: String,
    /// Unix seconds.
    #[prost(uint64, tag = "7")]
    pub connected_at: u64,
    /// The protocol encoding the connection speaks (its name).
    #[prost(string, tag = "8")]
    pub encoding: String,
    /// Its `connected` event was emitted (a `disconnected` is owed).
    #[prost(bool, tag = "9")]
    pub announced: bool,
    /// The id of the first frame in `frames`.
    #[prost(uint64, tag = "10")]
    pub first_id: u64,
    #[prost(message, repeated, tag = "11")]
    pub frames: Vec<HandedFrame>,
    /// The client's counted messages: the id the next one takes, and the highest received.
    #[prost(uint64, tag = "12")]
    pub inbound_next: u64,
    #[prost(uint64, tag = "13")]
    pub inbound_latest: u64,
}

/// A frame the client has not acknowledged, as it was sent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HandedFrame {
    #[prost(bytes = "bytes", tag = "1")]
    pub frame: Bytes,
    #[prost(string, optional, tag = "2")]
    pub message_id: Option<String>,
}

/// The HTTP answer to a forwarded [`TransportRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct TransportReply {
    #[prost(uint32, tag = "1")]
    pub status: u32,
    #[prost(bytes = "bytes", tag = "2")]
    pub body: Bytes,
}

/// An edge not heard from for this long is lost: the dispatcher reports its connections
/// disconnected, and an edge that was cut off from the routing plane this long closes its
/// clients when it is back (their disconnects were reported).
pub const NODE_LOST_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// An edge saying it is alive (on its heartbeat subject, every few seconds, and when asked
/// by a roll call).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Heartbeat {
    #[prost(string, tag = "1")]
    pub node: String,
    /// When the node started, in Unix milliseconds: a restarted node is a new node.
    #[prost(uint64, tag = "2")]
    pub started_at_millis: u64,
    #[prost(uint64, tag = "3")]
    pub connections: u64,
}

/// A node's batch of presence changes in a group, on the group's subject.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PresenceUpdate {
    #[prost(string, tag = "1")]
    pub app: String,
    #[prost(string, tag = "2")]
    pub hub: String,
    #[prost(string, tag = "3")]
    pub group: String,
    #[prost(string, tag = "4")]
    pub node: String,
    #[prost(message, repeated, tag = "5")]
    pub joined: Vec<PresenceMember>,
    #[prost(message, repeated, tag = "6")]
    pub left: Vec<PresenceMember>,
    /// The node's connections in the group now.
    #[prost(uint32, tag = "7")]
    pub local_count: u32,
    /// The lists were cut short.
    #[prost(bool, tag = "8")]
    pub truncated: bool,
    /// The sender just got its first member here: others, send your counts.
    #[prost(bool, tag = "9")]
    pub sync_request: bool,
    /// For groups whose members are users: every member the sender holds, sent in answer to a
    /// sync request (`full`), so a node that just joined knows who is where.
    #[prost(message, repeated, tag = "10")]
    pub everyone: Vec<PresenceMember>,
    #[prost(bool, tag = "11")]
    pub full: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PresenceMember {
    #[prost(string, tag = "1")]
    pub connection_id: String,
    #[prost(string, optional, tag = "2")]
    pub user: Option<String>,
    /// Public information about the user, as JSON (for groups whose members are users).
    #[prost(string, optional, tag = "3")]
    pub info_json: Option<String>,
}

/// A connection opened or closed, for the app's webhooks (queued durably).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectionEvent {
    /// Unique; the webhook's `ce-id`, for deduplication.
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub app: String,
    #[prost(string, tag = "3")]
    pub hub: String,
    #[prost(enumeration = "ConnectionEventKind", tag = "4")]
    pub kind: i32,
    #[prost(string, tag = "5")]
    pub connection_id: String,
    #[prost(string, optional, tag = "6")]
    pub user: Option<String>,
    #[prost(string, repeated, tag = "7")]
    pub groups: Vec<String>,
    /// For a disconnect: the close code and reason.
    #[prost(uint32, tag = "8")]
    pub close_code: u32,
    #[prost(string, tag = "9")]
    pub reason: String,
    /// Unix milliseconds.
    #[prost(uint64, tag = "10")]
    pub at_millis: u64,
    #[prost(string, tag = "11")]
    pub node: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConnectionEventKind {
    Connected = 0,
    Disconnected = 1,
    /// The connection moved to another edge (a resume there): no webhook is told, but the
    /// disconnect owed if an edge is lost is now that edge's.
    Moved = 2,
}

impl From<Body> for Packet {
    fn from(body: Body) -> Self {
        Self { body: Some(body) }
    }
}

/// Why a packet could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown wire version {0}")]
    UnknownVersion(u8),
    #[error("malformed packet: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("packet has no body")]
    NoBody,
}

impl DecodeError {
    /// A short, bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::UnknownVersion(_) => "unknown_version",
            Self::Malformed(_) => "malformed",
            Self::NoBody => "no_body",
        }
    }
}

/// Encodes a packet body with its version byte.
pub fn encode(body: Body) -> Bytes {
    let packet = Packet::from(body);
    let mut buf = BytesMut::with_capacity(1 + packet.encoded_len());
    buf.put_u8(WIRE_VERSION);
    // Encoding into a buffer reserved to the exact length cannot fail.
    let _ = packet.encode(&mut buf);
    buf.freeze()
}

/// Decodes a packet; `data` fields share `bytes` without copying.
pub fn decode(mut bytes: Bytes) -> Result<Body, DecodeError> {
    let Some(&version) = bytes.first() else {
        return Err(DecodeError::Empty);
    };
    if version != WIRE_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let _ = bytes.split_to(1);
    Packet::decode(bytes)?.body.ok_or(DecodeError::NoBody)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            app: "app_1".into(),
            hub: "_".into(),
            target: Some(Target::Group("room".into())),
            exclude: vec!["n_1".into()],
            event: "chat".into(),
            data: Bytes::from_static(br#"{"text":"hi"}"#),
            data_kind: DataKind::Json as i32,
            id: "msg_1".into(),
            position: Some(7),
            published_at_micros: 1,
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            tracestate: String::new(),
            origin_connection: None,
            origin_user: None,
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(Body::Message(envelope()));
        assert_eq!(bytes[0], WIRE_VERSION);
        assert_eq!(decode(bytes), Ok(Body::Message(envelope())));
    }

    /// Every kind of body survives the trip, even with nothing set (a oneof tag missing from
    /// `Packet` would come back as no body at all).
    #[test]
    fn every_body_round_trips() {
        let bodies = [
            Body::Message(Envelope::default()),
            Body::Control(Control::default()),
            Body::ControlReply(ControlReply::default()),
            Body::ApiRequest(ApiRequest::default()),
            Body::ApiReply(ApiReply::default()),
            Body::ConfigChange(ConfigChange::default()),
            Body::Heartbeat(Heartbeat::default()),
            Body::PresenceUpdate(PresenceUpdate::default()),
            Body::ConnectionEvent(ConnectionEvent::default()),
            Body::Transport(TransportRequest::default()),
            Body::TransportReply(TransportReply::default()),
            Body::Handover(Handover { status: 404, ..Handover::default() }),
        ];
        for body in bodies {
            assert_eq!(decode(encode(body.clone())), Ok(body));
        }
    }

    #[test]
    fn bad_packets_are_typed_errors() {
        assert_eq!(decode(Bytes::new()), Err(DecodeError::Empty));
        let mut future = encode(Body::Message(envelope())).to_vec();
        future[0] = 2;
        assert_eq!(decode(Bytes::from(future)), Err(DecodeError::UnknownVersion(2)));
        let whole = encode(Body::Message(envelope()));
        let truncated = whole.slice(..whole.len() - 5);
        assert!(matches!(decode(truncated), Err(DecodeError::Malformed(_))));
        assert_eq!(decode(Bytes::from_static(&[WIRE_VERSION])), Err(DecodeError::NoBody));
        assert!(matches!(
            decode(Bytes::from_static(&[WIRE_VERSION, 0xff, 0xff, 0xff])),
            Err(DecodeError::Malformed(_))
        ));
    }
}

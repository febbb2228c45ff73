//! Pusher Channels' client protocol 7: one JSON object per WebSocket text frame, `{event,
//! channel?, data}` (docs/pusher.md).
//!
//! - A channel is a group of the same name in the app's native hub, so Pusher, native and
//!   REST clients of an app meet in the same groups.
//! - `pusher:subscribe` joins: a public channel by right (the app turned Pusher on), a
//!   `private-…` one (encrypted ones included) by the `auth` signature of the app's backend
//!   over `socket_id:channel`, a `presence-…` one over `socket_id:channel:channel_data`, which
//!   names the connection's user. Its answer names the channel: `subscription_succeeded` (with
//!   the members, for presence), or `subscription_error`. Members come and go as users:
//!   `member_added` with a user's first connection, `member_removed` with their last.
//! - A client event (`client-…`) is published to a private channel the connection is in, to
//!   everybody but the sender.
//! - What the server sends carries its data as a string (JSON text unless the data is a
//!   string), as Pusher's server libraries do; a client event's data goes on as it came.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use signalbox_core::{CloseCode, ErrorCode, EventName, GroupName, UserId};
use signalbox_proto::native::ReplyId;
use signalbox_proto::wire::DataKind;

use crate::protocol::{
    Answer, Command, ESCAPED_NAME, Input, JoinMember, JoinProof, Outbound, PresenceNotice, Protocol, ProtocolInfo,
    Violation,
};

#[derive(Debug)]
pub(crate) struct Pusher;

static INFO: ProtocolInfo = ProtocolInfo {
    name: "pusher.v7",
    binary: false,
    delimits: false,
    keepalive: None,
    opening: None,
    message_bound,
    close_code,
};

/// Signalbox's close codes are in Pusher's ranges (4000-4099 give up, 4100-4199 back off,
/// 4200-4299 reconnect now) except 4000, which Pusher clients read as "use TLS": the backend's
/// close goes out as Pusher's 4009 ("you got disconnected by the app"; no reconnect).
fn close_code(code: CloseCode) -> u16 {
    match code {
        CloseCode::ClosedByBackend => 4009,
        other => other.code(),
    }
}

/// `{"event":…,"channel":…,"data":"…"}`: data as a JSON string (escaped at worst: `\u00XX`
/// for every byte), binary data as base64.
fn message_bound(max_payload: usize) -> usize {
    64 + 2 * ESCAPED_NAME + 6 * max_payload
}

/// The prefix of channels that need the backend's signature to join.
const PRIVATE: &str = "private-";
const PRESENCE: &str = "presence-";
/// Channels only the server may name (a signed-in user's own).
const INTERNAL: &str = "#";
/// A signed-in user's own channel: `#server-to-user-{id}`.
const SERVER_TO_USER: &str = "#server-to-user-";
/// The prefix of events clients may send.
const CLIENT_EVENT: &str = "client-";
/// Pusher's code for a client event refused by the rate limit (sent, never a close).
const RATE_LIMITED: u16 = 4301;

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Subscription {
    channel: String,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    channel_data: Option<String>,
}

#[derive(Deserialize)]
struct Unsubscription {
    channel: String,
}

fn invalid(message: impl Into<String>) -> Command {
    Command::Invalid { reply: None, code: ErrorCode::BadRequest, message: message.into() }
}

/// A refusal that names its channel (a `subscription_error`).
fn refused(channel: &str, message: impl Into<String>) -> Command {
    Command::Unsupported { reply: Some(ReplyId::Text(channel.to_owned())), message: message.into() }
}

fn subscribe(input: &Input, data: Option<&RawValue>) -> Command {
    let Some(Ok(subscription)) = data.map(|d| serde_json::from_str::<Subscription>(d.get())) else {
        return invalid("pusher:subscribe needs data with a channel");
    };
    let channel = subscription.channel;
    let Ok(group) = GroupName::new(&channel) else {
        return refused(&channel, format!("invalid channel name {channel:?}"));
    };
    let reply = Some(ReplyId::Text(channel.clone()));
    if let Some(user) = channel.strip_prefix(SERVER_TO_USER) {
        let Ok(user) = UserId::new(user) else { return refused(&channel, "invalid user id") };
        return Command::Join { reply, group, since: None, proof: Some(JoinProof::SignedInAs(user)), member: None };
    }
    if channel.starts_with(INTERNAL) {
        return refused(&channel, "channels starting with # are the server's");
    }
    let presence = channel.starts_with(PRESENCE);
    if !presence && !channel.starts_with(PRIVATE) {
        return Command::Join { reply, group, since: None, proof: None, member: None };
    }
    let Some(connection) = &input.connection else { return refused(&channel, "no socket id") };
    let Some((key, signature)) = subscription.auth.as_deref().and_then(|auth| auth.split_once(':')) else {
        return refused(&channel, "a private or presence channel needs `auth`: key:signature");
    };
    let member = match (presence, subscription.channel_data.as_deref()) {
        (true, Some(data)) => match member_of(data) {
            Some(member) => Some(member),
            None => return refused(&channel, "channel_data must be JSON with a user_id"),
        },
        (true, None) => return refused(&channel, "a presence channel needs channel_data"),
        (false, _) => None,
    };
    let socket = signalbox_core::pusher::socket_id(connection);
    let signed = signalbox_core::pusher::subscription_payload(&socket, &channel, subscription.channel_data.as_deref());
    let proof = JoinProof::Signed { key: key.to_owned(), signed, signature: signature.to_owned() };
    Command::Join { reply, group, since: None, proof: Some(proof), member }
}

#[derive(Deserialize)]
struct SignIn {
    auth: String,
    user_data: String,
}

/// `pusher:signin`: `auth` signs `socket_id::user::user_data`, whose `id` is the user.
fn sign_in(input: &Input, data: Option<&RawValue>) -> Command {
    let Some(Ok(SignIn { auth, user_data })) = data.map(|d| serde_json::from_str::<SignIn>(d.get())) else {
        return invalid("pusher:signin needs data with auth and user_data");
    };
    let Some((key, signature)) = auth.split_once(':') else { return invalid("auth is key:signature") };
    let Some(connection) = &input.connection else { return invalid("no socket id") };
    let Ok(fields) = serde_json::from_str::<serde_json::Value>(&user_data) else {
        return invalid("user_data must be JSON");
    };
    let Some(Ok(user)) = fields["id"].as_str().filter(|id| !id.is_empty()).map(UserId::new) else {
        return invalid("user_data needs a non-empty string id");
    };
    let info = fields.get("user_info").filter(|info| !info.is_null()).map(ToString::to_string);
    let socket = signalbox_core::pusher::socket_id(connection);
    let signed = format!("{socket}::user::{user_data}");
    let proof = JoinProof::Signed { key: key.to_owned(), signed, signature: signature.to_owned() };
    Command::SignIn { proof, member: JoinMember { user, info }, user_data }
}

/// `{"user_id": "…" (or a number), "user_info": …}`.
fn member_of(channel_data: &str) -> Option<JoinMember> {
    let data: serde_json::Value = serde_json::from_str(channel_data).ok()?;
    let user = match &data["user_id"] {
        serde_json::Value::String(id) => id.clone(),
        serde_json::Value::Number(id) => id.to_string(),
        _ => return None,
    };
    let info = data.get("user_info").filter(|info| !info.is_null()).map(ToString::to_string);
    Some(JoinMember { user: signalbox_core::UserId::new(user).ok()?, info })
}

fn client_event(event: &str, channel: Option<&str>, data: Option<&RawValue>) -> Command {
    let Some(channel) = channel else { return invalid("a client event needs a channel") };
    if !channel.starts_with(PRIVATE) && !channel.starts_with(PRESENCE) {
        return invalid(format!("client events go to private or presence channels only, not {channel:?}"));
    }
    let (Ok(group), Ok(event)) = (GroupName::new(channel), EventName::new(event)) else {
        return invalid("invalid channel or event name");
    };
    let data = Bytes::from(data.map_or("null", RawValue::get).to_owned());
    Command::Publish { reply: None, group, event, data, no_echo: true, members_only: true }
}

impl Protocol for Pusher {
    fn info(&self) -> &ProtocolInfo {
        &INFO
    }

    /// Each call is one whole frame: the transport (WebSocket) cuts messages.
    fn decode(&self, input: &mut Input, data: &[u8], commands: &mut Vec<Command>) -> Result<(), Violation> {
        let Ok(frame) = serde_json::from_slice::<Frame<'_>>(data) else {
            commands.push(invalid("a message is a JSON object with an `event`"));
            return Ok(());
        };
        let channel = frame.channel.as_deref();
        let command = match &*frame.event {
            "pusher:ping" => Some(Command::Ping { reply: None }),
            "pusher:pong" => None,
            "pusher:subscribe" => Some(subscribe(input, frame.data)),
            "pusher:unsubscribe" => match frame.data.map(|d| serde_json::from_str::<Unsubscription>(d.get())) {
                Some(Ok(Unsubscription { channel })) => {
                    GroupName::new(&channel).ok().map(|group| Command::Leave { reply: None, group })
                }
                _ => Some(invalid("pusher:unsubscribe needs data with a channel")),
            },
            "pusher:signin" => Some(sign_in(input, frame.data)),
            event if event.starts_with(CLIENT_EVENT) => Some(client_event(event, channel, frame.data)),
            // Other events are not the client's to send; Pusher ignores them.
            _ => None,
        };
        commands.extend(command);
        Ok(())
    }

    fn encode(&self, outbound: &Outbound<'_>) -> Option<Vec<u8>> {
        Some(match *outbound {
            Outbound::Welcome { connection_id, heartbeat_seconds, .. } => {
                let id = signalbox_core::ConnectionId::new(connection_id).ok()?;
                let established = serde_json::json!({
                    "socket_id": signalbox_core::pusher::socket_id(&id),
                    "activity_timeout": heartbeat_seconds.max(1),
                });
                event("pusher:connection_established", None, &established.to_string())
            }
            Outbound::Message(message) => {
                let data = match message.kind {
                    DataKind::Binary => {
                        use base64::Engine as _;
                        serde_json::to_string(&base64::engine::general_purpose::STANDARD.encode(message.data)).ok()?
                    }
                    DataKind::Json => carried(message.event, message.data),
                };
                // What is sent to a user arrives on their own channel.
                let own =
                    message.user.filter(|_| message.group.is_none()).map(|user| format!("{SERVER_TO_USER}{user}"));
                let mut frame = raw_event(message.event, message.group.or(own.as_deref()), &data);
                // A client event on a presence channel says who sent it.
                if let Some(sender) = message.sender.filter(|_| message.event.starts_with(CLIENT_EVENT)) {
                    frame.pop();
                    frame.extend_from_slice(b",\"user_id\":");
                    let _ = serde_json::to_writer(&mut frame, sender);
                    frame.push(b'}');
                }
                frame
            }
            Outbound::Reply { to, answer: Answer::Ok | Answer::Position(_) | Answer::Recovery(_) } => {
                event("pusher_internal:subscription_succeeded", Some(&channel_of(to)), "{}")
            }
            // A presence channel's members: users, with their info.
            Outbound::Reply { to, answer: Answer::Presence(summary) } => {
                let ids: Vec<&str> = summary.members.iter().map(|m| m.user_id.as_str()).collect();
                let hash: serde_json::Map<String, serde_json::Value> =
                    summary.members.iter().map(|m| (m.user_id.clone(), info_value(m.info_json.as_deref()))).collect();
                let presence = serde_json::json!({"presence": {"ids": ids, "hash": hash, "count": ids.len()}});
                event("pusher_internal:subscription_succeeded", Some(&channel_of(to)), &presence.to_string())
            }
            Outbound::Presence(PresenceNotice::UserAdded { group, user, info, .. }) => {
                let member = serde_json::json!({"user_id": user, "user_info": info_value(info)});
                event("pusher_internal:member_added", Some(group), &member.to_string())
            }
            Outbound::Presence(PresenceNotice::UserRemoved { group, user, .. }) => {
                event("pusher_internal:member_removed", Some(group), &serde_json::json!({"user_id": user}).to_string())
            }
            Outbound::Error { to: Some(to), code, message } => {
                let status = if code == ErrorCode::Forbidden { 401 } else { 400 };
                let error = serde_json::json!({"type": "AuthError", "error": message, "status": status});
                raw_event("pusher:subscription_error", Some(&channel_of(to)), &error.to_string())
            }
            Outbound::Error { to: None, code, message } => {
                let code = (code == ErrorCode::RateLimited).then_some(RATE_LIMITED);
                raw_event("pusher:error", None, &serde_json::json!({"code": code, "message": message}).to_string())
            }
            Outbound::Pong(_) => event("pusher:pong", None, "{}"),
            // `user_data` stays the string the backend signed (pusher-js parses it).
            Outbound::SignedIn(user_data) => {
                event("pusher:signin_success", None, &serde_json::json!({"user_data": user_data}).to_string())
            }
            // Closes carry their code in the WebSocket close frame (Pusher's ranges: 4000-4099
            // give up, 4100-4199 back off, 4200-4299 reconnect now).
            Outbound::Opened
            | Outbound::OpenRefused(_)
            | Outbound::Presence(_)
            | Outbound::Reply { .. }
            | Outbound::Recovery(_)
            | Outbound::KeepAlive
            | Outbound::Reconnect(_)
            | Outbound::Close(_)
            | Outbound::Ack(_)
            | Outbound::Sequence(_) => return None,
        })
    }
}

fn info_value(info: Option<&str>) -> serde_json::Value {
    info.and_then(|i| serde_json::from_str(i).ok()).unwrap_or(serde_json::Value::Null)
}

fn channel_of(reply: &ReplyId) -> String {
    match reply {
        ReplyId::Text(channel) => channel.clone(),
        ReplyId::Number(n) => n.to_string(),
    }
}

/// A message's data as Pusher carries it: a client event's as it came; anything else as a
/// string — the string itself, or the JSON text of any other value.
fn carried(event: &str, data: &[u8]) -> String {
    let data = if data.is_empty() { b"null".as_slice() } else { data };
    if event.starts_with(CLIENT_EVENT) || data.first() == Some(&b'"') {
        return String::from_utf8_lossy(data).into_owned();
    }
    serde_json::to_string(&String::from_utf8_lossy(data)).unwrap_or_default()
}

/// `{"event":…,"channel":…,"data":…}` with `data` given as a JSON string's contents.
fn event(name: &str, channel: Option<&str>, data: &str) -> Vec<u8> {
    raw_event(name, channel, &serde_json::to_string(data).unwrap_or_default())
}

/// `{"event":…,"channel":…,"data":…}` with `data` as JSON text.
fn raw_event(name: &str, channel: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + name.len() + data.len());
    out.extend_from_slice(b"{\"event\":");
    let _ = serde_json::to_writer(&mut out, name);
    if let Some(channel) = channel {
        out.extend_from_slice(b",\"channel\":");
        let _ = serde_json::to_writer(&mut out, channel);
    }
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.as_bytes());
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &mut Input, frame: serde_json::Value) -> Vec<Command> {
        let mut commands = Vec::new();
        Pusher.decode(input, frame.to_string().as_bytes(), &mut commands).unwrap();
        commands
    }

    fn input() -> Input {
        let mut input = Input::new(&INFO, 1024);
        input.connection = signalbox_core::ConnectionId::new("123-456").ok();
        input
    }

    #[test]
    fn a_private_subscription_carries_what_the_backend_signed() {
        let subscribe =
            serde_json::json!({"event": "pusher:subscribe", "data": {"channel": "private-a", "auth": "key_1:abc"}});
        let [Command::Join { reply, group, proof: Some(proof), .. }] = &decode(&mut input(), subscribe)[..] else {
            panic!("a join with a proof")
        };
        assert_eq!((reply, group.as_str()), (&Some(ReplyId::Text("private-a".into())), "private-a"));
        assert_eq!(
            proof,
            &JoinProof::Signed { key: "key_1".into(), signed: "123.456:private-a".into(), signature: "abc".into() }
        );
        let unsigned = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": "private-a"}});
        assert!(matches!(&decode(&mut input(), unsigned)[..], [Command::Unsupported { .. }]), "no auth, no join");
        let public = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": "news", "auth": ""}});
        assert!(matches!(&decode(&mut input(), public)[..], [Command::Join { proof: None, .. }]));
    }

    #[test]
    fn client_events_go_to_private_channels_from_members_and_not_back() {
        let event = serde_json::json!({"event": "client-typing", "channel": "private-a", "data": {"x": 1}});
        let [Command::Publish { data, no_echo: true, members_only: true, .. }] = &decode(&mut input(), event)[..]
        else {
            panic!("a members-only publish without echo")
        };
        assert_eq!(&data[..], br#"{"x":1}"#);
        let public = serde_json::json!({"event": "client-typing", "channel": "news", "data": {}});
        assert!(matches!(&decode(&mut input(), public)[..], [Command::Invalid { .. }]));
    }

    #[test]
    fn data_is_a_string_except_a_client_events() {
        assert_eq!(carried("update", br#"{"a":1}"#), r#""{\"a\":1}""#);
        assert_eq!(carried("update", br#""text""#), r#""text""#);
        assert_eq!(carried("client-x", br#"{"a":1}"#), r#"{"a":1}"#);
        assert_eq!(carried("update", b""), r#""null""#);
    }
}

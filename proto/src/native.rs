//! The native client protocol, `signalbox.json.v1`: one JSON object per WebSocket text frame.
//! `docs/protocol.md` is the specification; this module is its one implementation.
//!
//! Inbound frames are parsed in two steps — first `type` and `id`, then the fields of that
//! type — so that a malformed frame still gets a reply carrying its `id` whenever the id
//! itself could be read, and every failure maps to one [`ErrorCode`].
//!
//! Outbound frames are written by hand into a byte buffer: the hub encodes a message once
//! per broadcast, so this is the one encoder on the fan-out path.

use std::borrow::Cow;
use std::io::Write as _;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use signalbox_core::{ErrorCode, EventName, GroupName, InvalidName, RecoveryFailure};

use crate::presence::PresenceSummary;
use crate::wire::DataKind;

/// The WebSocket subprotocol name.
pub const SUBPROTOCOL: &str = "signalbox.json.v1";

/// Longest accepted string `id`.
pub const REPLY_ID_MAX_LEN: usize = 64;

/// The `id` a client puts on a request to get a reply; echoed back as it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReplyId {
    Number(u64),
    Text(String),
}

/// A parsed, validated client request.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRequest {
    pub id: Option<ReplyId>,
    pub command: ClientCommand,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientCommand {
    /// `since`: the last position the client saw in this group, to recover what it missed.
    Join {
        group: GroupName,
        since: Option<u64>,
    },
    Leave {
        group: GroupName,
    },
    /// `data` is the raw JSON text of the payload (`null` when absent).
    Publish {
        group: GroupName,
        event: EventName,
        data: Bytes,
        no_echo: bool,
    },
    /// Application-level heartbeat for clients that cannot see WebSocket pings (browsers).
    Ping,
    /// Who is in a group.
    Presence {
        group: GroupName,
    },
    /// A client event for the app's webhook; `data` is raw JSON (`null` when absent).
    Event {
        event: EventName,
        data: Bytes,
    },
}

/// A frame that could not become a request: answered with an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub id: Option<ReplyId>,
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    id: Option<ReplyId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupArgs<'a> {
    #[serde(rename = "type")]
    _kind: &'a str,
    #[serde(rename = "id")]
    _id: Option<ReplyId>,
    #[serde(borrow)]
    group: Cow<'a, str>,
    /// Only on join.
    since: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishArgs<'a> {
    #[serde(rename = "type")]
    _kind: &'a str,
    #[serde(rename = "id")]
    _id: Option<ReplyId>,
    #[serde(borrow)]
    group: Cow<'a, str>,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, rename = "noEcho")]
    no_echo: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceArgs<'a> {
    #[serde(rename = "type")]
    _kind: &'a str,
    #[serde(rename = "id")]
    _id: Option<ReplyId>,
    #[serde(borrow)]
    group: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventArgs<'a> {
    #[serde(rename = "type")]
    _kind: &'a str,
    #[serde(rename = "id")]
    _id: Option<ReplyId>,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PingArgs<'a> {
    #[serde(rename = "type")]
    _kind: &'a str,
    #[serde(rename = "id")]
    _id: Option<ReplyId>,
}

/// Parses one inbound text frame.
pub fn parse_client_frame(text: &[u8]) -> Result<ClientRequest, FrameError> {
    let head: Head<'_> = serde_json::from_slice(text).map_err(|e| FrameError {
        id: None,
        code: ErrorCode::BadRequest,
        message: format!("frame is not a JSON object with a valid type and id: {e}"),
    })?;
    let id = head.id;
    if let Some(ReplyId::Text(t)) = &id
        && t.len() > REPLY_ID_MAX_LEN
    {
        return Err(FrameError {
            id: None,
            code: ErrorCode::BadRequest,
            message: format!("id is longer than {REPLY_ID_MAX_LEN} bytes"),
        });
    }
    let fail = |code: ErrorCode, message: String| FrameError { id: id.clone(), code, message };
    let bad_fields = |e: serde_json::Error| fail(ErrorCode::BadRequest, format!("invalid fields: {e}"));
    let invalid_name = |e: InvalidName| fail(ErrorCode::InvalidName, e.to_string());
    // Payloads are stored and delivered as they are: each must be JSON every client can read
    // back (depth, finite numbers).
    let payload = |data: Option<&RawValue>| match data {
        Some(raw) => signalbox_core::json::check(raw.get().as_bytes())
            .map(|()| raw_or_null(data))
            .map_err(|e| fail(ErrorCode::BadRequest, format!("data: {e}"))),
        None => Ok(raw_or_null(None)),
    };
    let Some(kind) = head.kind else {
        return Err(fail(ErrorCode::BadRequest, "missing field `type`".into()));
    };
    let command = match &*kind {
        "join" | "leave" => {
            let args: GroupArgs<'_> = serde_json::from_slice(text).map_err(bad_fields)?;
            let group = GroupName::new(&*args.group).map_err(invalid_name)?;
            match (&*kind, args.since) {
                ("join", since) => ClientCommand::Join { group, since },
                (_, None) => ClientCommand::Leave { group },
                (_, Some(_)) => return Err(fail(ErrorCode::BadRequest, "`since` is only for join".into())),
            }
        }
        "publish" => {
            let args: PublishArgs<'_> = serde_json::from_slice(text).map_err(bad_fields)?;
            ClientCommand::Publish {
                group: GroupName::new(&*args.group).map_err(invalid_name)?,
                event: EventName::new(&*args.event).map_err(invalid_name)?,
                data: payload(args.data)?,
                no_echo: args.no_echo,
            }
        }
        "ping" => {
            let _: PingArgs<'_> = serde_json::from_slice(text).map_err(bad_fields)?;
            ClientCommand::Ping
        }
        "presence" => {
            let args: PresenceArgs<'_> = serde_json::from_slice(text).map_err(bad_fields)?;
            ClientCommand::Presence { group: GroupName::new(&*args.group).map_err(invalid_name)? }
        }
        "event" => {
            let args: EventArgs<'_> = serde_json::from_slice(text).map_err(bad_fields)?;
            ClientCommand::Event {
                event: EventName::new(&*args.event).map_err(invalid_name)?,
                data: payload(args.data)?,
            }
        }
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(fail(ErrorCode::UnknownType, format!("unknown frame type {shown:?}")));
        }
    };
    Ok(ClientRequest { id, command })
}

fn raw_or_null(data: Option<&RawValue>) -> Bytes {
    data.map_or_else(|| Bytes::from_static(b"null"), |raw| Bytes::copy_from_slice(raw.get().as_bytes()))
}

/// Writes JSON into a byte buffer. Writing to a `Vec` cannot fail, so results are ignored.
struct JsonWriter(Vec<u8>);

impl JsonWriter {
    fn new(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }

    fn string(&mut self, s: &str) -> &mut Self {
        let _ = serde_json::to_writer(&mut self.0, s);
        self
    }

    fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> &mut Self {
        let _ = serde_json::to_writer(&mut self.0, v);
        self
    }

    fn number(&mut self, n: u64) -> &mut Self {
        let _ = write!(self.0, "{n}");
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// `{"type":"welcome",…}`: the first frame of every session.
pub fn encode_welcome(connection_id: &str, user_id: Option<&str>, heartbeat_seconds: u64) -> Vec<u8> {
    let mut w = JsonWriter::new(128);
    w.raw(br#"{"type":"welcome","connectionId":"#).string(connection_id);
    if let Some(user) = user_id {
        w.raw(br#","userId":"#).string(user);
    }
    w.raw(br#","heartbeatSeconds":"#).number(heartbeat_seconds).raw(b"}");
    w.finish()
}

/// `{"type":"message",…}`: one delivery. Encoded once per broadcast.
pub fn encode_message(event: &str, kind: DataKind, data: &[u8], group: Option<&str>, seq: Option<u64>) -> Vec<u8> {
    let mut w = JsonWriter::new(64 + event.len() + data.len() + group.map_or(0, str::len));
    w.raw(br#"{"type":"message","event":"#).string(event);
    match kind {
        DataKind::Json => {
            w.raw(br#","data":"#).raw(if data.is_empty() { b"null" } else { data });
        }
        DataKind::Binary => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(data);
            w.raw(br#","data":"#).string(&encoded).raw(br#","encoding":"base64""#);
        }
    }
    if let Some(group) = group {
        w.raw(br#","group":"#).string(group);
    }
    if let Some(seq) = seq {
        w.raw(br#","seq":"#).number(seq);
    }
    w.raw(b"}");
    w.finish()
}

/// `{"type":"reply","id":…}` on success.
pub fn encode_reply_ok(id: &ReplyId) -> Vec<u8> {
    let mut w = JsonWriter::new(40);
    w.raw(br#"{"type":"reply","id":"#).value(id).raw(b"}");
    w.finish()
}

/// `{"type":"reply","id":…,"position":…}`: a publish to a group with history, stored.
pub fn encode_reply_position(id: &ReplyId, position: u64) -> Vec<u8> {
    let mut w = JsonWriter::new(60);
    w.raw(br#"{"type":"reply","id":"#).value(id).raw(br#","position":"#).number(position).raw(b"}");
    w.finish()
}

/// What a recovery found for one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupRecovery {
    pub group: String,
    /// True when every message after the client's position was delivered, in order, once.
    pub recovered: bool,
    /// Why not, when not: a stable code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<RecoveryFailure>,
    /// The same in words, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
}

impl GroupRecovery {
    pub fn recovered(group: impl Into<String>) -> Self {
        Self { group: group.into(), recovered: true, reason: None, message: None }
    }

    pub fn failed(group: impl Into<String>, reason: RecoveryFailure) -> Self {
        Self { group: group.into(), recovered: false, reason: Some(reason), message: Some(reason.message()) }
    }
}

/// `{"type":"reply","id":…,"recovered":…}`: a join with `since`, its replay done.
pub fn encode_reply_recovery(id: &ReplyId, outcome: &GroupRecovery) -> Vec<u8> {
    let mut w = JsonWriter::new(96);
    w.raw(br#"{"type":"reply","id":"#).value(id).raw(br#","recovered":"#).value(&outcome.recovered);
    if let Some(reason) = outcome.reason {
        w.raw(br#","reason":"#).string(reason.as_str()).raw(br#","message":"#).string(reason.message());
    }
    w.raw(b"}");
    w.finish()
}

/// `{"type":"recovery","recovered":…,"groups":[…]}`: after the replays a connection asked for
/// at connect; `recovered` is true only if every group recovered.
pub fn encode_recovery(groups: &[GroupRecovery]) -> Vec<u8> {
    let mut w = JsonWriter::new(64 + 48 * groups.len());
    let all = groups.iter().all(|g| g.recovered);
    w.raw(br#"{"type":"recovery","recovered":"#).value(&all).raw(br#","groups":"#).value(groups).raw(b"}");
    w.finish()
}

/// `{"type":"reply","id":…,"presence":{"count":…,"connections":…,"members":[…]}}`.
pub fn encode_reply_presence(id: &ReplyId, presence: &PresenceSummary) -> Vec<u8> {
    let mut w = JsonWriter::new(96 + 64 * presence.members.len());
    w.raw(br#"{"type":"reply","id":"#).value(id).raw(br#","presence":{"count":"#).number(presence.count() as u64);
    w.raw(br#","connections":"#).number(presence.connections as u64).raw(br#","members":["#);
    for (i, member) in presence.members.iter().enumerate() {
        if i > 0 {
            w.raw(b",");
        }
        w.raw(br#"{"userId":"#).string(&member.user_id);
        w.raw(br#","connections":"#).number(member.connections as u64);
        if let Some(info) = member.info_json.as_deref().filter(|i| serde_json::from_str::<&RawValue>(i).is_ok()) {
            w.raw(br#","info":"#).raw(info.as_bytes());
        }
        w.raw(b"}");
    }
    w.raw(b"]}}");
    w.finish()
}

/// `{"type":"reply","id":…,"data":…}`: the app's answer to a client event (raw JSON).
pub fn encode_reply_data(id: &ReplyId, data: &[u8]) -> Vec<u8> {
    let mut w = JsonWriter::new(40 + data.len());
    let data = if data.is_empty() { b"null".as_slice() } else { data };
    w.raw(br#"{"type":"reply","id":"#).value(id).raw(br#","data":"#).raw(data).raw(b"}");
    w.finish()
}

/// A member in a presence event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceChange<'a> {
    #[serde(rename = "userId", skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
    #[serde(rename = "connectionId")]
    pub connection_id: &'a str,
}

/// `{"type":"presence","group":…,"joined":[…],"left":[…],"count":…}`: members came and went.
pub fn encode_presence_members(
    group: &str,
    joined: &[PresenceChange<'_>],
    left: &[PresenceChange<'_>],
    count: u64,
    truncated: bool,
) -> Vec<u8> {
    let mut w = JsonWriter::new(64 + group.len() + 64 * (joined.len() + left.len()));
    w.raw(br#"{"type":"presence","group":"#).string(group);
    w.raw(br#","joined":"#).value(joined).raw(br#","left":"#).value(left);
    w.raw(br#","count":"#).number(count);
    if truncated {
        w.raw(br#","truncated":true"#);
    }
    w.raw(b"}");
    w.finish()
}

/// `{"type":"presence","group":…,"count":…}`: the group's number of connections changed.
pub fn encode_presence_count(group: &str, count: u64) -> Vec<u8> {
    let mut w = JsonWriter::new(48 + group.len());
    w.raw(br#"{"type":"presence","group":"#).string(group).raw(br#","count":"#).number(count).raw(b"}");
    w.finish()
}

/// `{"type":"reconnect","reason":…}`: the node is going away; reconnect (elsewhere) now.
pub fn encode_reconnect(reason: &str) -> Vec<u8> {
    let mut w = JsonWriter::new(48 + reason.len());
    w.raw(br#"{"type":"reconnect","reason":"#).string(reason).raw(b"}");
    w.finish()
}

/// `{"type":"reply","id":…,"error":{…}}`, or `{"type":"error","error":{…}}` when the request
/// carried no id — so that no failure is ever silent.
pub fn encode_error(id: Option<&ReplyId>, code: ErrorCode, message: &str) -> Vec<u8> {
    let mut w = JsonWriter::new(96 + message.len());
    match id {
        Some(id) => w.raw(br#"{"type":"reply","id":"#).value(id).raw(b","),
        None => w.raw(br#"{"type":"error","#),
    };
    w.raw(br#""error":{"code":"#).string(code.as_str()).raw(br#","message":"#).string(message).raw(b"}}");
    w.finish()
}

/// `{"type":"pong"}`, with the ping's id if it had one.
pub fn encode_pong(id: Option<&ReplyId>) -> Vec<u8> {
    let mut w = JsonWriter::new(40);
    w.raw(br#"{"type":"pong""#);
    if let Some(id) = id {
        w.raw(br#","id":"#).value(id);
    }
    w.raw(b"}");
    w.finish()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn parse(v: &str) -> Result<ClientRequest, FrameError> {
        parse_client_frame(v.as_bytes())
    }

    #[test]
    fn parses_each_type() {
        let join = parse(r#"{"type":"join","group":"room-1","id":1}"#).expect("join");
        assert_eq!(join.id, Some(ReplyId::Number(1)));
        assert_eq!(join.command, ClientCommand::Join { group: GroupName::new("room-1").expect("valid"), since: None });
        let resume = parse(r#"{"type":"join","group":"g","since":42}"#).expect("join since");
        assert!(matches!(resume.command, ClientCommand::Join { since: Some(42), .. }));
        assert_eq!(
            parse(r#"{"type":"leave","group":"g","since":4}"#).expect_err("since on leave").code,
            ErrorCode::BadRequest
        );
        let leave = parse(r#"{"type":"leave","group":"room-1","id":"a"}"#).expect("leave");
        assert_eq!(leave.id, Some(ReplyId::Text("a".into())));
        let publish = parse(r#"{"type":"publish","group":"g","event":"e","data":{"x":[1,2]}}"#).expect("publish");
        let ClientCommand::Publish { data, no_echo, .. } = publish.command else { panic!("not publish") };
        assert_eq!(&data[..], br#"{"x":[1,2]}"#);
        assert!(!no_echo);
        let no_data = parse(r#"{"type":"publish","group":"g","event":"e","noEcho":true}"#).expect("publish");
        assert!(
            matches!(no_data.command, ClientCommand::Publish { ref data, no_echo: true, .. } if &data[..] == b"null")
        );
        assert_eq!(parse(r#"{"type":"ping"}"#).expect("ping").command, ClientCommand::Ping);
        let presence = parse(r#"{"type":"presence","group":"g","id":3}"#).expect("presence");
        assert_eq!(presence.command, ClientCommand::Presence { group: GroupName::new("g").expect("valid") });
        let event = parse(r#"{"type":"event","event":"vote","data":[1]}"#).expect("event");
        assert!(matches!(event.command, ClientCommand::Event { ref data, .. } if &data[..] == b"[1]"));
        assert_eq!(parse(r#"{"type":"event","id":2}"#).expect_err("no event name").code, ErrorCode::BadRequest);
        assert_eq!(parse(r#"{"type":"presence","group":""}"#).expect_err("bad group").code, ErrorCode::InvalidName);
    }

    #[test]
    fn malformed_frames_map_to_codes_and_keep_the_id() {
        let cases = [
            ("not json", None, ErrorCode::BadRequest),
            ("[1,2]", None, ErrorCode::BadRequest),
            ("{}", None, ErrorCode::BadRequest),
            (r#"{"id":5}"#, Some(ReplyId::Number(5)), ErrorCode::BadRequest),
            (r#"{"type":"fly","id":5}"#, Some(ReplyId::Number(5)), ErrorCode::UnknownType),
            (r#"{"type":"join","id":5}"#, Some(ReplyId::Number(5)), ErrorCode::BadRequest),
            (r#"{"type":"join","group":7,"id":5}"#, Some(ReplyId::Number(5)), ErrorCode::BadRequest),
            (r#"{"type":"join","group":"g","extra":1,"id":5}"#, Some(ReplyId::Number(5)), ErrorCode::BadRequest),
            (r#"{"type":"join","group":"","id":5}"#, Some(ReplyId::Number(5)), ErrorCode::InvalidName),
            (r#"{"type":"join","group":"a\u0000b","id":5}"#, Some(ReplyId::Number(5)), ErrorCode::InvalidName),
            (r#"{"type":"publish","group":"g","id":5}"#, Some(ReplyId::Number(5)), ErrorCode::BadRequest),
            (r#"{"type":"publish","group":"g","event":"","id":5}"#, Some(ReplyId::Number(5)), ErrorCode::InvalidName),
            (r#"{"type":"join","group":"g","id":{"x":1}}"#, None, ErrorCode::BadRequest),
            (r#"{"type":"join","group":"g","id":-1}"#, None, ErrorCode::BadRequest),
        ];
        for (frame, id, code) in cases {
            let err = parse(frame).expect_err(frame);
            assert_eq!((err.id, err.code), (id, code), "{frame}");
            assert!(!err.message.is_empty());
        }
        let long_id = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(65));
        assert_eq!(parse(&long_id).expect_err("long id").id, None);
    }

    #[test]
    fn outbound_frames_are_valid_json() {
        let v = |bytes: Vec<u8>| serde_json::from_slice::<Value>(&bytes).expect("valid json");
        assert_eq!(
            v(encode_welcome("c_1", Some("u\"1"), 25)),
            json!({"type":"welcome","connectionId":"c_1","userId":"u\"1","heartbeatSeconds":25})
        );
        assert_eq!(
            v(encode_message("e\n", DataKind::Json, br#"{"a":1}"#, Some("g"), Some(3))),
            json!({"type":"message","event":"e\n","data":{"a":1},"group":"g","seq":3})
        );
        assert_eq!(
            v(encode_message("e", DataKind::Binary, &[0, 1, 2], None, None)),
            json!({"type":"message","event":"e","data":"AAEC","encoding":"base64"})
        );
        assert_eq!(v(encode_reply_ok(&ReplyId::Text("x".into()))), json!({"type":"reply","id":"x"}));
        assert_eq!(
            v(encode_error(Some(&ReplyId::Number(2)), ErrorCode::Forbidden, "no")),
            json!({"type":"reply","id":2,"error":{"code":"forbidden","message":"no"}})
        );
        assert_eq!(
            v(encode_error(None, ErrorCode::BadRequest, "bad")),
            json!({"type":"error","error":{"code":"bad_request","message":"bad"}})
        );
        assert_eq!(v(encode_pong(None)), json!({"type":"pong"}));
        assert_eq!(v(encode_reply_position(&ReplyId::Number(1), 9)), json!({"type":"reply","id":1,"position":9}));
        let lost = GroupRecovery::failed("g", RecoveryFailure::Expired);
        let expired = RecoveryFailure::Expired.message();
        assert_eq!(
            v(encode_reply_recovery(&ReplyId::Number(2), &lost)),
            json!({"type":"reply","id":2,"recovered":false,"reason":"expired","message":expired})
        );
        let ok = GroupRecovery::recovered("h");
        assert_eq!(
            v(encode_recovery(&[ok.clone(), lost])),
            json!({"type":"recovery","recovered":false,"groups":[{"group":"h","recovered":true},{"group":"g","recovered":false,"reason":"expired","message":expired}]})
        );
        assert_eq!(
            v(encode_recovery(&[ok])),
            json!({"type":"recovery","recovered":true,"groups":[{"group":"h","recovered":true}]})
        );
        assert_eq!(v(encode_reconnect("draining")), json!({"type":"reconnect","reason":"draining"}));
        let summary = crate::presence::PresenceSummary {
            connections: 3,
            members: vec![
                crate::presence::Member {
                    user_id: "a\"b".into(),
                    connections: 2,
                    info_json: Some(r#"{"x":1}"#.into()),
                },
                crate::presence::Member { user_id: "c".into(), connections: 1, info_json: Some("not json".into()) },
            ],
        };
        assert_eq!(
            v(encode_reply_presence(&ReplyId::Number(4), &summary)),
            json!({"type":"reply","id":4,"presence":{"count":2,"connections":3,"members":[
                {"userId":"a\"b","connections":2,"info":{"x":1}},{"userId":"c","connections":1}]}})
        );
        assert_eq!(v(encode_reply_data(&ReplyId::Number(5), b"")), json!({"type":"reply","id":5,"data":null}));
        assert_eq!(v(encode_reply_data(&ReplyId::Number(5), b"[1,2]")), json!({"type":"reply","id":5,"data":[1,2]}));
        let bob = PresenceChange { user_id: Some("bob"), connection_id: "c1" };
        let anon = PresenceChange { user_id: None, connection_id: "c2" };
        assert_eq!(
            v(encode_presence_members("g", &[bob], &[anon], 7, true)),
            json!({"type":"presence","group":"g","joined":[{"userId":"bob","connectionId":"c1"}],
                   "left":[{"connectionId":"c2"}],"count":7,"truncated":true})
        );
        assert_eq!(v(encode_presence_count("g", 3)), json!({"type":"presence","group":"g","count":3}));
    }
}

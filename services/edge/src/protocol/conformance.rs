//! The conformance suite every protocol runs: what the edge relies on, checked through an
//! independent test client per protocol that encodes requests and reads what the edge sends
//! the way a real client does.
//!
//! Adding a protocol means adding its test client to [`clients`]: every check below then
//! runs for it.

use bytes::Bytes;
use serde_json::{Value, json};
use signalbox_core::{CloseCode, ErrorCode, EventName, GroupName};
use signalbox_proto::native::{GroupRecovery, PresenceChange, ReplyId};
use signalbox_proto::presence::PresenceSummary;
use signalbox_proto::wire::DataKind;

use super::{Answer, Command, Encoding, Format, Input, MessageOut, Outbound, PresenceNotice, Transport, Violation};
use crate::outbox::CloseRequest;

/// What a client asks, before any protocol says it.
#[derive(Debug, Clone)]
enum Request {
    Join { id: &'static str, group: &'static str },
    Leave { id: &'static str, group: &'static str },
    Publish { id: &'static str, group: &'static str, event: &'static str, data: Value },
    Ping { id: &'static str },
    Event { id: &'static str, event: &'static str, data: Value },
}

/// What a client made of one message from the edge.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Welcome {
        connection_id: String,
    },
    Opened,
    Refused(String),
    Message {
        event: String,
        data: Value,
        group: Option<String>,
        seq: Option<u64>,
    },
    /// The change, as the protocol's presence object.
    Presence(Value),
    Ack(u64),
    Sequence(u64),
    Reply {
        id: String,
        outcome: Result<Option<Value>, String>,
    },
    Error(String),
    Pong,
    KeepAlive,
    Close {
        error: Option<String>,
        reconnect: bool,
    },
    Other(Value),
}

/// A protocol's client side, written independently of its codec.
trait TestClient {
    fn encoding(&self) -> Encoding;
    /// The encoding a connection starts in, before any opening chooses.
    fn initial(&self) -> Encoding {
        self.encoding()
    }
    /// The start of a message that never ends, over 64 KiB long.
    fn endless(&self) -> Vec<u8> {
        vec![b'a'; 70 * 1024]
    }
    /// The client's opening, for protocols that have one.
    fn opening(&self) -> Option<Vec<u8>>;
    /// An opening that asks to number counted messages (to resume), for protocols that can.
    fn numbered_opening(&self) -> Option<Vec<u8>> {
        None
    }
    /// The client's Ack of every counted message up to `through`, and its Sequence (the id of
    /// its next counted message, after a resume).
    fn ack(&self, _through: u64) -> Option<Vec<u8>> {
        None
    }
    fn sequence(&self, _next: u64) -> Option<Vec<u8>> {
        None
    }
    /// One request as the client sends it; `None` where the protocol cannot say it.
    fn request(&self, request: &Request) -> Option<Vec<u8>>;
    /// One message from the edge (without transport framing), as the client reads it.
    fn read(&self, message: &[u8]) -> Seen;
    /// How the protocol carries a payload (SignalR: as an invocation's arguments).
    fn carried(&self, data: &Value) -> Value;
    /// The command the protocol makes of a request it can say, when not the usual one.
    fn expected(&self, _request: &Request) -> Option<Command> {
        None
    }
    /// Whether presence notices reach its clients.
    fn carries_presence(&self) -> bool {
        true
    }
}

fn clients() -> Vec<Box<dyn TestClient>> {
    vec![
        Box::new(NativeClient),
        Box::new(SignalRClient { messagepack: false }),
        Box::new(SignalRClient { messagepack: true }),
        Box::new(PusherClient),
    ]
}

// ---- the test clients -----------------------------------------------------------------

struct NativeClient;

impl TestClient for NativeClient {
    fn encoding(&self) -> Encoding {
        Encoding::NATIVE
    }

    fn opening(&self) -> Option<Vec<u8>> {
        None
    }

    fn request(&self, request: &Request) -> Option<Vec<u8>> {
        let frame = match request {
            Request::Join { id, group } => json!({"type": "join", "id": id, "group": group}),
            Request::Leave { id, group } => json!({"type": "leave", "id": id, "group": group}),
            Request::Publish { id, group, event, data } => {
                json!({"type": "publish", "id": id, "group": group, "event": event, "data": data})
            }
            Request::Ping { id } => json!({"type": "ping", "id": id}),
            Request::Event { id, event, data } => json!({"type": "event", "id": id, "event": event, "data": data}),
        };
        Some(serde_json::to_vec(&frame).unwrap())
    }

    fn read(&self, message: &[u8]) -> Seen {
        let frame: Value = serde_json::from_slice(message).expect("a native frame is one JSON object");
        let text = |key: &str| frame[key].as_str().map(str::to_owned);
        match frame["type"].as_str().expect("every native frame has a type") {
            "welcome" => Seen::Welcome { connection_id: text("connectionId").unwrap() },
            "message" => Seen::Message {
                event: text("event").unwrap(),
                data: frame["data"].clone(),
                group: text("group"),
                seq: frame["seq"].as_u64(),
            },
            "presence" => Seen::Presence(frame.clone()),
            "reply" => {
                let id = match &frame["id"] {
                    Value::String(id) => id.clone(),
                    other => other.to_string(),
                };
                let outcome = match frame.get("error") {
                    Some(error) => Err(error["message"].as_str().unwrap().to_owned()),
                    None => Ok(frame.get("data").cloned()),
                };
                Seen::Reply { id, outcome }
            }
            "error" => Seen::Error(frame["error"]["message"].as_str().unwrap().to_owned()),
            "pong" => Seen::Pong,
            _ => Seen::Other(frame),
        }
    }

    fn carried(&self, data: &Value) -> Value {
        data.clone()
    }
}

struct SignalRClient {
    messagepack: bool,
}

impl SignalRClient {
    /// One hub message as JSON, whatever the encoding.
    fn message(&self, message: &[u8]) -> Value {
        if !self.messagepack {
            assert_eq!(message.last(), Some(&0x1e), "a JSON record ends with the record separator");
            return serde_json::from_slice(&message[..message.len() - 1]).expect("a record is one JSON object");
        }
        let (parts, used) = signalbox_proto::signalr::msgpack::split(message).expect("length-prefixed");
        assert_eq!((parts.len(), used), (1, message.len()), "one whole message");
        let value = rmpv::decode::read_value(&mut &parts[0][..]).expect("MessagePack");
        let items = value.as_array().expect("a message is an array").clone();
        let json = |v: &rmpv::Value| signalbox_proto::signalr::msgpack::to_json(v).unwrap();
        // Back to the JSON protocol's shape, by the MessagePack hub protocol's layout.
        match items[0].as_u64().unwrap() {
            1 => {
                assert_eq!(items.len(), 6, "headers, invocation id, target, arguments, stream ids");
                json!({"type": 1, "target": json(&items[3]), "arguments": json(&items[4])})
            }
            3 => {
                let id = json(&items[2]);
                match items[3].as_u64().unwrap() {
                    1 => json!({"type": 3, "invocationId": id, "error": json(&items[4])}),
                    2 => json!({"type": 3, "invocationId": id}),
                    _ => json!({"type": 3, "invocationId": id, "result": json(&items[4])}),
                }
            }
            6 => json!({"type": 6}),
            7 => {
                json!({"type": 7, "error": json(&items[1]), "allowReconnect": items.get(2).and_then(rmpv::Value::as_bool)})
            }
            kind @ (8 | 9) => {
                assert_eq!(items.len(), 2, "an Ack or Sequence is [type, id]");
                json!({"type": kind, "sequenceId": json(&items[1])})
            }
            other => json!({"type": other}),
        }
    }

    fn hub_message(&self, message: Value) -> Vec<u8> {
        if !self.messagepack {
            let mut out = serde_json::to_vec(&message).unwrap();
            out.push(0x1e);
            return out;
        }
        let value = match message["type"].as_u64().unwrap() {
            1 => rmpv::Value::Array(vec![
                1.into(),
                rmpv::Value::Map(Vec::new()),
                message["invocationId"].as_str().map_or(rmpv::Value::Nil, Into::into),
                message["target"].as_str().unwrap().into(),
                signalbox_proto::signalr::msgpack::from_json(&message["arguments"]),
                rmpv::Value::Array(Vec::new()),
            ]),
            kind @ (8 | 9) => rmpv::Value::Array(vec![kind.into(), message["sequenceId"].as_u64().unwrap().into()]),
            kind => rmpv::Value::Array(vec![kind.into()]),
        };
        let mut body = Vec::new();
        rmpv::encode::write_value(&mut body, &value).unwrap();
        let mut out = Vec::new();
        let mut length = body.len();
        loop {
            let byte = (length & 0x7f) as u8;
            length >>= 7;
            if length == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(&body);
        out
    }
}

impl SignalRClient {
    fn handshake(&self, version: u32) -> Vec<u8> {
        let protocol = if self.messagepack { "messagepack" } else { "json" };
        let mut out = serde_json::to_vec(&json!({"protocol": protocol, "version": version})).unwrap();
        out.push(0x1e);
        out
    }
}

impl TestClient for SignalRClient {
    fn encoding(&self) -> Encoding {
        if self.messagepack { Encoding::SIGNALR_MESSAGEPACK } else { Encoding::SIGNALR_JSON }
    }

    fn initial(&self) -> Encoding {
        Encoding::SIGNALR_JSON
    }

    /// MessagePack: a length prefix announcing 100 MB, then some of it.
    fn endless(&self) -> Vec<u8> {
        if !self.messagepack {
            return vec![b'a'; 70 * 1024];
        }
        let mut out = vec![0x80, 0xc2, 0xd7, 0x2f];
        out.resize(70 * 1024, 0);
        out
    }

    fn opening(&self) -> Option<Vec<u8>> {
        Some(self.handshake(1))
    }

    fn numbered_opening(&self) -> Option<Vec<u8>> {
        Some(self.handshake(2))
    }

    fn ack(&self, through: u64) -> Option<Vec<u8>> {
        Some(self.hub_message(json!({"type": 8, "sequenceId": through})))
    }

    fn sequence(&self, next: u64) -> Option<Vec<u8>> {
        Some(self.hub_message(json!({"type": 9, "sequenceId": next})))
    }

    fn request(&self, request: &Request) -> Option<Vec<u8>> {
        match request {
            Request::Event { id, event, data } => {
                Some(self.hub_message(
                    json!({"type": 1, "invocationId": id, "target": event, "arguments": self.carried(data)}),
                ))
            }
            Request::Ping { .. } => Some(self.hub_message(json!({"type": 6}))),
            _ => None,
        }
    }

    fn read(&self, message: &[u8]) -> Seen {
        // The handshake's answer is JSON in both encodings.
        if message.first() == Some(&b'{') && message.last() == Some(&0x1e) && !message.starts_with(b"{\"type\"") {
            let answer: Value = serde_json::from_slice(&message[..message.len() - 1]).unwrap();
            return match answer.get("error") {
                Some(error) => Seen::Refused(error.as_str().unwrap().to_owned()),
                None => Seen::Opened,
            };
        }
        let message = self.message(message);
        match message["type"].as_u64().unwrap() {
            1 if message["target"] == "presence" => Seen::Presence(message["arguments"][0].clone()),
            1 => Seen::Message {
                event: message["target"].as_str().unwrap().to_owned(),
                data: message["arguments"].clone(),
                group: None,
                seq: None,
            },
            3 => Seen::Reply {
                id: message["invocationId"].as_str().unwrap().to_owned(),
                outcome: match message.get("error") {
                    Some(error) => Err(error.as_str().unwrap().to_owned()),
                    None => Ok(message.get("result").cloned()),
                },
            },
            6 => Seen::KeepAlive,
            8 => Seen::Ack(message["sequenceId"].as_u64().unwrap()),
            9 => Seen::Sequence(message["sequenceId"].as_u64().unwrap()),
            7 => Seen::Close {
                error: message["error"].as_str().map(str::to_owned),
                reconnect: message["allowReconnect"].as_bool().unwrap_or(false),
            },
            _ => Seen::Other(message),
        }
    }

    fn carried(&self, data: &Value) -> Value {
        match data {
            Value::Array(_) => data.clone(),
            other => json!([other]),
        }
    }
}

/// A Pusher client, as pusher-js speaks protocol 7.
struct PusherClient;

impl TestClient for PusherClient {
    fn encoding(&self) -> Encoding {
        Encoding::PUSHER
    }

    fn opening(&self) -> Option<Vec<u8>> {
        None
    }

    fn request(&self, request: &Request) -> Option<Vec<u8>> {
        let frame = match request {
            Request::Join { group, .. } => json!({"event": "pusher:subscribe", "data": {"auth": "", "channel": group}}),
            Request::Leave { group, .. } => json!({"event": "pusher:unsubscribe", "data": {"channel": group}}),
            Request::Ping { .. } => json!({"event": "pusher:ping", "data": {}}),
            // Clients publish only client events on private channels; no upstream events.
            Request::Publish { .. } | Request::Event { .. } => return None,
        };
        Some(serde_json::to_vec(&frame).unwrap())
    }

    fn read(&self, message: &[u8]) -> Seen {
        let frame: Value = serde_json::from_slice(message).expect("a Pusher message is one JSON object");
        let channel = frame["channel"].as_str().map(str::to_owned);
        // As pusher-js: string data is JSON if it parses, the string otherwise.
        let data = match &frame["data"] {
            Value::String(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
            other => other.clone(),
        };
        match frame["event"].as_str().expect("every Pusher message has an event") {
            "pusher:connection_established" => {
                assert!(
                    data["activity_timeout"].as_u64().is_some_and(|t| t > 0),
                    "pusher-js needs an activity_timeout"
                );
                let socket = data["socket_id"].as_str().unwrap();
                Seen::Welcome { connection_id: socket.replacen('.', "-", 1) }
            }
            "pusher:pong" => Seen::Pong,
            "pusher_internal:subscription_succeeded" => Seen::Reply { id: channel.unwrap(), outcome: Ok(None) },
            "pusher:subscription_error" => {
                Seen::Reply { id: channel.unwrap(), outcome: Err(data["error"].as_str().unwrap().to_owned()) }
            }
            "pusher:error" => Seen::Error(data["message"].as_str().unwrap().to_owned()),
            "pusher_internal:member_added" | "pusher_internal:member_removed" => Seen::Presence(data),
            event if event.starts_with("pusher") => Seen::Other(frame),
            event => Seen::Message { event: event.to_owned(), data, group: channel, seq: None },
        }
    }

    fn carried(&self, data: &Value) -> Value {
        data.clone()
    }

    fn expected(&self, request: &Request) -> Option<Command> {
        let group = |g: &str| GroupName::new(g).unwrap();
        Some(match request {
            Request::Join { group: g, .. } => {
                let reply = Some(ReplyId::Text((*g).into()));
                Command::Join { reply, group: group(g), since: None, proof: None, member: None }
            }
            Request::Leave { group: g, .. } => Command::Leave { reply: None, group: group(g) },
            Request::Ping { .. } => Command::Ping { reply: None },
            Request::Publish { .. } | Request::Event { .. } => return None,
        })
    }

    fn carries_presence(&self) -> bool {
        false
    }
}

// ---- the suite --------------------------------------------------------------------------

/// A connection's input for `client`, opened if the protocol has an opening.
fn opened_input(client: &dyn TestClient) -> Input {
    let mut input = Input::new(client.initial().protocol().info(), 64 * 1024);
    if let Some(opening) = client.opening() {
        let mut commands = Vec::new();
        client.initial().protocol().decode(&mut input, &opening, &mut commands).unwrap();
        assert_eq!(commands, vec![Command::Open { encoding: client.encoding(), sequenced: false }]);
    }
    input
}

fn decode_all(client: &dyn TestClient, input: &mut Input, data: &[u8]) -> Result<Vec<Command>, Violation> {
    let mut commands = Vec::new();
    client.encoding().protocol().decode(input, data, &mut commands).map(|()| commands)
}

fn encode(client: &dyn TestClient, outbound: &Outbound<'_>) -> Option<Vec<u8>> {
    client.encoding().protocol().encode(outbound)
}

fn payloads() -> Vec<Value> {
    vec![
        json!({"text": "hello", "n": 1}),
        json!("a \"quoted\" line\nwith ünïcödé and \u{1F600}"),
        json!(42),
        json!(-0.5),
        json!(null),
        json!([1, "two", {"three": 3}]),
        json!({"nested": {"deep": [true, false, null]}}),
    ]
}

#[test]
fn every_registered_protocol_has_a_test_client() {
    let tested: Vec<Encoding> = clients().iter().map(|c| c.encoding()).collect();
    for index in 0..super::PROTOCOLS.len() {
        let encoding = Encoding(index as u8);
        assert!(tested.contains(&encoding), "{} has no test client", encoding.protocol().info().name);
    }
}

#[test]
fn formats_are_one_index_each_and_carry_what_their_protocol_allows() {
    let mut seen = std::collections::HashSet::new();
    for format in Format::all() {
        assert!(seen.insert(format.index()), "{format:?} shares an index");
        assert_eq!(Format::from_index(format.index() as u8), format);
        let info = format.info();
        assert!(!info.name.is_empty());
        let carried = format.with_encoding(format.encoding).is_some();
        match format.transport {
            Transport::WebSocket => assert!(carried),
            Transport::ServerSentEvents => assert_eq!(carried, info.delimits && !info.binary, "{format:?}"),
            Transport::LongPolling => assert_eq!(carried, info.delimits, "{format:?}"),
        }
        if let Some(choices) = info.opening {
            assert!(choices.contains(&format.encoding), "{}: its opening may keep it", info.name);
        }
    }
}

#[test]
fn messages_reach_the_client_as_published() {
    for client in clients() {
        let name = client.encoding().protocol().info().name;
        for data in payloads() {
            let bytes = serde_json::to_vec(&data).unwrap();
            for (group, seq) in [(None, None), (Some("room-1"), Some(7))] {
                let message = MessageOut {
                    event: "chat.message",
                    kind: DataKind::Json,
                    data: &bytes,
                    group,
                    user: None,
                    sender: None,
                    seq,
                };
                let frame = encode(&*client, &Outbound::Message(message)).expect("every protocol carries messages");
                let Seen::Message { event, data: seen, group: seen_group, seq: seen_seq } = client.read(&frame) else {
                    panic!("{name}: a message was read as something else");
                };
                assert_eq!(event, "chat.message", "{name}");
                assert_eq!(seen, client.carried(&data), "{name}: the data changed on the way");
                assert!(seen_group.is_none() || seen_group.as_deref() == group, "{name}: wrong group");
                assert!(seen_seq.is_none() || seen_seq == seq, "{name}: wrong seq");
            }
        }
    }
}

#[test]
fn binary_data_reaches_every_client_readably() {
    for client in clients() {
        let name = client.encoding().protocol().info().name;
        let data = [0u8, 0xff, b'"', b'\\', 0x1e, 0x7b];
        let message = MessageOut {
            event: "blob",
            kind: DataKind::Binary,
            data: &data,
            group: None,
            user: None,
            sender: None,
            seq: None,
        };
        let frame = encode(&*client, &Outbound::Message(message)).unwrap();
        // Reading it must succeed (no client may be handed bytes its protocol cannot parse),
        // and base64 of the bytes must be what it gets.
        let Seen::Message { data: seen, .. } = client.read(&frame) else { panic!("{name}: not a message") };
        assert_eq!(seen, client.carried(&json!("AP8iXB57")), "{name}");
    }
}

#[test]
fn presence_reaches_the_client_in_its_own_protocol() {
    let joined = [PresenceChange { user_id: Some("ann"), connection_id: "c1" }];
    let notices = [
        PresenceNotice::Members { group: "room", joined: &joined, left: &[], count: 3, truncated: false },
        PresenceNotice::Count { group: "room", count: 3 },
    ];
    for client in clients().into_iter().filter(|c| c.carries_presence()) {
        let name = client.encoding().protocol().info().name;
        for notice in notices {
            let frame = encode(&*client, &Outbound::Presence(notice)).expect("every protocol carries presence");
            let Seen::Presence(change) = client.read(&frame) else { panic!("{name}: presence read as something else") };
            assert_eq!(change["group"], "room", "{name}");
            assert_eq!(change["count"], 3, "{name}");
            if let PresenceNotice::Members { .. } = notice {
                assert_eq!(change["joined"][0]["connectionId"], "c1", "{name}");
                assert_eq!(change["joined"][0]["userId"], "ann", "{name}");
            }
        }
    }
}

/// In a group whose members are users, every protocol tells of a user who came or went.
#[test]
fn users_who_come_and_go_reach_every_client() {
    for client in clients() {
        let name = client.encoding().protocol().info().name;
        let added = PresenceNotice::UserAdded { group: "presence-a", user: "u-17", info: Some(r#"{"n":1}"#), count: 2 };
        let removed = PresenceNotice::UserRemoved { group: "presence-a", user: "u-17", count: 1 };
        for notice in [added, removed] {
            let frame = encode(&*client, &Outbound::Presence(notice)).expect("every protocol tells of users");
            let Seen::Presence(change) = client.read(&frame) else { panic!("{name}: not a presence notice") };
            assert!(change.to_string().contains("u-17"), "{name}: {change}");
        }
    }
}

#[test]
fn answers_and_errors_name_the_request_they_answer() {
    let id = ReplyId::Text("r-17".into());
    let summary = PresenceSummary::from_entries(&[]);
    let recovery = GroupRecovery::recovered("room");
    for client in clients() {
        let name = client.encoding().protocol().info().name;
        let answers = [Answer::Ok, Answer::Position(9), Answer::Recovery(&recovery), Answer::Presence(&summary)];
        for answer in answers {
            if let Some(frame) = encode(&*client, &Outbound::Reply { to: &id, answer }) {
                let Seen::Reply { id: seen, outcome } = client.read(&frame) else { panic!("{name}: not a reply") };
                assert_eq!(seen, "r-17", "{name}");
                assert!(outcome.is_ok(), "{name}: a success read as a failure");
            }
        }
        // Protocols with upstream events carry their answers.
        if client.request(&Request::Event { id: "e", event: "E", data: json!(1) }).is_some() {
            let data = br#"{"ok":true}"#;
            let frame = encode(&*client, &Outbound::Reply { to: &id, answer: Answer::Data(data) }).unwrap();
            assert_eq!(
                client.read(&frame),
                Seen::Reply { id: "r-17".into(), outcome: Ok(Some(json!({"ok": true}))) },
                "{name}: the upstream's answer"
            );
        }
        let error = Outbound::Error { to: Some(&id), code: ErrorCode::Forbidden, message: "not allowed" };
        let frame = encode(&*client, &error).expect("an error with a reply id is always answered");
        assert_eq!(
            client.read(&frame),
            Seen::Reply { id: "r-17".into(), outcome: Err("not allowed".into()) },
            "{name}"
        );
        // Without a reply id, a protocol that can say it must say it as an error.
        let error = Outbound::Error { to: None, code: ErrorCode::BadRequest, message: "unreadable" };
        if let Some(frame) = encode(&*client, &error) {
            assert_eq!(client.read(&frame), Seen::Error("unreadable".into()), "{name}");
        }
    }
}

#[test]
fn the_last_words_carry_the_close_code_or_leave_it_to_the_transport() {
    for client in clients() {
        let name = client.encoding().protocol().info().name;
        for (code, may_reconnect) in [(CloseCode::Reconnect, true), (CloseCode::AppDeleted, false)] {
            let request = CloseRequest::new(code, "because");
            // None: the transport's own close (a WebSocket close frame) carries the code.
            if let Some(frame) = encode(&*client, &Outbound::Close(&request)) {
                let Seen::Close { error, reconnect } = client.read(&frame) else { panic!("{name}: not a close") };
                let error = error.expect("a close for a reason says it");
                assert!(error.contains("because") && error.contains(&code.code().to_string()), "{name}: {error}");
                assert_eq!(reconnect, may_reconnect, "{name}: {code:?}");
            }
        }
        if let Some(frame) = encode(&*client, &Outbound::KeepAlive) {
            assert_eq!(client.read(&frame), Seen::KeepAlive, "{name}");
        }
        if let Some(frame) =
            encode(&*client, &Outbound::Welcome { connection_id: "n_1", user: None, heartbeat_seconds: 25 })
        {
            assert_eq!(client.read(&frame), Seen::Welcome { connection_id: "n_1".into() }, "{name}");
        }
    }
}

#[test]
fn an_opening_is_answered_in_words_the_client_reads() {
    for client in clients() {
        let info = client.encoding().protocol().info();
        if info.opening.is_none() {
            continue;
        }
        let refused = encode(&*client, &Outbound::OpenRefused("no such protocol")).expect("a refusal is said");
        assert_eq!(client.read(&refused), Seen::Refused("no such protocol".into()), "{}", info.name);
        let opened = encode(&*client, &Outbound::Opened).expect("an opening is answered");
        assert_eq!(client.read(&opened), Seen::Opened, "{}", info.name);
    }
}

/// The command a protocol must make of a request (see [`TestClient::expected`]).
fn expected(client: &dyn TestClient, request: &Request) -> Command {
    client.expected(request).unwrap_or_else(|| usual_command(client, request))
}

/// The usual reading of a request: what the native protocol and SignalR make of it.
fn usual_command(client: &dyn TestClient, request: &Request) -> Command {
    let reply = |id: &str| Some(ReplyId::Text(id.into()));
    let group = |g: &str| GroupName::new(g).unwrap();
    let bytes = |data: &Value| Bytes::from(serde_json::to_vec(&client.carried(data)).unwrap());
    match request {
        Request::Join { id, group: g } => {
            Command::Join { reply: reply(id), group: group(g), since: None, proof: None, member: None }
        }
        Request::Leave { id, group: g } => Command::Leave { reply: reply(id), group: group(g) },
        Request::Publish { id, group: g, event, data } => Command::Publish {
            reply: reply(id),
            group: group(g),
            event: EventName::new(*event).unwrap(),
            data: bytes(data),
            no_echo: false,
            members_only: false,
        },
        Request::Ping { id } => Command::Ping { reply: reply(id) },
        Request::Event { id, event, data } => Command::Event {
            reply: reply(id),
            event: (*event).into(),
            data: bytes(data),
            invocation_id: (client.encoding() != Encoding::NATIVE).then(|| (*id).to_owned()),
        },
    }
}

/// Data in a command compared as JSON: protocols may re-encode it.
fn normalized(commands: Vec<Command>) -> Vec<Command> {
    let norm = |data: Bytes| Bytes::from(serde_json::to_vec(&serde_json::from_slice::<Value>(&data).unwrap()).unwrap());
    commands
        .into_iter()
        .map(|command| match command {
            Command::Publish { reply, group, event, data, no_echo, members_only } => {
                Command::Publish { reply, group, event, data: norm(data), no_echo, members_only }
            }
            Command::Event { reply, event, data, invocation_id } => {
                Command::Event { reply, event, data: norm(data), invocation_id }
            }
            other => other,
        })
        .collect()
}

fn requests() -> Vec<Request> {
    let mut requests = vec![
        Request::Join { id: "j", group: "room" },
        Request::Leave { id: "l", group: "room" },
        Request::Ping { id: "p" },
    ];
    for data in payloads() {
        requests.push(Request::Publish { id: "pub", group: "room", event: "say", data: data.clone() });
        requests.push(Request::Event { id: "ev", event: "Send", data });
    }
    requests
}

#[test]
fn requests_become_the_commands_they_ask_for() {
    for client in clients() {
        let name = client.encoding().protocol().info().name;
        let mut said = 0;
        for request in requests() {
            let Some(bytes) = client.request(&request) else { continue };
            let mut input = opened_input(&*client);
            let commands = normalized(decode_all(&*client, &mut input, &bytes).unwrap());
            // A protocol whose ping needs no answer may make nothing of it.
            if matches!(request, Request::Ping { .. }) && commands.is_empty() {
                continue;
            }
            assert_eq!(commands, normalized(vec![expected(&*client, &request)]), "{name}: {request:?}");
            said += 1;
        }
        assert!(said > 0, "{name}: the client said nothing the protocol understood");
    }
}

/// Protocols that delimit their own messages (a transport may cut or join them anywhere)
/// make the same commands of a batch however it arrives: whole, or a byte at a time.
#[test]
fn a_batch_means_the_same_however_the_transport_cuts_it() {
    for client in clients() {
        let name = client.encoding().protocol().info().name;
        if !client.encoding().protocol().info().delimits {
            continue;
        }
        let mut batch = client.opening().unwrap_or_default();
        let mut wanted = Vec::new();
        if client.opening().is_some() {
            wanted.push(Command::Open { encoding: client.encoding(), sequenced: false });
        }
        for request in requests() {
            if let Some(bytes) = client.request(&request)
                && !matches!(request, Request::Ping { .. })
            {
                batch.extend_from_slice(&bytes);
                wanted.push(expected(&*client, &request));
            }
        }
        let start = || Input::new(client.initial().protocol().info(), 64 * 1024);
        let decode = |input: &mut Input, data: &[u8], commands: &mut Vec<Command>| {
            // After the opening, the encoding it chose reads on.
            let encoding = if input.opened { client.encoding() } else { client.initial() };
            encoding.protocol().decode(input, data, commands).unwrap();
        };
        let (mut whole, mut input) = (Vec::new(), start());
        decode(&mut input, &batch, &mut whole);
        let (mut bytewise, mut input) = (Vec::new(), start());
        for byte in &batch {
            decode(&mut input, std::slice::from_ref(byte), &mut bytewise);
        }
        assert_eq!(normalized(whole), normalized(wanted.clone()), "{name}: whole");
        assert_eq!(normalized(bytewise), normalized(wanted), "{name}: a byte at a time");
        assert!(input.partial.is_empty(), "{name}: nothing left over");
    }
}

/// Hostile input never panics, never yields a command it did not ask for, and ends either in
/// an error the client is told or a close with a documented code; a message that never ends
/// is cut off at the limit.
#[test]
fn hostile_input_is_refused_cleanly() {
    let crafted: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\x1e".to_vec(),
        b"{".to_vec(),
        b"{}\x1e".to_vec(),
        b"null\x1e".to_vec(),
        b"[]\x1e".to_vec(),
        b"{\"type\":\"join\"}\x1e".to_vec(),
        b"{\"type\":1,\"target\":5,\"arguments\":{}}\x1e".to_vec(),
        b"\xff\xfe\xfd\x1e".to_vec(),
        b"\x05\x93\x01\x80".to_vec(),
        b"\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f".to_vec(),
        format!("{}{}\x1e", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
    ];
    let mut random = Vec::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..500 {
        let len = (seed % 64) as usize;
        let bytes = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        random.push(bytes);
    }
    let documented = |code: CloseCode| matches!(code.code(), 1002 | 1003 | 1007 | 1009 | 4000..=4999);
    for client in clients() {
        let name = client.encoding().protocol().info().name;
        let inputs = crafted.iter().map(|b| (b, true)).chain(random.iter().map(|b| (b, false)));
        for (bytes, strict) in inputs {
            for opened in [false, true] {
                let (mut input, protocol) = if opened {
                    (opened_input(&*client), client.encoding().protocol())
                } else {
                    (Input::new(client.initial().protocol().info(), 64 * 1024), client.initial().protocol())
                };
                let mut commands = Vec::new();
                match protocol.decode(&mut input, bytes, &mut commands) {
                    // Random bytes may spell a real message; the crafted ones spell none.
                    Ok(()) if strict => {
                        for command in &commands {
                            let refused = matches!(command, Command::Invalid { .. } | Command::Unsupported { .. });
                            assert!(refused, "{name}: {bytes:?} made {command:?}");
                        }
                    }
                    Ok(()) => {}
                    Err(violation) => assert!(documented(violation.code), "{name}: {:?}", violation.code),
                }
            }
        }
        if client.encoding().protocol().info().delimits {
            let mut input = opened_input(&*client);
            let refused =
                decode_all(&*client, &mut input, &client.endless()).expect_err("a message over the limit ends it");
            assert_eq!(refused.code, CloseCode::MessageTooBig, "{name}");
            assert!(input.partial.capacity() < 70 * 1024, "{name}: the oversized tail is not kept");
        }
    }
}

/// A client that numbers its counted messages (to resume) sends some again after a resume,
/// behind a Sequence: the copies make no command; a Sequence beyond what was received ends the
/// connection; Acks and Sequences reach each side readably.
#[test]
fn a_numbering_clients_copies_are_dropped_and_acks_are_read() {
    for client in clients() {
        let name = client.encoding().protocol().info().name;
        let Some(opening) = client.numbered_opening() else { continue };
        let mut input = Input::new(client.initial().protocol().info(), 64 * 1024);
        let mut commands = Vec::new();
        client.initial().protocol().decode(&mut input, &opening, &mut commands).unwrap();
        assert_eq!(commands, vec![Command::Open { encoding: client.encoding(), sequenced: true }], "{name}");
        let event = |id: &'static str| Request::Event { id, event: "Send", data: json!([id]) };
        let bytes = |request: &Request| client.request(request).expect("an event");
        let (a, b, c) = (event("a"), event("b"), event("c"));
        let first = [bytes(&a), bytes(&b)].concat();
        assert_eq!(decode_all(&*client, &mut input, &first).unwrap().len(), 2, "{name}");
        // The resume: the client starts again from 1 and sends a, b again, then c.
        let again = [client.sequence(1).unwrap(), bytes(&a), bytes(&b), bytes(&c)].concat();
        let commands = normalized(decode_all(&*client, &mut input, &again).unwrap());
        assert_eq!(commands, normalized(vec![expected(&*client, &c)]), "{name}: only what is new");
        let ack = decode_all(&*client, &mut input, &client.ack(7).unwrap()).unwrap();
        assert_eq!(ack, vec![Command::Ack { through: 7 }], "{name}");
        let beyond = decode_all(&*client, &mut input, &client.sequence(10).unwrap());
        assert_eq!(beyond.map_err(|v| v.code), Err(CloseCode::ProtocolError), "{name}: a Sequence beyond what arrived");

        for (outbound, seen) in [(Outbound::Ack(5), Seen::Ack(5)), (Outbound::Sequence(3), Seen::Sequence(3))] {
            let frame = encode(&*client, &outbound).expect("a numbering protocol says it");
            assert_eq!(client.read(&frame), seen, "{name}");
            assert!(!outbound.is_counted(), "{name}: Acks and Sequences are not counted");
        }
    }
}

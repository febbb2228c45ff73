//! The ASP.NET Core SignalR hub protocol, JSON flavour: what `@microsoft/signalr` speaks.
//!
//! Every message is a JSON object followed by the record separator `0x1E`; a transport
//! message may hold several. The connection starts with a handshake (`{"protocol":"json",
//! "version":1}` → `{}` or `{"error":"…"}`), then hub messages identified by `type`:
//! 1 Invocation, 2 StreamItem, 3 Completion, 4 StreamInvocation, 5 CancelInvocation, 6 Ping,
//! 7 Close. Signalbox hubs are serverless: a client's invocation goes to the app's upstream
//! webhook, and the server only ever sends Invocations (messages), Completions (answers),
//! Pings and a Close.

pub mod msgpack;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The record separator ending every message.
pub const RECORD_SEPARATOR: u8 = 0x1e;
/// The highest hub protocol version spoken: 2 adds Ack (8) and Sequence (9), for stateful
/// reconnect.
pub const VERSION: u32 = 2;

/// A hub protocol, chosen by the client's handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HubProtocol {
    Json,
    MessagePack,
}

impl HubProtocol {
    pub fn encode_invocation(self, target: &str, arguments: &[u8]) -> Vec<u8> {
        match self {
            Self::Json => encode_invocation(target, arguments),
            Self::MessagePack => msgpack::encode_invocation(target, arguments),
        }
    }

    pub fn encode_completion(self, invocation_id: &str, outcome: Result<Option<&[u8]>, &str>) -> Vec<u8> {
        match self {
            Self::Json => encode_completion(invocation_id, outcome),
            Self::MessagePack => msgpack::encode_completion(invocation_id, outcome),
        }
    }

    pub fn encode_ping(self) -> Vec<u8> {
        match self {
            Self::Json => encode_ping(),
            Self::MessagePack => msgpack::encode_ping(),
        }
    }

    pub fn encode_close(self, error: Option<&str>, allow_reconnect: bool) -> Vec<u8> {
        match self {
            Self::Json => encode_close(error, allow_reconnect),
            Self::MessagePack => msgpack::encode_close(error, allow_reconnect),
        }
    }

    /// Ack (8): every counted message up to `sequence_id` arrived.
    pub fn encode_ack(self, sequence_id: u64) -> Vec<u8> {
        match self {
            Self::Json => encode_sequenced(8, sequence_id),
            Self::MessagePack => msgpack::encode_sequenced(8, sequence_id),
        }
    }

    /// Sequence (9): the id of the next counted message, first on a resumed connection.
    pub fn encode_sequence(self, sequence_id: u64) -> Vec<u8> {
        match self {
            Self::Json => encode_sequenced(9, sequence_id),
            Self::MessagePack => msgpack::encode_sequenced(9, sequence_id),
        }
    }
}

/// Whether a message of this type counts in stateful reconnect's numbering: Invocation,
/// StreamItem, Completion, StreamInvocation and CancelInvocation do; Ping, Close, Ack and
/// Sequence do not.
pub fn is_counted(kind: u64) -> bool {
    (1..=5).contains(&kind)
}

/// Splits a transport message into records; the last part, if not terminated, is returned
/// separately (`Err` with the unterminated bytes) — a message must end with a separator.
pub fn records(payload: &[u8]) -> Result<Vec<&[u8]>, &[u8]> {
    let mut records = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == RECORD_SEPARATOR) {
            Some(end) => {
                records.push(&rest[..end]);
                rest = &rest[end + 1..];
            }
            None => return Err(rest),
        }
    }
    Ok(records)
}

/// Why a handshake was refused; the text goes to the client in `{"error": …}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the handshake request is not valid JSON: {0}")]
    Malformed(String),
    #[error("the protocol '{0}' is not supported; this server speaks 'json' and 'messagepack'")]
    Protocol(String),
    #[error("the protocol version {0} is not supported; this server speaks versions 0 to 2")]
    Version(u32),
}

#[derive(Deserialize)]
struct HandshakeRequest<'a> {
    #[serde(borrow)]
    protocol: Cow<'a, str>,
    version: u32,
}

/// What a handshake asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub protocol: HubProtocol,
    pub version: u32,
}

/// Parses the handshake record (without its separator): the protocol and version the client
/// chose.
pub fn parse_handshake(record: &[u8]) -> Result<Handshake, HandshakeError> {
    let request: HandshakeRequest<'_> =
        serde_json::from_slice(record).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let protocol = match &*request.protocol {
        "json" => HubProtocol::Json,
        "messagepack" => HubProtocol::MessagePack,
        other => return Err(HandshakeError::Protocol(other.chars().take(32).collect())),
    };
    // As ASP.NET Core: any version up to the server's (`signalrcore` sends 0).
    if request.version > VERSION {
        return Err(HandshakeError::Version(request.version));
    }
    Ok(Handshake { protocol, version: request.version })
}

/// The handshake answer: `{}` or `{"error":"…"}`, with the separator.
pub fn encode_handshake_response(error: Option<&str>) -> Vec<u8> {
    let mut out = match error {
        None => b"{}".to_vec(),
        Some(error) => serde_json::to_vec(&serde_json::json!({ "error": error })).unwrap_or_default(),
    };
    out.push(RECORD_SEPARATOR);
    out
}

/// A hub message from a client.
#[derive(Debug, Clone)]
pub enum ClientMessage {
    /// A call of a hub method; `invocation_id` when the caller wants a Completion.
    Invocation {
        invocation_id: Option<String>,
        target: String,
        arguments: Box<RawValue>,
    },
    /// A streaming call, or a stream item: not supported by a serverless hub.
    Streaming {
        invocation_id: Option<String>,
    },
    CancelInvocation,
    Ping,
    Close,
    /// Ack (8): the server's counted messages up to this id arrived.
    Ack(u64),
    /// Sequence (9): the id of the client's next counted message (after a resume).
    Sequence(u64),
    /// A type this server does not know: ignored, as the protocol asks.
    Unknown(u64),
}

impl ClientMessage {
    /// Whether it counts in stateful reconnect's numbering (see [`is_counted`]).
    pub fn is_counted(&self) -> bool {
        match self {
            Self::Invocation { .. } | Self::Streaming { .. } | Self::CancelInvocation => true,
            Self::Unknown(kind) => is_counted(*kind),
            Self::Ping | Self::Close | Self::Ack(_) | Self::Sequence(_) => false,
        }
    }
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SequencedFields {
    sequence_id: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InvocationFields {
    invocation_id: Option<String>,
    target: Option<String>,
    arguments: Option<Box<RawValue>>,
    stream_ids: Option<Vec<String>>,
}

/// Why a record is not a hub message: the connection is closed with this as the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("a message is not a JSON object with a numeric 'type': {0}")]
    Malformed(String),
    #[error("an invocation needs a 'target' string and an 'arguments' array")]
    BadInvocation,
}

/// Parses one record (without its separator).
pub fn parse_message(record: &[u8]) -> Result<ClientMessage, MessageError> {
    let head: Head = serde_json::from_slice(record).map_err(|e| MessageError::Malformed(e.to_string()))?;
    let kind = head.kind.ok_or_else(|| MessageError::Malformed("missing 'type'".into()))?;
    Ok(match kind {
        1 | 4 => {
            let fields: InvocationFields =
                serde_json::from_slice(record).map_err(|e| MessageError::Malformed(e.to_string()))?;
            if kind == 4 || fields.stream_ids.is_some_and(|s| !s.is_empty()) {
                return Ok(ClientMessage::Streaming { invocation_id: fields.invocation_id });
            }
            let (Some(target), Some(arguments)) = (fields.target, fields.arguments) else {
                return Err(MessageError::BadInvocation);
            };
            if !arguments.get().trim_start().starts_with('[') {
                return Err(MessageError::BadInvocation);
            }
            ClientMessage::Invocation { invocation_id: fields.invocation_id, target, arguments }
        }
        2 => {
            let fields: InvocationFields =
                serde_json::from_slice(record).map_err(|e| MessageError::Malformed(e.to_string()))?;
            ClientMessage::Streaming { invocation_id: fields.invocation_id }
        }
        3 => ClientMessage::Unknown(3),
        5 => ClientMessage::CancelInvocation,
        6 => ClientMessage::Ping,
        7 => ClientMessage::Close,
        8 | 9 => {
            let fields: SequencedFields = serde_json::from_slice(record)
                .map_err(|_| MessageError::Malformed("an Ack or Sequence needs a numeric 'sequenceId'".into()))?;
            if kind == 8 { ClientMessage::Ack(fields.sequence_id) } else { ClientMessage::Sequence(fields.sequence_id) }
        }
        other => ClientMessage::Unknown(other),
    })
}

fn record(mut json: Vec<u8>) -> Vec<u8> {
    json.push(RECORD_SEPARATOR);
    json
}

/// `{"type":1,"target":…,"arguments":[…]}`: a message to the client. `arguments` must be a
/// JSON array; anything else is sent as the one argument.
pub fn encode_invocation(target: &str, arguments: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + target.len() + arguments.len());
    out.extend_from_slice(br#"{"type":1,"target":"#);
    let _ = serde_json::to_writer(&mut out, target);
    out.extend_from_slice(br#","arguments":"#);
    let arguments = if arguments.is_empty() { b"null".as_slice() } else { arguments };
    let is_array = arguments.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if is_array {
        out.extend_from_slice(arguments);
    } else {
        out.push(b'[');
        out.extend_from_slice(arguments);
        out.push(b']');
    }
    out.push(b'}');
    record(out)
}

/// `{"type":3,"invocationId":…,"result":…}` (a JSON value) or with `"error":…`.
pub fn encode_completion(invocation_id: &str, outcome: Result<Option<&[u8]>, &str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(br#"{"type":3,"invocationId":"#);
    let _ = serde_json::to_writer(&mut out, invocation_id);
    match outcome {
        Ok(Some(result)) => {
            out.extend_from_slice(br#","result":"#);
            out.extend_from_slice(result);
        }
        Ok(None) => {}
        Err(error) => {
            out.extend_from_slice(br#","error":"#);
            let _ = serde_json::to_writer(&mut out, error);
        }
    }
    out.push(b'}');
    record(out)
}

/// `{"type":8|9,"sequenceId":…}`: an Ack or a Sequence.
fn encode_sequenced(kind: u8, sequence_id: u64) -> Vec<u8> {
    record(format!(r#"{{"type":{kind},"sequenceId":{sequence_id}}}"#).into_bytes())
}

/// `{"type":6}`: a keep-alive.
pub fn encode_ping() -> Vec<u8> {
    record(br#"{"type":6}"#.to_vec())
}

/// `{"type":7,"error":…,"allowReconnect":…}`: the server ends the connection.
pub fn encode_close(error: Option<&str>, allow_reconnect: bool) -> Vec<u8> {
    let mut out = br#"{"type":7"#.to_vec();
    if let Some(error) = error {
        out.extend_from_slice(br#","error":"#);
        let _ = serde_json::to_writer(&mut out, error);
    }
    if allow_reconnect {
        out.extend_from_slice(br#","allowReconnect":true"#);
    }
    out.push(b'}');
    record(out)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn value(record: &[u8]) -> Value {
        assert_eq!(record.last(), Some(&RECORD_SEPARATOR));
        serde_json::from_slice(&record[..record.len() - 1]).expect("json")
    }

    #[test]
    fn records_split_on_the_separator_and_must_be_terminated() {
        assert_eq!(records(b"{\"a\":1}\x1e{}\x1e"), Ok(vec![&b"{\"a\":1}"[..], &b"{}"[..]]));
        assert_eq!(records(b"{}\x1e{\"type\":6}"), Err(&b"{\"type\":6}"[..]));
        assert_eq!(records(b""), Ok(vec![]));
    }

    #[test]
    fn handshakes() {
        let handshake = |protocol, version| Ok(Handshake { protocol, version });
        assert_eq!(parse_handshake(br#"{"protocol":"json","version":1}"#), handshake(HubProtocol::Json, 1));
        assert_eq!(
            parse_handshake(br#"{"protocol":"messagepack","version":1}"#),
            handshake(HubProtocol::MessagePack, 1)
        );
        assert_eq!(
            parse_handshake(br#"{"protocol":"blobpack","version":1}"#),
            Err(HandshakeError::Protocol("blobpack".into()))
        );
        assert_eq!(parse_handshake(br#"{"protocol":"json","version":2}"#), handshake(HubProtocol::Json, 2));
        assert_eq!(parse_handshake(br#"{"protocol":"json","version":3}"#), Err(HandshakeError::Version(3)));
        assert_eq!(
            parse_handshake(br#"{"protocol":"json","version":0}"#),
            handshake(HubProtocol::Json, 0),
            "signalrcore"
        );
        assert!(matches!(parse_handshake(b"nope"), Err(HandshakeError::Malformed(_))));
        assert_eq!(encode_handshake_response(None), b"{}\x1e");
        assert_eq!(value(&encode_handshake_response(Some("bad"))), json!({"error": "bad"}));
    }

    #[test]
    fn client_messages() {
        let call = parse_message(br#"{"type":1,"invocationId":"7","target":"Send","arguments":["hi",2]}"#).expect("ok");
        let ClientMessage::Invocation { invocation_id, target, arguments } = call else { panic!("invocation") };
        assert_eq!((invocation_id.as_deref(), target.as_str(), arguments.get()), (Some("7"), "Send", r#"["hi",2]"#));
        assert!(matches!(
            parse_message(br#"{"type":1,"target":"Send","arguments":[]}"#),
            Ok(ClientMessage::Invocation { invocation_id: None, .. })
        ));
        assert!(matches!(parse_message(br#"{"type":1,"target":"Send"}"#), Err(MessageError::BadInvocation)));
        assert!(matches!(
            parse_message(br#"{"type":1,"target":"Send","arguments":5}"#),
            Err(MessageError::BadInvocation)
        ));
        assert!(matches!(
            parse_message(br#"{"type":4,"invocationId":"1","target":"S","arguments":[]}"#),
            Ok(ClientMessage::Streaming { .. })
        ));
        assert!(matches!(parse_message(br#"{"type":6}"#), Ok(ClientMessage::Ping)));
        assert!(matches!(parse_message(br#"{"type":7}"#), Ok(ClientMessage::Close)));
        assert!(matches!(parse_message(br#"{"type":42}"#), Ok(ClientMessage::Unknown(42))));
        assert!(matches!(parse_message(br#"{"type":8,"sequenceId":36}"#), Ok(ClientMessage::Ack(36))));
        assert!(matches!(parse_message(br#"{"type":9,"sequenceId":1}"#), Ok(ClientMessage::Sequence(1))));
        assert!(matches!(parse_message(br#"{"type":9,"sequenceId":"1"}"#), Err(MessageError::Malformed(_))));
        assert!(matches!(parse_message(br#"{"type":8}"#), Err(MessageError::Malformed(_))));
        assert!(matches!(parse_message(b"[1]"), Err(MessageError::Malformed(_))));
        assert!(matches!(parse_message(br#"{"target":"x"}"#), Err(MessageError::Malformed(_))));
    }

    #[test]
    fn server_messages() {
        assert_eq!(
            value(&encode_invocation("New", br#"["a",{"b":1}]"#)),
            json!({"type":1,"target":"New","arguments":["a",{"b":1}]})
        );
        assert_eq!(
            value(&encode_invocation("New", br#"{"b":1}"#)),
            json!({"type":1,"target":"New","arguments":[{"b":1}]})
        );
        assert_eq!(value(&encode_completion("3", Ok(Some(b"42")))), json!({"type":3,"invocationId":"3","result":42}));
        assert_eq!(value(&encode_completion("3", Ok(None))), json!({"type":3,"invocationId":"3"}));
        assert_eq!(value(&encode_completion("3", Err("no"))), json!({"type":3,"invocationId":"3","error":"no"}));
        assert_eq!(value(&encode_ping()), json!({"type":6}));
        assert_eq!(value(&encode_close(Some("bye"), true)), json!({"type":7,"error":"bye","allowReconnect":true}));
        assert_eq!(value(&encode_close(None, false)), json!({"type":7}));
        assert_eq!(value(&HubProtocol::Json.encode_ack(36)), json!({"type":8,"sequenceId":36}));
        assert_eq!(value(&HubProtocol::Json.encode_sequence(1)), json!({"type":9,"sequenceId":1}));
    }
}

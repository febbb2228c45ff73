//! The MessagePack flavour of the SignalR hub protocol (`"protocol":"messagepack"`).
//!
//! After the (JSON) handshake, every message is a MessagePack array prefixed with its length
//! as a variable-length integer (7 bits per byte, least significant first, at most 5 bytes).
//! The server's messages are built from the same JSON the rest of Signalbox carries (REST
//! arguments, upstream results), converted value by value; a client's invocation arguments
//! are converted to JSON for the upstream. Binary values become base64 strings in JSON, and
//! extension values (such as timestamps) are refused.

use rmpv::Value;
use serde_json::value::RawValue;

use super::{ClientMessage, MessageError};

/// The longest length prefix (2 GiB in 5 bytes).
const MAX_PREFIX: usize = 5;

/// Splits `buffer` into complete messages: returns them and how many bytes they took; what
/// is left is an incomplete message.
pub fn split(buffer: &[u8]) -> Result<(Vec<&[u8]>, usize), MessageError> {
    let mut messages = Vec::new();
    let mut at = 0;
    loop {
        let rest = &buffer[at..];
        let (mut length, mut shift, mut used) = (0usize, 0u32, 0usize);
        let mut complete_prefix = false;
        for (i, &byte) in rest.iter().enumerate().take(MAX_PREFIX) {
            length |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            used = i + 1;
            if byte & 0x80 == 0 {
                complete_prefix = true;
                break;
            }
        }
        if !complete_prefix {
            if used == MAX_PREFIX {
                return Err(MessageError::Malformed("a length prefix longer than 5 bytes".into()));
            }
            return Ok((messages, at));
        }
        if rest.len() < used + length {
            return Ok((messages, at));
        }
        messages.push(&rest[used..used + length]);
        at += used + length;
    }
}

fn prefixed(payload: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + MAX_PREFIX);
    let mut length = payload.len();
    loop {
        let byte = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}

fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    prefixed(out)
}

/// JSON to MessagePack, value by value.
pub fn from_json(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::F64(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => {
            Value::Map(map.iter().map(|(k, v)| (Value::from(k.as_str()), from_json(v))).collect())
        }
    }
}

/// MessagePack to JSON; `None` for what JSON cannot say (extension values, non-finite floats).
pub fn to_json(value: &Value) -> Option<serde_json::Value> {
    use base64::Engine as _;
    Some(match value {
        Value::Nil => serde_json::Value::Null,
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(i), _) => serde_json::Value::from(i),
            (None, Some(u)) => serde_json::Value::from(u),
            _ => return None,
        },
        Value::F32(f) => serde_json::Value::from(serde_json::Number::from_f64(f64::from(*f))?),
        Value::F64(f) => serde_json::Value::from(serde_json::Number::from_f64(*f)?),
        Value::String(s) => serde_json::Value::String(s.as_str()?.to_owned()),
        Value::Binary(bytes) => serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect::<Option<_>>()?),
        Value::Map(entries) => {
            let mut map = serde_json::Map::new();
            for (key, value) in entries {
                let key = match key {
                    Value::String(s) => s.as_str()?.to_owned(),
                    other => to_json(other)?.to_string(),
                };
                map.insert(key, to_json(value)?);
            }
            serde_json::Value::Object(map)
        }
        Value::Ext(..) => return None,
    })
}

/// `[1, {}, nil, target, arguments, []]`: a message to the client, with the empty stream ids
/// ASP.NET Core writes (clients that read its wire format exactly, such as Python's
/// `signalrcore`, drop a five-element invocation). `arguments` is JSON; anything but an array
/// is sent as the one argument.
pub fn encode_invocation(target: &str, arguments: &[u8]) -> Vec<u8> {
    let arguments = match serde_json::from_slice::<serde_json::Value>(arguments) {
        Ok(serde_json::Value::Array(items)) => Value::Array(items.iter().map(from_json).collect()),
        Ok(other) => Value::Array(vec![from_json(&other)]),
        Err(_) => Value::Array(Vec::new()),
    };
    let stream_ids = Value::Array(Vec::new());
    encode(&Value::Array(vec![
        Value::from(1),
        Value::Map(Vec::new()),
        Value::Nil,
        Value::from(target),
        arguments,
        stream_ids,
    ]))
}

/// `[3, {}, id, 1, error]`, `[3, {}, id, 2]` (no result) or `[3, {}, id, 3, result]`.
pub fn encode_completion(invocation_id: &str, outcome: Result<Option<&[u8]>, &str>) -> Vec<u8> {
    let mut message = vec![Value::from(3), Value::Map(Vec::new()), Value::from(invocation_id)];
    match outcome {
        Err(error) => message.extend([Value::from(1), Value::from(error)]),
        Ok(None) => message.push(Value::from(2)),
        Ok(Some(result)) => {
            let result = serde_json::from_slice::<serde_json::Value>(result).map_or(Value::Nil, |v| from_json(&v));
            message.extend([Value::from(3), result]);
        }
    }
    encode(&Value::Array(message))
}

/// `[8, id]` (Ack) or `[9, id]` (Sequence): no headers, as ASP.NET Core writes them.
pub fn encode_sequenced(kind: u8, sequence_id: u64) -> Vec<u8> {
    encode(&Value::Array(vec![Value::from(kind), Value::from(sequence_id)]))
}

pub fn encode_ping() -> Vec<u8> {
    encode(&Value::Array(vec![Value::from(6)]))
}

pub fn encode_close(error: Option<&str>, allow_reconnect: bool) -> Vec<u8> {
    let error = error.map_or(Value::Nil, Value::from);
    encode(&Value::Array(vec![Value::from(7), error, Value::Boolean(allow_reconnect)]))
}

/// Parses one message (without its length prefix).
pub fn parse_message(message: &[u8]) -> Result<ClientMessage, MessageError> {
    let malformed = |what: &str| MessageError::Malformed(what.to_owned());
    let value = rmpv::decode::read_value(&mut &message[..]).map_err(|e| MessageError::Malformed(e.to_string()))?;
    let Value::Array(fields) = value else { return Err(malformed("a message is not a MessagePack array")) };
    let kind = fields.first().and_then(Value::as_u64).ok_or_else(|| malformed("a message has no numeric type"))?;
    let invocation_id = || fields.get(2).and_then(Value::as_str).map(str::to_owned);
    Ok(match kind {
        1 | 4 => {
            let streams = fields.get(5).and_then(Value::as_array).is_some_and(|s| !s.is_empty());
            if kind == 4 || streams {
                return Ok(ClientMessage::Streaming { invocation_id: invocation_id() });
            }
            let (Some(target), Some(Value::Array(arguments))) = (fields.get(3).and_then(Value::as_str), fields.get(4))
            else {
                return Err(MessageError::BadInvocation);
            };
            let arguments = arguments.iter().map(to_json).collect::<Option<Vec<_>>>().ok_or_else(|| {
                malformed("an argument has no JSON equivalent (an extension type or a non-finite number)")
            })?;
            let arguments = serde_json::to_string(&arguments).map_err(|e| MessageError::Malformed(e.to_string()))?;
            let arguments = RawValue::from_string(arguments).map_err(|e| MessageError::Malformed(e.to_string()))?;
            ClientMessage::Invocation { invocation_id: invocation_id(), target: target.to_owned(), arguments }
        }
        2 => ClientMessage::Streaming { invocation_id: invocation_id() },
        5 => ClientMessage::CancelInvocation,
        6 => ClientMessage::Ping,
        7 => ClientMessage::Close,
        8 | 9 => {
            let id = fields
                .get(1)
                .and_then(Value::as_u64)
                .ok_or(MessageError::Malformed("an Ack or Sequence needs a numeric sequence id".into()))?;
            if kind == 8 { ClientMessage::Ack(id) } else { ClientMessage::Sequence(id) }
        }
        other => ClientMessage::Unknown(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unprefixed(message: &[u8]) -> Value {
        let (messages, used) = split(message).expect("split");
        assert_eq!((messages.len(), used), (1, message.len()));
        rmpv::decode::read_value(&mut &messages[0][..]).expect("msgpack")
    }

    #[test]
    fn length_prefixes_round_trip_and_partial_messages_wait() {
        let long = encode_invocation("t", format!("[\"{}\"]", "x".repeat(300)).as_bytes());
        assert!(long[0] & 0x80 != 0, "a two-byte prefix");
        let mut two = long.clone();
        two.extend_from_slice(&encode_ping());
        let (messages, used) = split(&two).expect("split");
        assert_eq!((messages.len(), used), (2, two.len()));
        let (messages, used) = split(&two[..two.len() - 1]).expect("split");
        assert_eq!((messages.len(), used), (1, long.len()), "the incomplete ping waits");
        assert!(split(&[0xff; 6]).is_err());
    }

    #[test]
    fn server_messages() {
        let invocation = unprefixed(&encode_invocation("New", br#"["a",{"b":1},2.5,null]"#));
        let expected = Value::Array(vec![
            Value::from(1),
            Value::Map(vec![]),
            Value::Nil,
            Value::from("New"),
            Value::Array(vec![
                Value::from("a"),
                Value::Map(vec![(Value::from("b"), Value::from(1))]),
                Value::F64(2.5),
                Value::Nil,
            ]),
            Value::Array(vec![]),
        ]);
        assert_eq!(invocation, expected);
        let error = unprefixed(&encode_completion("7", Err("no")));
        assert_eq!(error, Value::Array(vec![3.into(), Value::Map(vec![]), "7".into(), 1.into(), "no".into()]));
        let void = unprefixed(&encode_completion("7", Ok(None)));
        assert_eq!(void, Value::Array(vec![3.into(), Value::Map(vec![]), "7".into(), 2.into()]));
        assert_eq!(unprefixed(&encode_close(None, true)), Value::Array(vec![7.into(), Value::Nil, true.into()]));
        // Two-element arrays without headers, as ASP.NET Core and the JS client write them (any
        // integer width reads the same: the JS client writes Ack(36) as `0x92 0x08 0xcc 0x24`).
        assert_eq!(encode_sequenced(8, 36), vec![0x03, 0x92, 0x08, 0x24]);
        assert_eq!(unprefixed(&encode_sequenced(9, 1)), Value::Array(vec![9.into(), 1.into()]));
        assert!(matches!(parse_message(&[0x92, 0x08, 0xcc, 0x24]), Ok(ClientMessage::Ack(36))));
        assert!(matches!(parse_message(&[0x92, 0x09, 0x01]), Ok(ClientMessage::Sequence(1))));
        assert!(matches!(parse_message(&[0x91, 0x09]), Err(MessageError::Malformed(_))));
    }

    #[test]
    fn client_messages() {
        let call = Value::Array(vec![
            1.into(),
            Value::Map(vec![]),
            "9".into(),
            "Send".into(),
            Value::Array(vec!["hi".into(), Value::Binary(vec![1, 2])]),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &call).expect("encode");
        let ClientMessage::Invocation { invocation_id, target, arguments } = parse_message(&bytes).expect("parse")
        else {
            panic!("an invocation")
        };
        assert_eq!((invocation_id.as_deref(), target.as_str()), (Some("9"), "Send"));
        assert_eq!(arguments.get(), r#"["hi","AQI="]"#);
        let mut ext = Vec::new();
        let bad = Value::Array(vec![
            1.into(),
            Value::Map(vec![]),
            Value::Nil,
            "S".into(),
            Value::Array(vec![Value::Ext(-1, vec![0; 4])]),
        ]);
        rmpv::encode::write_value(&mut ext, &bad).expect("encode");
        assert!(matches!(parse_message(&ext), Err(MessageError::Malformed(_))));
        assert!(matches!(parse_message(&[0xc0]), Err(MessageError::Malformed(_))));
    }
}

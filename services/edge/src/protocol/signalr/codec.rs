//! The ASP.NET Core SignalR hub protocol, JSON or MessagePack (see docs/signalr.md).
//!
//! Messages are cut at the record separator (JSON) or by their length prefix (MessagePack):
//! a message may span transport messages, and one transport message may hold several. The
//! first must be the handshake (JSON in both protocols), which chooses the encoding. Hub
//! method calls become upstream events whose answers are Completions; hub messages are
//! Invocations of the client's handler for the event; presence is an Invocation of the
//! documented client method [`PRESENCE_METHOD`].

use base64::Engine as _;
use bytes::Bytes;
use signalbox_core::{ClientAction, CloseCode};
use signalbox_proto::native::ReplyId;
use signalbox_proto::signalr::{self, ClientMessage, HubProtocol, RECORD_SEPARATOR, msgpack};
use signalbox_proto::wire::DataKind;

use crate::protocol::{
    Answer, Command, ESCAPED_NAME, Encoding, Input, Outbound, Protocol, ProtocolInfo, Sequencing, Violation,
};

/// The client method a SignalR connection's presence changes invoke (documented in
/// docs/signalr.md): its one argument is the native `presence` frame's object.
pub(crate) const PRESENCE_METHOD: &str = "presence";

/// SignalR clients give up after 30 s without a message and expect one at least every 15 s.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(10);

/// What the handshake may choose.
static CHOICES: [Encoding; 2] = [Encoding::SIGNALR_JSON, Encoding::SIGNALR_MESSAGEPACK];

static JSON: ProtocolInfo = ProtocolInfo {
    name: "signalr.json.v1",
    binary: false,
    delimits: true,
    keepalive: Some(KEEPALIVE),
    opening: Some(&CHOICES),
    message_bound: json_bound,
    close_code: CloseCode::code,
};

static MESSAGEPACK: ProtocolInfo = ProtocolInfo {
    name: "signalr.messagepack.v1",
    binary: true,
    delimits: true,
    keepalive: Some(KEEPALIVE),
    opening: Some(&CHOICES),
    message_bound: messagepack_bound,
    close_code: CloseCode::code,
};

/// `{"type":1,"target":…,"arguments":[…]}` and the record separator; binary data as base64.
fn json_bound(max_payload: usize) -> usize {
    64 + ESCAPED_NAME + max_payload.max(2 + max_payload.div_ceil(3) * 4)
}

/// JSON turned into MessagePack shrinks or keeps its size except for numbers with a fraction
/// or an exponent: at least 3 characters (`0.5`, `1e5`) become a 9-byte float, so a payload
/// grows at most three times. Plus a length prefix of at most 5 bytes.
fn messagepack_bound(max_payload: usize) -> usize {
    64 + ESCAPED_NAME + 3 * max_payload
}

/// The SignalR hub protocol in one of its two encodings.
#[derive(Debug)]
pub(crate) struct SignalR(pub(crate) HubProtocol);

impl SignalR {
    /// The complete messages in `input.partial[*consumed..]`; advances `consumed` past them.
    fn messages(&self, input: &Input, consumed: &mut usize) -> Result<Vec<ClientMessage>, signalr::MessageError> {
        let rest = &input.partial[*consumed..];
        match self.0 {
            HubProtocol::Json => {
                let mut messages = Vec::new();
                let mut at = 0;
                while let Some(length) = rest[at..].iter().position(|&b| b == RECORD_SEPARATOR) {
                    messages.push(signalr::parse_message(&rest[at..at + length])?);
                    at += length + 1;
                }
                *consumed += at;
                Ok(messages)
            }
            HubProtocol::MessagePack => {
                let (raw, used) = msgpack::split(rest)?;
                let messages = raw.into_iter().map(msgpack::parse_message).collect::<Result<Vec<_>, _>>()?;
                *consumed += used;
                Ok(messages)
            }
        }
    }
}

/// The handshake in `partial[..end]`: the encoding it chooses, and whether the client numbers
/// its counted messages.
fn handshake(record: &[u8]) -> Result<(Encoding, bool), Violation> {
    let handshake = signalr::parse_handshake(record)
        .map_err(|err| Violation::new(CloseCode::ProtocolError, format!("handshake refused: {err}")))?;
    let encoding = match handshake.protocol {
        HubProtocol::Json => Encoding::SIGNALR_JSON,
        HubProtocol::MessagePack => Encoding::SIGNALR_MESSAGEPACK,
    };
    // Version 2 numbers counted messages, with Ack and Sequence (stateful reconnect).
    Ok((encoding, handshake.version >= 2))
}

/// The command a message makes, if any; with sequencing, copies of counted messages already
/// received make none, and the client's Sequence restarts its numbering.
fn command(message: ClientMessage, sequence: Option<&mut Sequencing>) -> Result<Option<Command>, Violation> {
    if let Some(sequence) = sequence {
        match message {
            ClientMessage::Sequence(next) => return sequence.restart_at(next).map(|()| None),
            ref counted if counted.is_counted() && !sequence.count() => return Ok(None),
            _ => {}
        }
    }
    Ok(match message {
        ClientMessage::Invocation { invocation_id, target, arguments } => Some(Command::Event {
            reply: invocation_id.clone().map(ReplyId::Text),
            event: target,
            data: Bytes::from(arguments.get().to_owned()),
            invocation_id,
        }),
        ClientMessage::Streaming { invocation_id } => invocation_id.map(|id| Command::Unsupported {
            reply: Some(ReplyId::Text(id)),
            message: "streaming hub methods are not supported by a serverless hub".into(),
        }),
        ClientMessage::Close => Some(Command::Close),
        ClientMessage::Ack(through) => Some(Command::Ack { through }),
        // The transport read already counts as a sign of life; a Sequence without sequencing
        // means nothing.
        ClientMessage::Ping | ClientMessage::CancelInvocation | ClientMessage::Sequence(_) => None,
        // Newer message kinds (acks, sequence numbers) and client results: ignored, as the
        // protocol asks of unknown types.
        ClientMessage::Unknown(kind) => {
            tracing::debug!(kind, "ignoring a SignalR message of an unknown type");
            None
        }
    })
}

fn invocation_id(id: &ReplyId) -> std::borrow::Cow<'_, str> {
    match id {
        ReplyId::Text(text) => text.into(),
        ReplyId::Number(number) => number.to_string().into(),
    }
}

impl Protocol for SignalR {
    fn info(&self) -> &ProtocolInfo {
        match self.0 {
            HubProtocol::Json => &JSON,
            HubProtocol::MessagePack => &MESSAGEPACK,
        }
    }

    fn decode(&self, input: &mut Input, data: &[u8], commands: &mut Vec<Command>) -> Result<(), Violation> {
        input.partial.extend_from_slice(data);
        let mut consumed = 0;
        let mut protocol = self;
        if !input.opened {
            let Some(end) = input.partial.iter().position(|&b| b == RECORD_SEPARATOR) else {
                return input.keep_tail(0);
            };
            let (encoding, sequenced) = handshake(&input.partial[..end])?;
            consumed = end + 1;
            input.opened = true;
            if sequenced {
                input.sequence = Some(Sequencing::default());
            }
            commands.push(Command::Open { encoding, sequenced });
            // What follows the handshake is in the encoding it chose.
            protocol = match encoding {
                Encoding::SIGNALR_MESSAGEPACK => &SignalR(HubProtocol::MessagePack),
                _ => &SignalR(HubProtocol::Json),
            };
        }
        let messages = protocol.messages(input, &mut consumed).map_err(|err| {
            input.partial = Vec::new();
            Violation::new(CloseCode::ProtocolError, format!("Connection closed with an error: {err}"))
        })?;
        for message in messages {
            if let Some(command) = command(message, input.sequence.as_mut())? {
                commands.push(command);
            }
        }
        input.keep_tail(consumed)
    }

    fn encode(&self, outbound: &Outbound<'_>) -> Option<Vec<u8>> {
        let protocol = self.0;
        Some(match *outbound {
            // The handshake's answer is JSON text whatever it chose.
            Outbound::Opened => signalr::encode_handshake_response(None),
            Outbound::OpenRefused(error) => signalr::encode_handshake_response(Some(error)),
            // A message is an invocation of the client's handler for the event, with the
            // data as its arguments; binary data as one base64 string, as the native protocol
            // sends it.
            Outbound::Message(message) if message.kind == DataKind::Binary => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(message.data);
                let argument = serde_json::to_vec(&encoded).unwrap_or_default();
                protocol.encode_invocation(message.event, &argument)
            }
            Outbound::Message(message) => protocol.encode_invocation(message.event, message.data),
            Outbound::Presence(notice) => {
                protocol.encode_invocation(PRESENCE_METHOD, &crate::protocol::native::encode_presence(&notice))
            }
            Outbound::Reply { to, answer } => {
                let result = match answer {
                    Answer::Data(data) if !data.is_empty() => Some(data),
                    _ => None,
                };
                protocol.encode_completion(&invocation_id(to), Ok(result))
            }
            Outbound::Error { to: Some(to), message, .. } => {
                protocol.encode_completion(&invocation_id(to), Err(message))
            }
            Outbound::KeepAlive => protocol.encode_ping(),
            Outbound::Ack(through) => protocol.encode_ack(through),
            Outbound::Sequence(next) => protocol.encode_sequence(next),
            // Whether the client may reconnect follows the close code's action (a reconnect
            // negotiates again, which asks the client's token factory for a fresh token).
            Outbound::Close(request) => {
                let allow_reconnect = !matches!(request.code.action(), ClientAction::GiveUp);
                let error = (request.code != CloseCode::Normal || !request.reason.is_empty())
                    .then(|| format!("{} ({})", request.reason, request.code.code()));
                protocol.encode_close(error.as_deref(), allow_reconnect)
            }
            // The Close message that follows says to reconnect; the rest has no SignalR form.
            Outbound::Welcome { .. }
            | Outbound::Error { to: None, .. }
            | Outbound::Pong(_)
            | Outbound::Recovery(_)
            | Outbound::Reconnect(_)
            | Outbound::SignedIn(_) => return None,
        })
    }
}

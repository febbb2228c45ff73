//! The native protocol, `signalbox.json.v1`: one JSON object per WebSocket text frame (see
//! docs/protocol.md). The client needs no opening; the server starts with `welcome`.

use signalbox_core::CloseCode;
use signalbox_proto::native::{self, ClientCommand, FrameError};

use crate::protocol::{
    Answer, Command, ESCAPED_NAME, Input, Outbound, PresenceNotice, Protocol, ProtocolInfo, Violation,
};

#[derive(Debug)]
pub(crate) struct Native;

static INFO: ProtocolInfo = ProtocolInfo {
    name: native::SUBPROTOCOL,
    binary: false,
    delimits: false,
    keepalive: None,
    opening: None,
    message_bound,
    close_code: CloseCode::code,
};

/// `{"type":"message","event":…,"data":…,"encoding":"base64","group":…,"seq":…}`: about 90
/// bytes of fixed text, two names escaped at worst, binary data as base64.
fn message_bound(max_payload: usize) -> usize {
    128 + 2 * ESCAPED_NAME + max_payload.max(2 + max_payload.div_ceil(3) * 4)
}

impl Protocol for Native {
    fn info(&self) -> &ProtocolInfo {
        &INFO
    }

    /// Each call is one whole frame: the transport (WebSocket) cuts messages.
    fn decode(&self, _input: &mut Input, data: &[u8], commands: &mut Vec<Command>) -> Result<(), Violation> {
        commands.push(match native::parse_client_frame(data) {
            Ok(request) => {
                let reply = request.id;
                match request.command {
                    ClientCommand::Join { group, since } => {
                        Command::Join { reply, group, since, proof: None, member: None }
                    }
                    ClientCommand::Leave { group } => Command::Leave { reply, group },
                    ClientCommand::Publish { group, event, data, no_echo } => {
                        Command::Publish { reply, group, event, data, no_echo, members_only: false }
                    }
                    ClientCommand::Ping => Command::Ping { reply },
                    ClientCommand::Presence { group } => Command::Presence { reply, group },
                    ClientCommand::Event { event, data } => {
                        Command::Event { reply, event: event.to_string(), data, invocation_id: None }
                    }
                }
            }
            Err(FrameError { id, code, message }) => Command::Invalid { reply: id, code, message },
        });
        Ok(())
    }

    fn encode(&self, outbound: &Outbound<'_>) -> Option<Vec<u8>> {
        Some(match *outbound {
            Outbound::Welcome { connection_id, user, heartbeat_seconds } => {
                native::encode_welcome(connection_id, user, heartbeat_seconds)
            }
            Outbound::Opened
            | Outbound::OpenRefused(_)
            | Outbound::KeepAlive
            | Outbound::Close(_)
            | Outbound::Ack(_)
            | Outbound::Sequence(_)
            | Outbound::SignedIn(_) => return None,
            Outbound::Message(m) => native::encode_message(m.event, m.kind, m.data, m.group, m.seq),
            Outbound::Presence(notice) => encode_presence(&notice),
            Outbound::Reply { to, answer } => match answer {
                Answer::Ok => native::encode_reply_ok(to),
                Answer::Position(position) => native::encode_reply_position(to, position),
                Answer::Recovery(outcome) => native::encode_reply_recovery(to, outcome),
                Answer::Presence(summary) => native::encode_reply_presence(to, summary),
                Answer::Data(data) => native::encode_reply_data(to, data),
            },
            Outbound::Error { to, code, message } => native::encode_error(to, code, message),
            Outbound::Pong(to) => native::encode_pong(to),
            Outbound::Recovery(groups) => native::encode_recovery(groups),
            Outbound::Reconnect(reason) => native::encode_reconnect(reason),
        })
    }
}

/// The `presence` frame; other protocols that have no presence of their own carry it as it is.
pub(crate) fn encode_presence(notice: &PresenceNotice<'_>) -> Vec<u8> {
    match *notice {
        PresenceNotice::Members { group, joined, left, count, truncated } => {
            native::encode_presence_members(group, joined, left, count, truncated)
        }
        PresenceNotice::Count { group, count } => native::encode_presence_count(group, count),
        // `{"type":"presence","group":…,"joined":[{"userId":…,"info":…}],"left":[],"count":…}`.
        PresenceNotice::UserAdded { group, user, info, count } => {
            let info = info.and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok());
            let joined = match info {
                Some(info) => serde_json::json!([{"userId": user, "info": info}]),
                None => serde_json::json!([{"userId": user}]),
            };
            let frame =
                serde_json::json!({"type": "presence", "group": group, "joined": joined, "left": [], "count": count});
            serde_json::to_vec(&frame).unwrap_or_default()
        }
        PresenceNotice::UserRemoved { group, user, count } => {
            let left = serde_json::json!([{"userId": user}]);
            let frame =
                serde_json::json!({"type": "presence", "group": group, "joined": [], "left": left, "count": count});
            serde_json::to_vec(&frame).unwrap_or_default()
        }
    }
}

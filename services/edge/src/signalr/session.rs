//! A SignalR connection's inbound side, whatever the transport: messages are cut at the
//! record separator (JSON) or by their length prefix (MessagePack) — a message may span
//! transport messages, and one transport message may hold several. The first must be the
//! handshake (JSON in both protocols); once it is answered, the connection joins its targets
//! and groups. Hub method calls go to the app's upstream webhook one at a time, in order, with
//! the answer sent back as a Completion.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use signalbox_bus::BoxFuture;
use signalbox_core::{CloseCode, GroupName, WebhookEvent};
use signalbox_proto::ApiOp;
use signalbox_proto::signalr::{self, ClientMessage, HubProtocol, RECORD_SEPARATOR, msgpack};
use signalbox_proto::wire::{ApiAnswer, ApiQuery, ClientEventRequest};

use crate::EdgeState;
use crate::conn::Conn;
use crate::outbox::CloseRequest;
use crate::session::TokenBucket;

/// Bytes a record may have beyond the app's message limit (the JSON around the arguments).
const RECORD_OVERHEAD: usize = 4 * 1024;
/// A partial-record buffer bigger than this is freed once empty.
const KEPT_BUFFER: usize = 16 * 1024;

/// A hub method call waiting for the upstream.
struct Call {
    invocation_id: Option<String>,
    target: String,
    arguments: Bytes,
}

#[derive(Debug)]
pub(crate) struct SignalRSession {
    edge: Arc<EdgeState>,
    conn: Arc<Conn>,
    /// The protocol the handshake chose; `None` until then.
    protocol: Option<HubProtocol>,
    /// The groups to join once the handshake is answered.
    groups: Vec<GroupName>,
    /// The unterminated tail of what arrived so far.
    partial: Vec<u8>,
    /// Nothing more is read: the connection is closing on an error.
    failed: bool,
    calls_allowance: TokenBucket,
}

impl SignalRSession {
    pub(crate) fn new(edge: Arc<EdgeState>, conn: Arc<Conn>, groups: Vec<GroupName>) -> Self {
        let limits = &conn.settings.limits;
        let calls_allowance = TokenBucket::new(limits.client_publish_rate, limits.client_publish_burst);
        Self { edge, conn, protocol: None, groups, partial: Vec::new(), failed: false, calls_allowance }
    }

    pub(crate) fn conn(&self) -> Arc<Conn> {
        Arc::clone(&self.conn)
    }

    fn fail(&mut self, code: CloseCode, error: String) {
        tracing::debug!(connection = %self.conn.id, error, "closing a SignalR connection on a protocol error");
        self.failed = true;
        self.partial = Vec::new();
        self.conn.close(CloseRequest::new(code, error));
    }

    /// Takes what a transport received. Returns the work to do, in order: the attach after a
    /// handshake, then the hub method calls.
    pub(crate) fn on_data(&mut self, data: &[u8]) -> Option<BoxFuture<'static, ()>> {
        if self.failed {
            return None;
        }
        self.partial.extend_from_slice(data);
        let mut attach = None;
        let mut consumed = 0;
        if self.protocol.is_none() {
            let Some(end) = self.partial.iter().position(|&b| b == RECORD_SEPARATOR) else {
                self.check_size();
                return None;
            };
            consumed = end + 1;
            match self.handshake(end) {
                Some(groups) => attach = Some(groups),
                None => return None,
            }
        }
        let mut calls = Vec::new();
        let protocol = self.protocol.unwrap_or(HubProtocol::Json);
        let parsed = match protocol {
            HubProtocol::Json => self.json_messages(&mut consumed),
            HubProtocol::MessagePack => self.msgpack_messages(&mut consumed),
        };
        match parsed {
            Ok(messages) => {
                for message in messages {
                    if let Some(call) = self.on_message(protocol, message) {
                        calls.push(call);
                    }
                }
            }
            Err(err) => {
                self.fail(CloseCode::ProtocolError, format!("Connection closed with an error: {err}"));
                return None;
            }
        }
        if !self.failed {
            self.partial.drain(..consumed);
            if !self.check_size() {
                return None;
            }
        }
        // Checks that need no I/O answer now, in order with the rest.
        let mut allowed = Vec::with_capacity(calls.len());
        for call in calls {
            match self.refusal(&call) {
                Some(error) => {
                    if let Some(id) = &call.invocation_id {
                        self.conn.send(&protocol.encode_completion(id, Err(&error)));
                    }
                }
                None => allowed.push(call),
            }
        }
        if attach.is_none() && allowed.is_empty() {
            return None;
        }
        let (edge, conn) = (Arc::clone(&self.edge), Arc::clone(&self.conn));
        Some(Box::pin(async move {
            if let Some(groups) = attach {
                super::attach(&edge, &conn, &groups).await;
            }
            for call in allowed {
                invoke(&edge, &conn, protocol, call).await;
            }
        }))
    }

    /// Answers the handshake in `partial[..end]`; returns the groups to join, or `None` when
    /// the connection is closing.
    fn handshake(&mut self, end: usize) -> Option<Vec<GroupName>> {
        let result = signalr::parse_handshake(&self.partial[..end]).and_then(|protocol| {
            let format = self.conn.format().with_hub_protocol(protocol).ok_or_else(|| {
                signalr::HandshakeError::Malformed(
                    "MessagePack needs a binary transport, not Server-Sent Events".into(),
                )
            })?;
            Ok((protocol, format))
        });
        match result {
            Ok((protocol, format)) => {
                // The answer is JSON in the transport's text framing, before the switch.
                self.conn.send(&signalr::encode_handshake_response(None));
                self.conn.set_format(format);
                self.protocol = Some(protocol);
                Some(std::mem::take(&mut self.groups))
            }
            Err(err) => {
                self.conn.send(&signalr::encode_handshake_response(Some(&err.to_string())));
                self.fail(CloseCode::ProtocolError, format!("handshake refused: {err}"));
                None
            }
        }
    }

    /// The complete JSON records after `consumed`; advances it past them.
    fn json_messages(&self, consumed: &mut usize) -> Result<Vec<ClientMessage>, signalr::MessageError> {
        let mut messages = Vec::new();
        while let Some(length) = self.partial[*consumed..].iter().position(|&b| b == RECORD_SEPARATOR) {
            messages.push(signalr::parse_message(&self.partial[*consumed..*consumed + length])?);
            *consumed += length + 1;
        }
        Ok(messages)
    }

    /// The complete MessagePack messages after `consumed`; advances it past them.
    fn msgpack_messages(&self, consumed: &mut usize) -> Result<Vec<ClientMessage>, signalr::MessageError> {
        let (raw, used) = msgpack::split(&self.partial[*consumed..])?;
        let messages = raw.into_iter().map(msgpack::parse_message).collect::<Result<Vec<_>, _>>()?;
        *consumed += used;
        Ok(messages)
    }

    /// What an unterminated message may grow to; false (and closing) beyond it.
    fn check_size(&mut self) -> bool {
        let max = self.conn.settings.limits.max_message_bytes as usize + RECORD_OVERHEAD;
        if self.partial.len() > max {
            self.fail(CloseCode::MessageTooBig, format!("the maximum message size of {max} bytes was exceeded"));
            return false;
        }
        if self.partial.is_empty() && self.partial.capacity() > KEPT_BUFFER {
            self.partial = Vec::new();
        }
        true
    }

    /// One message after the handshake; returns a hub method call to make.
    fn on_message(&mut self, protocol: HubProtocol, message: ClientMessage) -> Option<Call> {
        match message {
            ClientMessage::Invocation { invocation_id, target, arguments } => {
                return Some(Call { invocation_id, target, arguments: Bytes::from(arguments.get().to_owned()) });
            }
            ClientMessage::Streaming { invocation_id } => {
                if let Some(id) = invocation_id {
                    let error = "streaming hub methods are not supported by a serverless hub";
                    self.conn.send(&protocol.encode_completion(&id, Err(error)));
                }
            }
            ClientMessage::Close => {
                self.conn.close(CloseRequest::new(CloseCode::Normal, "the client closed the connection"));
            }
            ClientMessage::Ping | ClientMessage::CancelInvocation => {}
            // Newer message kinds (acks, sequence numbers) and client results: ignored, as the
            // protocol asks of unknown types.
            ClientMessage::Unknown(kind) => {
                tracing::debug!(connection = %self.conn.id, kind, "ignoring a SignalR message of an unknown type");
            }
        }
        None
    }

    /// Why a call cannot go upstream, if it cannot.
    fn refusal(&mut self, call: &Call) -> Option<String> {
        if !self.conn.webhook_events.contains(WebhookEvent::Event) {
            return Some(format!(
                "no upstream handles hub method '{}': the app has no webhook for `event`",
                call.target
            ));
        }
        let max = self.conn.settings.limits.max_message_bytes as usize;
        if call.arguments.len() > max {
            return Some(format!("the arguments are {} bytes; the app allows at most {max}", call.arguments.len()));
        }
        if !self.calls_allowance.take() {
            let rate = self.conn.settings.limits.client_publish_rate;
            return Some(format!("calling faster than the app's limit of {rate} messages per second"));
        }
        None
    }
}

/// Calls the upstream for one hub method call; its answer becomes the Completion.
async fn invoke(edge: &EdgeState, conn: &Conn, protocol: HubProtocol, call: Call) {
    let timeout_ms = conn.settings.webhooks.event_timeout_ms;
    let request = ClientEventRequest {
        connection_id: conn.id.to_string(),
        hub: conn.scope.hub.to_string(),
        user: conn.user.as_ref().map(ToString::to_string),
        event: call.target,
        data: call.arguments,
        timeout_ms,
        invocation_id: call.invocation_id.clone(),
    };
    let wait = Duration::from_millis(u64::from(timeout_ms)) + Duration::from_secs(2);
    let answer =
        edge.directory.request(&conn.scope.app, ApiOp::ClientEvent, ApiQuery::ClientEvent(request), wait).await;
    let Some(id) = call.invocation_id else { return };
    let completion = match &answer {
        Ok(ApiAnswer::EventReply(result)) if result.is_empty() => protocol.encode_completion(&id, Ok(None)),
        Ok(ApiAnswer::EventReply(result)) => protocol.encode_completion(&id, Ok(Some(result))),
        Ok(ApiAnswer::Error(failure)) => protocol.encode_completion(&id, Err(&failure.message)),
        _ => protocol.encode_completion(&id, Err("cannot reach the app's upstream right now; retry")),
    };
    conn.send(&completion);
}

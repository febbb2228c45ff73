//! A SignalR connection's inbound side, whatever the transport: records are cut at the
//! record separator (a record may span transport messages, and one message may hold
//! several), the first must be the handshake, and hub method calls go to the app's upstream
//! webhook one at a time, in order, with the answer sent back as a Completion.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use signalbox_bus::BoxFuture;
use signalbox_core::{CloseCode, WebhookEvent};
use signalbox_proto::ApiOp;
use signalbox_proto::signalr::{self, ClientMessage, RECORD_SEPARATOR};
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
    handshaken: bool,
    /// The unterminated tail of what arrived so far.
    partial: Vec<u8>,
    /// Nothing more is read: the connection is closing on an error.
    failed: bool,
    calls_allowance: TokenBucket,
}

impl SignalRSession {
    pub(crate) fn new(edge: Arc<EdgeState>, conn: Arc<Conn>) -> Self {
        let limits = &conn.settings.limits;
        let calls_allowance = TokenBucket::new(limits.client_publish_rate, limits.client_publish_burst);
        Self { edge, conn, handshaken: false, partial: Vec::new(), failed: false, calls_allowance }
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

    /// Takes what a transport received. Returns the hub method calls to make, in order.
    pub(crate) fn on_data(&mut self, data: &[u8]) -> Option<BoxFuture<'static, ()>> {
        if self.failed {
            return None;
        }
        self.partial.extend_from_slice(data);
        let mut calls = Vec::new();
        let mut start = 0;
        while let Some(length) = self.partial[start..].iter().position(|&b| b == RECORD_SEPARATOR) {
            let record = self.partial[start..start + length].to_vec();
            start += length + 1;
            if !self.handshaken {
                match signalr::parse_handshake(&record) {
                    Ok(()) => {
                        self.handshaken = true;
                        self.conn.send(&signalr::encode_handshake_response(None));
                    }
                    Err(err) => {
                        self.conn.send(&signalr::encode_handshake_response(Some(&err.to_string())));
                        self.fail(CloseCode::ProtocolError, format!("handshake refused: {err}"));
                        return None;
                    }
                }
                continue;
            }
            match signalr::parse_message(&record) {
                Ok(ClientMessage::Invocation { invocation_id, target, arguments }) => {
                    calls.push(Call { invocation_id, target, arguments: Bytes::from(arguments.get().to_owned()) });
                }
                Ok(ClientMessage::Streaming { invocation_id }) => {
                    if let Some(id) = invocation_id {
                        let error = "streaming hub methods are not supported by a serverless hub";
                        self.conn.send(&signalr::encode_completion(&id, Err(error)));
                    }
                }
                Ok(ClientMessage::Close) => {
                    self.conn.close(CloseRequest::new(CloseCode::Normal, "the client closed the connection"));
                }
                Ok(ClientMessage::Ping | ClientMessage::CancelInvocation) => {}
                // Newer message kinds (acks, sequence numbers) and client results: ignored,
                // as the protocol asks of unknown types.
                Ok(ClientMessage::Unknown(kind)) => {
                    tracing::debug!(connection = %self.conn.id, kind, "ignoring a SignalR message of an unknown type");
                }
                Err(err) => {
                    self.fail(CloseCode::ProtocolError, format!("Connection closed with an error: {err}"));
                    return None;
                }
            }
        }
        self.partial.drain(..start);
        let max = self.conn.settings.limits.max_message_bytes as usize + RECORD_OVERHEAD;
        if self.partial.len() > max {
            self.fail(CloseCode::MessageTooBig, format!("the maximum message size of {max} bytes was exceeded"));
            return None;
        }
        if self.partial.is_empty() && self.partial.capacity() > KEPT_BUFFER {
            self.partial = Vec::new();
        }
        if calls.is_empty() {
            return None;
        }
        // Checks that need no I/O answer now, in order with the rest.
        let mut allowed = Vec::with_capacity(calls.len());
        for call in calls {
            match self.refusal(&call) {
                Some(error) => {
                    if let Some(id) = &call.invocation_id {
                        self.conn.send(&signalr::encode_completion(id, Err(&error)));
                    }
                }
                None => allowed.push(call),
            }
        }
        let (edge, conn) = (Arc::clone(&self.edge), Arc::clone(&self.conn));
        Some(Box::pin(async move {
            for call in allowed {
                invoke(&edge, &conn, call).await;
            }
        }))
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
async fn invoke(edge: &EdgeState, conn: &Conn, call: Call) {
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
        Ok(ApiAnswer::EventReply(result)) if result.is_empty() => signalr::encode_completion(&id, Ok(None)),
        Ok(ApiAnswer::EventReply(result)) => signalr::encode_completion(&id, Ok(Some(result))),
        Ok(ApiAnswer::Error(failure)) => signalr::encode_completion(&id, Err(&failure.message)),
        _ => signalr::encode_completion(&id, Err("cannot reach the app's upstream right now; retry")),
    };
    conn.send(&completion);
}

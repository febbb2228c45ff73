//! The native protocol's session: what a client may do on its connection, independent of
//! the socket. Checks that need no I/O (permissions, limits, rate) answer at once; joins and
//! publishes return a future that the connection runs before reading the next frame, so a
//! client's requests take effect, and are answered, in the order it sent them.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use signalbox_bus::{BusError, Retention};
use signalbox_core::{Action, CloseCode, ErrorCode, EventName, GroupName, Permissions, WebhookEvent, clock, ids};
use signalbox_proto::ApiOp;
use signalbox_proto::native::{self, ClientCommand, ReplyId};
use signalbox_proto::presence::PresenceSummary;
use signalbox_proto::wire::{
    self, ApiAnswer, ApiFailureKind, ApiQuery, Body, ClientEventRequest, DataKind, Envelope, GroupPresenceQuery, Target,
};

use crate::EdgeState;
use crate::conn::Conn;
use crate::hub::{Hub, JoinError};
use crate::outbox::CloseRequest;
use signalbox_bus::BoxFuture;

/// Malformed frames in a row after which the connection is closed (4002).
const MAX_CONSECUTIVE_ERRORS: u32 = 50;

/// Publish allowance: `rate` tokens per second up to `burst`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    refilled: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self { tokens: burst, rate: f64::from(rate), burst, refilled: Instant::now() }
    }

    pub(crate) fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.refilled).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
pub(crate) struct Session {
    edge: Arc<EdgeState>,
    hub: Arc<Hub>,
    conn: Arc<Conn>,
    permissions: Permissions,
    publish_allowance: TokenBucket,
    consecutive_errors: u32,
}

/// Queues a reply (when the request had an id) or nothing.
fn reply_ok(conn: &Conn, id: Option<&ReplyId>) {
    if let Some(id) = id {
        conn.send(&native::encode_reply_ok(id));
    }
}

/// Queues an error reply; a request without an id gets an `error` frame instead, so that
/// no failure is silent.
fn reply_error(conn: &Conn, id: Option<&ReplyId>, code: ErrorCode, message: &str) {
    conn.send(&native::encode_error(id, code, message));
}

impl Session {
    pub(crate) fn new(edge: Arc<EdgeState>, conn: Arc<Conn>, permissions: Permissions) -> Self {
        let limits = &conn.settings.limits;
        let publish_allowance = TokenBucket::new(limits.client_publish_rate, limits.client_publish_burst);
        let hub = Arc::clone(&edge.hub);
        Self { edge, hub, conn, permissions, publish_allowance, consecutive_errors: 0 }
    }

    /// Handles one text frame. Returns the asynchronous rest of the work, if any.
    pub(crate) fn on_text(&mut self, text: &[u8]) -> Option<BoxFuture<'static, ()>> {
        let request = match native::parse_client_frame(text) {
            Ok(request) => request,
            Err(err) => {
                reply_error(&self.conn, err.id.as_ref(), err.code, &err.message);
                self.consecutive_errors += 1;
                if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                    self.conn.close(CloseRequest::default_for(CloseCode::TooManyErrors));
                }
                return None;
            }
        };
        self.consecutive_errors = 0;
        let id = request.id;
        match request.command {
            ClientCommand::Join { group, since } => self.join(id, group, since),
            ClientCommand::Leave { group } => {
                self.leave(id.as_ref(), &group);
                None
            }
            ClientCommand::Publish { group, event, data, no_echo } => self.publish(id, group, event, data, no_echo),
            ClientCommand::Ping => {
                self.conn.send(&native::encode_pong(id.as_ref()));
                None
            }
            ClientCommand::Presence { group } => self.presence(id, group),
            ClientCommand::Event { event, data } => self.client_event(id, event, data),
        }
    }

    /// Who is in a group the client may join, asked of every edge through the api.
    fn presence(&mut self, id: Option<ReplyId>, group: GroupName) -> Option<BoxFuture<'static, ()>> {
        if !self.permissions.allows(Action::Join, &group) {
            self.forbidden(id.as_ref(), "asking who is in", &group);
            return None;
        }
        let (edge, conn) = (Arc::clone(&self.edge), Arc::clone(&self.conn));
        Some(Box::pin(async move {
            let query =
                ApiQuery::Presence(GroupPresenceQuery { hub: conn.scope.hub.to_string(), group: group.to_string() });
            let timeout = edge.hub.config.api_timeout;
            match edge.directory.request(&conn.scope.app, ApiOp::Presence, query, timeout).await {
                Ok(ApiAnswer::Presence(list)) => {
                    if let Some(id) = &id {
                        let summary = PresenceSummary::from_entries(&list.entries);
                        conn.send(&native::encode_reply_presence(id, &summary));
                    }
                }
                _ => {
                    reply_error(&conn, id.as_ref(), ErrorCode::Unavailable, "cannot tell who is there right now; retry")
                }
            }
        }))
    }

    /// A client event, for the app's `event` webhook; its answer is the reply.
    fn client_event(&mut self, id: Option<ReplyId>, event: EventName, data: Bytes) -> Option<BoxFuture<'static, ()>> {
        if !self.conn.webhook_events.contains(WebhookEvent::Event) {
            reply_error(&self.conn, id.as_ref(), ErrorCode::NoUpstream, "no webhook of this app handles client events");
            return None;
        }
        let max = self.conn.settings.limits.max_message_bytes as usize;
        if data.len() > max {
            let message = format!("data is {} bytes; the app allows at most {max}", data.len());
            reply_error(&self.conn, id.as_ref(), ErrorCode::MessageTooLarge, &message);
            return None;
        }
        if !self.publish_allowance.take() {
            let rate = self.conn.settings.limits.client_publish_rate;
            let message = format!("sending faster than the app's limit of {rate} messages per second");
            reply_error(&self.conn, id.as_ref(), ErrorCode::RateLimited, &message);
            return None;
        }
        let (edge, conn) = (Arc::clone(&self.edge), Arc::clone(&self.conn));
        Some(Box::pin(async move {
            let timeout_ms = conn.settings.webhooks.event_timeout_ms;
            let request = ClientEventRequest {
                connection_id: conn.id.to_string(),
                hub: conn.scope.hub.to_string(),
                user: conn.user.as_ref().map(ToString::to_string),
                event: event.to_string(),
                data,
                timeout_ms,
                invocation_id: None,
            };
            let wait = std::time::Duration::from_millis(u64::from(timeout_ms)) + std::time::Duration::from_secs(2);
            let answer =
                edge.directory.request(&conn.scope.app, ApiOp::ClientEvent, ApiQuery::ClientEvent(request), wait).await;
            match answer {
                Ok(ApiAnswer::EventReply(data)) => {
                    if let Some(id) = &id {
                        conn.send(&native::encode_reply_data(id, &data));
                    }
                }
                Ok(ApiAnswer::Error(failure)) => {
                    let code = match ApiFailureKind::try_from(failure.kind) {
                        Ok(ApiFailureKind::NoUpstream) => ErrorCode::NoUpstream,
                        Ok(ApiFailureKind::UpstreamFailed) => ErrorCode::UpstreamFailed,
                        _ => ErrorCode::Unavailable,
                    };
                    reply_error(&conn, id.as_ref(), code, &failure.message);
                }
                _ => reply_error(&conn, id.as_ref(), ErrorCode::Unavailable, "cannot reach the app right now; retry"),
            }
        }))
    }

    fn forbidden(&self, id: Option<&ReplyId>, action: &str, group: &GroupName) {
        let message = format!("the token does not permit {action} group {:?}", group.as_str());
        reply_error(&self.conn, id, ErrorCode::Forbidden, &message);
    }

    /// Joins a group; with `since`, first replays what the client missed after that position.
    fn join(&mut self, id: Option<ReplyId>, group: GroupName, since: Option<u64>) -> Option<BoxFuture<'static, ()>> {
        if !self.permissions.allows(Action::Join, &group) {
            self.forbidden(id.as_ref(), "joining", &group);
            return None;
        }
        let (hub, conn) = (Arc::clone(&self.hub), Arc::clone(&self.conn));
        Some(Box::pin(async move {
            if since.is_some() {
                if conn.groups.lock().names.contains(&group) {
                    let message = "already in this group: `since` recovers a group being joined; reconnect with `recover` instead";
                    reply_error(&conn, id.as_ref(), ErrorCode::BadRequest, message);
                    return;
                }
                // Before joining: every live message of the group meets the hold.
                conn.recovery.start(&group);
            }
            let joined = hub.join(&conn, &group).await;
            if joined.is_err() && since.is_some() {
                conn.recovery.cancel(&group);
            }
            match joined {
                Ok(_) => match since {
                    Some(since) => {
                        let outcome = hub.replay(&conn, &group, since).await;
                        match id {
                            Some(id) => conn.send(&native::encode_reply_recovery(&id, &outcome)),
                            // No id to answer: still say how it went, so no loss is silent.
                            None => conn.send(&native::encode_recovery(&[outcome])),
                        };
                    }
                    None => reply_ok(&conn, id.as_ref()),
                },
                Err(JoinError::TooManyGroups(max)) => {
                    let message = format!("the connection is already in the maximum of {max} groups");
                    reply_error(&conn, id.as_ref(), ErrorCode::TooManyGroups, &message);
                }
                Err(JoinError::Closing) => {}
                Err(JoinError::Bus(err)) => {
                    tracing::warn!(connection = %conn.id, group = %group, error = %err, "join failed");
                    reply_error(&conn, id.as_ref(), ErrorCode::Unavailable, "cannot join right now; retry");
                }
            }
        }))
    }

    fn leave(&mut self, id: Option<&ReplyId>, group: &GroupName) {
        if !self.permissions.allows(Action::Leave, group) {
            self.forbidden(id, "leaving", group);
            return;
        }
        self.hub.leave(&self.conn, group);
        reply_ok(&self.conn, id);
    }

    fn publish(
        &mut self,
        id: Option<ReplyId>,
        group: GroupName,
        event: EventName,
        data: Bytes,
        no_echo: bool,
    ) -> Option<BoxFuture<'static, ()>> {
        if !self.permissions.allows(Action::Publish, &group) {
            self.forbidden(id.as_ref(), "publishing to", &group);
            return None;
        }
        let max = self.conn.settings.limits.max_message_bytes as usize;
        if data.len() > max {
            let message = format!("data is {} bytes; the app allows at most {max}", data.len());
            reply_error(&self.conn, id.as_ref(), ErrorCode::MessageTooLarge, &message);
            return None;
        }
        if !self.publish_allowance.take() {
            let rate = self.conn.settings.limits.client_publish_rate;
            let message = format!("publishing faster than the app's limit of {rate} messages per second");
            reply_error(&self.conn, id.as_ref(), ErrorCode::RateLimited, &message);
            return None;
        }
        let conn = Arc::clone(&self.conn);
        // A client publish starts its own trace (when traces are exported): the edges that
        // deliver it continue it from the envelope.
        let span = if signalbox_bus::trace::enabled() {
            tracing::info_span!("client publish", otel.kind = "producer", app = %conn.scope.app, connection = %conn.id, group = %group)
        } else {
            tracing::Span::none()
        };
        let (traceparent, tracestate) = signalbox_bus::trace::context_of(&span);
        let envelope = Envelope {
            app: conn.scope.app.to_string(),
            hub: conn.scope.hub.to_string(),
            target: Some(Target::Group(group.to_string())),
            exclude: if no_echo { vec![conn.id.to_string()] } else { Vec::new() },
            event: event.to_string(),
            data,
            data_kind: DataKind::Json as i32,
            id: ids::message_id(),
            position: None,
            published_at_micros: clock::unix_micros(),
            traceparent,
            tracestate,
            origin_connection: Some(conn.id.to_string()),
        };
        let subjects = &self.hub.config.subjects;
        let history = conn
            .settings
            .history
            .keeps(&group)
            .then(|| (subjects.history(&conn.scope, &group), Retention::from(&conn.settings.history)));
        let subject = subjects.group(&conn.scope, &group);
        let hub = Arc::clone(&self.hub);
        Some(Box::pin(tracing::Instrument::instrument(
            async move {
                metrics::counter!("signalbox_messages_in_total", "source" => "client").increment(1);
                let message_id = envelope.id.clone();
                let packet = wire::encode(Body::Message(envelope));
                let published = match history {
                    Some((history, retention)) => hub
                        .journal
                        .append(&conn.scope.app, retention, history, packet, message_id)
                        .await
                        .map(|appended| Some(appended.seq)),
                    None => hub.bus.publish(subject, packet).await.map(|()| None),
                };
                match published {
                    Ok(Some(position)) => {
                        if let Some(id) = &id {
                            conn.send(&native::encode_reply_position(id, position));
                        }
                    }
                    Ok(None) => reply_ok(&conn, id.as_ref()),
                    Err(err) => {
                        let (code, message) = match err {
                            BusError::TooLarge => (ErrorCode::MessageTooLarge, "the message is too large to route"),
                            _ => (ErrorCode::Unavailable, "cannot publish right now; retry"),
                        };
                        tracing::warn!(connection = %conn.id, error = %err, "client publish failed");
                        reply_error(&conn, id.as_ref(), code, message);
                    }
                }
            },
            span,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(2, 3);
        let start = bucket.refilled;
        assert!(bucket.take_at(start) && bucket.take_at(start) && bucket.take_at(start));
        assert!(!bucket.take_at(start), "burst spent");
        let half_second = start + std::time::Duration::from_millis(500);
        assert!(bucket.take_at(half_second), "2/s refills one token in half a second");
        assert!(!bucket.take_at(half_second));
        let much_later = start + std::time::Duration::from_secs(60);
        assert!((0..3).all(|_| bucket.take_at(much_later)), "refill is capped at the burst");
        assert!(!bucket.take_at(much_later));
    }
}

//! The requests a session executes: joins (with recovery), leaves, publishes, presence
//! queries and upstream events, with their permission, size and rate checks.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use signalbox_bus::{BusError, Retention};
use signalbox_core::{Action, ErrorCode, EventName, GroupName, KeyId, WebhookEvent, clock, ids};
use signalbox_proto::ApiOp;
use signalbox_proto::native::ReplyId;
use signalbox_proto::presence::PresenceSummary;
use signalbox_proto::wire::{
    self, ApiAnswer, ApiFailureKind, ApiQuery, Body, ClientEventRequest, DataKind, Envelope, GroupPresenceQuery, Target,
};

use super::{Session, send};
use crate::EdgeState;
use crate::conn::{Conn, Member};
use crate::directory::LookupError;
use crate::hub::JoinError;
use crate::protocol::{Answer, JoinMember, JoinProof, Outbound};

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

/// How a publish goes: not to the publisher (`no_echo`); only from a member (`members_only`).
#[derive(Debug, Clone, Copy)]
pub(super) struct PublishFlags {
    pub(super) no_echo: bool,
    pub(super) members_only: bool,
}

/// What lets a join in without a permission, and who it says the connection is.
#[derive(Debug)]
pub(super) struct Grant {
    pub(super) proof: Option<JoinProof>,
    pub(super) member: Option<JoinMember>,
}

/// Who is in a group, on every edge (asked of the api).
async fn members(edge: &EdgeState, conn: &Conn, group: &GroupName) -> Option<PresenceSummary> {
    let query = ApiQuery::Presence(GroupPresenceQuery { hub: conn.scope.hub.to_string(), group: group.to_string() });
    match edge.directory.request(&conn.scope.app, ApiOp::Presence, query, edge.hub.config.api_timeout).await {
        Ok(ApiAnswer::Presence(list)) => Some(PresenceSummary::from_entries(&list.entries)),
        _ => None,
    }
}

/// Checks a join's proof: a signature by a live key of the connection's app, or the user the
/// connection signed in as.
async fn check_proof(edge: &EdgeState, conn: &Conn, proof: &JoinProof) -> Result<(), (ErrorCode, String)> {
    let forbidden = |message: &str| (ErrorCode::Forbidden, message.to_owned());
    let (key, signed, signature) = match proof {
        JoinProof::Signed { key, signed, signature } => (key, signed, signature),
        JoinProof::SignedInAs(user) if conn.signed_in.get() == Some(user) => return Ok(()),
        JoinProof::SignedInAs(_) => return Err(forbidden("only the user signed in on this connection may join")),
    };
    let key_id = KeyId::new(key).map_err(|_| forbidden("the signature names no key of this app"))?;
    let key = match edge.directory.key(&conn.scope.app, &key_id).await {
        Ok(key) if !key.revoked => key,
        Ok(_) => return Err(forbidden("the signature's key is revoked")),
        Err(LookupError::NotFound) => return Err(forbidden("the signature names no key of this app")),
        Err(LookupError::Unavailable) => {
            return Err((ErrorCode::Unavailable, "cannot check the signature right now; retry".into()));
        }
    };
    if !signalbox_core::pusher::verify(&key.secret, signed, signature) {
        return Err(forbidden(&format!("invalid signature: expected the HMAC-SHA256 hex digest of {signed:?}")));
    }
    Ok(())
}

impl Session {
    fn forbidden(&mut self, reply: Option<&ReplyId>, action: &str, group: &GroupName) {
        let message = format!("the token does not permit {action} group {:?}", group.as_str());
        self.say_error(reply, ErrorCode::Forbidden, &message);
    }

    /// Refuses data over the app's limit, or a client over its rate; true if refused.
    fn over_limits(&mut self, reply: Option<&ReplyId>, data: &Bytes, verb: &str) -> bool {
        let max = self.conn.settings.limits.max_message_bytes as usize;
        if data.len() > max {
            let message = format!("data is {} bytes; the app allows at most {max}", data.len());
            self.say_error(reply, ErrorCode::MessageTooLarge, &message);
            return true;
        }
        if !self.publish_allowance.take() {
            let rate = self.conn.settings.limits.client_publish_rate;
            let message = format!("{verb} faster than the app's limit of {rate} messages per second");
            self.say_error(reply, ErrorCode::RateLimited, &message);
            return true;
        }
        false
    }

    /// Signs the connection in as a user: proven by the backend's signature; it then gets
    /// what is sent to the user, and may join the user's own groups.
    pub(super) fn sign_in(&mut self, proof: JoinProof, member: JoinMember, user_data: String) {
        let (edge, conn) = (Arc::clone(&self.edge), Arc::clone(&self.conn));
        self.then(async move {
            let refuse = |code, message: &str| send(&conn, &Outbound::Error { to: None, code, message });
            if let Err((code, message)) = check_proof(&edge, &conn, &proof).await {
                return refuse(code, &message);
            }
            let user = member.user.clone();
            let named = Member { user: member.user, info: member.info.map(Arc::from) };
            if conn.member.get_or_init(|| named.clone()).user != user
                || conn.signed_in.get_or_init(|| user.clone()) != &user
            {
                return refuse(ErrorCode::Forbidden, "a connection is one user: it is signed in as someone else");
            }
            match edge.hub.attach_user(&conn, &user).await {
                Ok(()) => send(&conn, &Outbound::SignedIn(&user_data)),
                Err(err) => {
                    tracing::warn!(connection = %conn.id, error = %err, "sign-in failed");
                    refuse(ErrorCode::Unavailable, "cannot sign in right now; retry");
                }
            }
        });
    }

    /// Who is in a group the client may join, asked of every edge through the api.
    pub(super) fn presence(&mut self, reply: Option<ReplyId>, group: GroupName) {
        if !self.permissions.allows(Action::Join, &group) {
            return self.forbidden(reply.as_ref(), "asking who is in", &group);
        }
        let (edge, conn) = (Arc::clone(&self.edge), Arc::clone(&self.conn));
        self.then(async move {
            let query =
                ApiQuery::Presence(GroupPresenceQuery { hub: conn.scope.hub.to_string(), group: group.to_string() });
            let timeout = edge.hub.config.api_timeout;
            match edge.directory.request(&conn.scope.app, ApiOp::Presence, query, timeout).await {
                Ok(ApiAnswer::Presence(list)) => {
                    if let Some(to) = &reply {
                        let summary = PresenceSummary::from_entries(&list.entries);
                        send(&conn, &Outbound::Reply { to, answer: Answer::Presence(&summary) });
                    }
                }
                _ => {
                    let message = "cannot tell who is there right now; retry";
                    send(&conn, &Outbound::Error { to: reply.as_ref(), code: ErrorCode::Unavailable, message });
                }
            }
        });
    }

    /// An event (a hub method call) for the app's `event` webhook; its answer is the reply.
    pub(super) fn event(&mut self, reply: Option<ReplyId>, event: String, data: Bytes, invocation_id: Option<String>) {
        if !self.conn.webhook_events.contains(WebhookEvent::Event) {
            let message = format!("no upstream handles event '{event}': the app has no webhook for `event`");
            return self.say_error(reply.as_ref(), ErrorCode::NoUpstream, &message);
        }
        if self.over_limits(reply.as_ref(), &data, "sending") {
            return;
        }
        let (edge, conn) = (Arc::clone(&self.edge), Arc::clone(&self.conn));
        self.then(async move {
            let timeout_ms = conn.settings.webhooks.event_timeout_ms;
            let request = ClientEventRequest {
                connection_id: conn.id.to_string(),
                hub: conn.scope.hub.to_string(),
                user: conn.user.as_ref().map(ToString::to_string),
                event,
                data,
                timeout_ms,
                invocation_id,
            };
            let wait = std::time::Duration::from_millis(u64::from(timeout_ms)) + std::time::Duration::from_secs(2);
            let answer =
                edge.directory.request(&conn.scope.app, ApiOp::ClientEvent, ApiQuery::ClientEvent(request), wait).await;
            let to = reply.as_ref();
            match answer {
                Ok(ApiAnswer::EventReply(data)) => {
                    if let Some(to) = to {
                        send(&conn, &Outbound::Reply { to, answer: Answer::Data(&data) });
                    }
                }
                Ok(ApiAnswer::Error(failure)) => {
                    let code = match ApiFailureKind::try_from(failure.kind) {
                        Ok(ApiFailureKind::NoUpstream) => ErrorCode::NoUpstream,
                        Ok(ApiFailureKind::UpstreamFailed) => ErrorCode::UpstreamFailed,
                        _ => ErrorCode::Unavailable,
                    };
                    send(&conn, &Outbound::Error { to, code, message: &failure.message });
                }
                _ => {
                    let message = "cannot reach the app's upstream right now; retry";
                    send(&conn, &Outbound::Error { to, code: ErrorCode::Unavailable, message });
                }
            }
        });
    }

    /// Joins a group; with `since`, first replays what the client missed after that position.
    /// A join by `proof` needs no permission: the app's backend signed it. A join naming a
    /// member answers with the group's members.
    pub(super) fn join(&mut self, reply: Option<ReplyId>, group: GroupName, since: Option<u64>, grant: Grant) {
        let Grant { proof, member } = grant;
        if proof.is_none() && !self.permissions.allows(Action::Join, &group) {
            return self.forbidden(reply.as_ref(), "joining", &group);
        }
        let (edge, hub, conn) = (Arc::clone(&self.edge), Arc::clone(&self.hub), Arc::clone(&self.conn));
        self.then(async move {
            let to = reply.as_ref();
            if let Some(proof) = proof
                && let Err(refusal) = check_proof(&edge, &conn, &proof).await
            {
                let (code, message) = refusal;
                return send(&conn, &Outbound::Error { to, code, message: &message });
            }
            let lists_members = member.is_some();
            if let Some(member) = member {
                let named = Member { user: member.user, info: member.info.map(Arc::from) };
                if conn.member.get_or_init(|| named.clone()).user != named.user {
                    let message = "a connection is one user: it joined another group of users as someone else";
                    return send(&conn, &Outbound::Error { to, code: ErrorCode::Forbidden, message });
                }
            }
            if since.is_some() {
                if conn.groups.lock().names.contains(&group) {
                    let message = "already in this group: `since` recovers a group being joined; reconnect with `recover` instead";
                    return send(&conn, &Outbound::Error { to, code: ErrorCode::BadRequest, message });
                }
                // Before joining: every live message of the group meets the hold.
                conn.recovery.start(&group);
            }
            let joined = hub.join(&conn, &group).await;
            if joined.is_err() && since.is_some() {
                conn.recovery.cancel(&group);
            }
            match joined {
                Ok(_) => match (since, to) {
                    (Some(since), to) => {
                        let outcome = hub.replay(&conn, &group, since).await;
                        match to {
                            Some(to) => send(&conn, &Outbound::Reply { to, answer: Answer::Recovery(&outcome) }),
                            // No id to answer: still say how it went, so no loss is silent.
                            None => send(&conn, &Outbound::Recovery(&[outcome])),
                        }
                    }
                    (None, Some(to)) if lists_members => match members(&edge, &conn, &group).await {
                        Some(summary) => send(&conn, &Outbound::Reply { to, answer: Answer::Presence(&summary) }),
                        None => {
                            let message = "cannot tell who is there right now; retry";
                            send(&conn, &Outbound::Error { to: Some(to), code: ErrorCode::Unavailable, message });
                        }
                    },
                    (None, Some(to)) => send(&conn, &Outbound::Reply { to, answer: Answer::Ok }),
                    (None, None) => {}
                },
                Err(JoinError::TooManyGroups(max)) => {
                    let message = format!("the connection is already in the maximum of {max} groups");
                    send(&conn, &Outbound::Error { to, code: ErrorCode::TooManyGroups, message: &message });
                }
                Err(JoinError::Closing) => {}
                Err(JoinError::Bus(err)) => {
                    tracing::warn!(connection = %conn.id, group = %group, error = %err, "join failed");
                    let message = "cannot join right now; retry";
                    send(&conn, &Outbound::Error { to, code: ErrorCode::Unavailable, message });
                }
            }
        });
    }

    pub(super) fn leave(&mut self, reply: Option<ReplyId>, group: &GroupName) {
        if !self.permissions.allows(Action::Leave, group) {
            return self.forbidden(reply.as_ref(), "leaving", group);
        }
        self.hub.leave(&self.conn, group);
        if let Some(to) = &reply {
            self.say(&Outbound::Reply { to, answer: Answer::Ok });
        }
    }

    pub(super) fn publish(
        &mut self,
        reply: Option<ReplyId>,
        group: GroupName,
        event: EventName,
        data: Bytes,
        flags: PublishFlags,
    ) {
        let PublishFlags { no_echo, members_only } = flags;
        if !self.permissions.allows(Action::Publish, &group) {
            return self.forbidden(reply.as_ref(), "publishing to", &group);
        }
        if members_only && !self.conn.groups.lock().names.contains(&group) {
            let message = format!("the connection is not in group {:?}", group.as_str());
            return self.say_error(reply.as_ref(), ErrorCode::Forbidden, &message);
        }
        if self.over_limits(reply.as_ref(), &data, "publishing") {
            return;
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
            origin_user: (conn.settings.presence_mode(&group) == signalbox_core::settings::PresenceMode::Users)
                .then(|| conn.presence_user().map(ToString::to_string))
                .flatten(),
        };
        let subjects = &self.hub.config.subjects;
        let history = conn
            .settings
            .history
            .keeps(&group)
            .then(|| (subjects.history(&conn.scope, &group), Retention::from(&conn.settings.history)));
        let subject = subjects.group(&conn.scope, &group);
        let hub = Arc::clone(&self.hub);
        self.then(tracing::Instrument::instrument(
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
                let to = reply.as_ref();
                match (published, to) {
                    (Ok(Some(position)), Some(to)) => {
                        send(&conn, &Outbound::Reply { to, answer: Answer::Position(position) });
                    }
                    (Ok(_), Some(to)) => send(&conn, &Outbound::Reply { to, answer: Answer::Ok }),
                    (Ok(_), None) => {}
                    (Err(err), to) => {
                        let (code, message) = match err {
                            BusError::TooLarge => (ErrorCode::MessageTooLarge, "the message is too large to route"),
                            _ => (ErrorCode::Unavailable, "cannot publish right now; retry"),
                        };
                        tracing::warn!(connection = %conn.id, error = %err, "client publish failed");
                        send(&conn, &Outbound::Error { to, code, message });
                    }
                }
            },
            span,
        ));
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

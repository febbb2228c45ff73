//! Fan-out: one envelope to every local member of a target.
//!
//! The message is encoded once per wire format present among the recipients and the same
//! `Bytes` is pushed to each of them; the per-recipient work is an exclusion check and a
//! queue push. Nothing here allocates per recipient or takes a lock other than the
//! recipient's queue.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use signalbox_core::{CloseCode, clock};
use signalbox_proto::wire::{DataKind, Envelope};

use super::{Hub, Target, TargetKind};
use crate::conn::{Conn, ConnKey};
use crate::outbox::{CloseRequest, Pushed};
use crate::protocol::{Format, MessageOut, Outbound};
use crate::recoveries::Intercepted;

/// One message on its way out, with its frames encoded lazily, once per format.
pub(crate) struct Outgoing<'a> {
    envelope: &'a Envelope,
    /// The group named in the message frame, for group deliveries.
    group: Option<&'a str>,
    /// The user, for deliveries to a user.
    user: Option<&'a str>,
    /// `None` inside: the format has no frame for it (it is not sent).
    frames: [Option<Option<Bytes>>; Format::COUNT],
}

impl<'a> Outgoing<'a> {
    /// `envelope.position` is set for stored messages (it becomes the frame's `seq`).
    pub(crate) fn new(envelope: &'a Envelope, group: Option<&'a str>) -> Self {
        Self { envelope, group, user: None, frames: Default::default() }
    }

    /// A message for a user's connections.
    pub(crate) fn for_user(mut self, user: Option<&'a str>) -> Self {
        self.user = user;
        self
    }

    /// The framed bytes of this message in `format`, encoded on first use.
    pub(crate) fn frame(&mut self, format: Format) -> Option<&Bytes> {
        let (envelope, group, user) = (self.envelope, self.group, self.user);
        self.frames[format.index()]
            .get_or_insert_with(|| {
                format.encode(&Outbound::Message(MessageOut {
                    event: &envelope.event,
                    kind: DataKind::try_from(envelope.data_kind).unwrap_or(DataKind::Json),
                    data: &envelope.data,
                    group,
                    user,
                    sender: envelope.origin_user.as_deref(),
                    seq: envelope.position,
                }))
            })
            .as_ref()
    }

    /// Queues the message for one connection (or lets the connection's recovery of the group
    /// hold or drop it); returns whether it was queued.
    pub(crate) fn send_to(&mut self, conn: &Conn) -> bool {
        let Some(frame) = self.frame(conn.format()).cloned() else { return false };
        let pushed = match (self.group, self.envelope.position) {
            (Some(group), Some(position)) => {
                match conn.recovery.intercept(group, position, &frame, conn.outbox.max_bytes()) {
                    Intercepted::Deliver => conn.outbox.push_counted(frame, Some(&self.envelope.id)),
                    Intercepted::Taken => return true,
                    // More held back during the replay than the connection may queue.
                    Intercepted::Overflow => {
                        conn.outbox.close_now(CloseRequest::default_for(CloseCode::SlowConsumer));
                        Pushed::Overflowed
                    }
                }
            }
            _ => conn.outbox.push_counted(frame, Some(&self.envelope.id)),
        };
        match pushed {
            Pushed::Queued => true,
            Pushed::Overflowed => {
                metrics::counter!("signalbox_slow_consumer_closes_total").increment(1);
                tracing::info!(connection = %conn.id, "closing slow consumer");
                false
            }
            Pushed::Closing => false,
        }
    }
}

impl Hub {
    /// The local connections an envelope excludes.
    fn excluded(&self, envelope: &Envelope) -> Vec<ConnKey> {
        if envelope.exclude.is_empty() {
            return Vec::new();
        }
        let Ok(app) = signalbox_core::AppId::new(&envelope.app) else { return Vec::new() };
        let node = self.config.node.as_str();
        // Ids of other nodes are skipped without a lookup; ids that name no node (SignalR's,
        // Pusher's) are looked up.
        envelope
            .exclude
            .iter()
            .filter(|id| match id.split_once('_') {
                Some((id_node, _)) => id_node == node,
                None => true,
            })
            .filter_map(|id| self.connection(&app, id).map(|c| c.key))
            .collect()
    }

    /// Delivers an envelope to every member of `target`; returns how many got it.
    pub(crate) fn fan_out(&self, target: &Target, envelope: &Envelope) -> usize {
        let span = delivery_span(envelope);
        let _entered = span.enter();
        let started = Instant::now();
        let excluded = self.excluded(envelope);
        let user = match &target.kind {
            TargetKind::User(user) => Some(user.as_str()),
            _ => None,
        };
        let mut outgoing = Outgoing::new(envelope, target.group().map(|g| g.as_str())).for_user(user);
        let delivered = target.with_members(|members| {
            let mut delivered = 0;
            for (key, conn) in members {
                if !excluded.is_empty() && excluded.contains(key) {
                    continue;
                }
                if outgoing.send_to(conn) {
                    delivered += 1;
                }
            }
            delivered
        });
        span.record("recipients", delivered);
        record_fan_out(envelope, delivered, started);
        tracing::debug!(message_id = %envelope.id, app = %envelope.app, subject = %target.subject, recipients = delivered, "message delivered");
        delivered
    }

    /// Delivers an envelope to one local connection (a connection-targeted message).
    pub(crate) fn deliver_to(&self, conn: &Arc<Conn>, envelope: &Envelope) -> bool {
        if envelope.exclude.iter().any(|id| id == conn.id.as_str()) {
            return false;
        }
        let span = delivery_span(envelope);
        let _entered = span.enter();
        let started = Instant::now();
        let delivered = Outgoing::new(envelope, None).send_to(conn);
        span.record("recipients", usize::from(delivered));
        record_fan_out(envelope, usize::from(delivered), started);
        delivered
    }
}

/// The delivery span of a traced message: a child of the publisher's span, whose context the
/// envelope carries across the routing plane. No span at all (not even a disabled one) for
/// untraced messages, which is every message while traces are off.
fn delivery_span(envelope: &Envelope) -> tracing::Span {
    if envelope.traceparent.is_empty() || !signalbox_bus::trace::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "deliver",
        otel.kind = "consumer",
        message_id = %envelope.id,
        app = %envelope.app,
        event = %envelope.event,
        recipients = tracing::field::Empty,
    );
    signalbox_bus::trace::set_parent(&span, &envelope.traceparent, &envelope.tracestate);
    span
}

/// Metrics of one fan-out: a message out, its deliveries, how long pushing to every local
/// recipient took, and how long after its publication that happened.
fn record_fan_out(envelope: &Envelope, delivered: usize, started: Instant) {
    metrics::counter!("signalbox_messages_out_total").increment(1);
    metrics::counter!("signalbox_deliveries_total").increment(delivered as u64);
    metrics::histogram!("signalbox_fanout_duration_seconds").record(started.elapsed().as_secs_f64());
    // Across nodes this includes clock skew; a publish time in the future counts as zero.
    let lag_micros = clock::unix_micros().saturating_sub(envelope.published_at_micros);
    if envelope.published_at_micros > 0 {
        metrics::histogram!("signalbox_delivery_lag_seconds").record(lag_micros as f64 / 1e6);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every format's frame of a message at the size limit, with the longest names and the
    /// largest `seq`, fits in what [`WireFormat::max_message_frame`] promises — so the queue
    /// sized from it takes any message the app accepts, whatever the format.
    #[test]
    fn frames_of_a_message_at_the_limit_fit_the_computed_bound() {
        const MAX: usize = 64 * 1024;
        // Names of 128 characters that JSON has to escape, or that take 4 bytes each.
        let names = ["\"".repeat(128), "\u{1F600}".repeat(128)];
        // A string, the densest float array (3 characters become a 9-byte MessagePack
        // float), a single float, and binary data (base64 in the native frame).
        let floats = format!("[{}]", vec!["0.5"; (MAX - 2) / 4].join(","));
        let payloads = [
            (DataKind::Json, format!("\"{}\"", "x".repeat(MAX - 2)).into_bytes()),
            (DataKind::Json, floats.into_bytes()),
            (DataKind::Json, b"1e5".to_vec()),
            (DataKind::Binary, vec![0xff; MAX]),
        ];
        for name in &names {
            for (kind, data) in &payloads {
                assert!(data.len() <= MAX);
                let envelope = Envelope {
                    event: name.clone(),
                    data: Bytes::from(data.clone()),
                    data_kind: *kind as i32,
                    position: Some(u64::MAX),
                    ..Envelope::default()
                };
                let mut outgoing = Outgoing::new(&envelope, Some(name));
                for format in Format::all() {
                    let frame = outgoing.frame(format).expect("every protocol carries messages").len();
                    let bound = format.max_message_frame(MAX);
                    assert!(frame <= bound, "{format:?} {kind:?}: a {frame}-byte frame over the {bound}-byte bound");
                    let capacity = crate::outbox::capacity_for(0, MAX, format);
                    assert!(2 * frame <= capacity, "{format:?}: the queue takes two");
                }
            }
        }
    }
}

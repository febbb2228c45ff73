//! A connection's recovery of a group: everything stored after the position it last saw,
//! replayed in order, then the live messages held back meanwhile — none lost, none twice.
//!
//! The caller marks the group as recovering *before* the connection joins it, so every live
//! message of the group meets the hold; the replay reads the journal up to now; the held
//! messages newer than the replay follow. Whether the client missed anything is decided by
//! the journal's continuity rule: the first message stored after the client's position must
//! name that position (or an earlier one) as its predecessor.

use std::sync::Arc;
use std::time::Duration;

use signalbox_bus::journal::{Continuity, continuity};
use signalbox_core::{GroupName, RecoveryFailure};
use signalbox_proto::native::GroupRecovery;
use signalbox_proto::wire::{self, Body};

use super::{Hub, Outgoing};
use crate::conn::Conn;
use crate::outbox::Pushed;

/// Messages read from the journal at a time.
const PAGE: usize = 256;

impl Hub {
    /// Replays `group` to `conn` after position `after` and releases the held live messages.
    /// `conn.recovery.start(group)` must have been called before the connection joined.
    pub(crate) async fn replay(&self, conn: &Arc<Conn>, group: &GroupName, after: u64) -> GroupRecovery {
        let failed = |reason| GroupRecovery::failed(group.as_str(), reason);
        if !conn.settings.history.keeps(group) {
            conn.recovery.cancel(group);
            return failed(RecoveryFailure::NoHistory);
        }
        let subject = self.config.subjects.history(&conn.scope, group);
        let mut last = after;
        let mut found = None;
        let mut replayed = 0_u64;
        loop {
            let stored = match self.journal.read(&conn.scope.app, &subject, last, PAGE).await {
                Ok(stored) => stored,
                Err(err) => {
                    tracing::warn!(connection = %conn.id, group = %group, error = %err, "cannot read history to recover");
                    conn.finish_recovery(group, last);
                    return failed(RecoveryFailure::Unavailable);
                }
            };
            if found.is_none() {
                let bounds = match self.journal.bounds(&conn.scope.app).await {
                    Ok(bounds) => bounds,
                    Err(err) => {
                        tracing::warn!(connection = %conn.id, group = %group, error = %err, "cannot read history bounds to recover");
                        conn.finish_recovery(group, last);
                        return failed(RecoveryFailure::Unavailable);
                    }
                };
                found = Some(continuity(after, stored.first(), bounds));
            }
            let full = stored.len() == PAGE;
            for stored in stored {
                // Backpressure: replay only as fast as the client reads.
                while conn.outbox.is_backed_up() {
                    if conn.outbox.is_closing() {
                        conn.finish_recovery(group, last);
                        return failed(RecoveryFailure::Closed);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if let Ok(Body::Message(mut envelope)) = wire::decode(stored.payload) {
                    envelope.position = Some(stored.position.seq);
                    let frame = Outgoing::new(&envelope, Some(group.as_str())).frame(conn.format()).cloned();
                    if frame.is_some_and(|frame| conn.outbox.push_counted(frame, Some(&envelope.id)) != Pushed::Queued)
                    {
                        conn.finish_recovery(group, last);
                        return failed(RecoveryFailure::Closed);
                    }
                    last = stored.position.seq;
                    replayed += 1;
                }
            }
            if !full {
                break;
            }
        }
        conn.finish_recovery(group, last);
        let outcome = match found {
            Some(Continuity::Complete) | None => GroupRecovery::recovered(group.as_str()),
            Some(Continuity::Expired) => failed(RecoveryFailure::Expired),
            Some(Continuity::Reset) => failed(RecoveryFailure::Reset),
        };
        let label = outcome.reason.map_or("recovered", RecoveryFailure::as_str);
        metrics::counter!("signalbox_history_replays_total", "recovered" => if outcome.recovered { "true" } else { "false" }, "reason" => label)
            .increment(1);
        metrics::counter!("signalbox_history_replayed_messages_total").increment(replayed);
        tracing::info!(connection = %conn.id, group = %group, after, last, replayed, outcome = label, "history replayed");
        outcome
    }
}

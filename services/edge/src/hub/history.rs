//! Live delivery of stored messages, in position order and without gaps.
//!
//! Every stored message arrives with its position and its group's previous position. A group
//! target remembers the last position it delivered: a message whose predecessor is that
//! position goes straight out; one whose predecessor is later means messages were missed (a
//! NATS reconnect, a slow-subscriber drop) — then the missing ones are read from the journal and
//! delivered first, while newer live ones are held, so members see every message once, in order.
//! After the bus reconnects, every group target checks the journal the same way.

use std::sync::Arc;
use std::time::Duration;

use signalbox_bus::Position;
use signalbox_proto::wire::{self, Body, Envelope};

use super::{Hub, Target};

/// Messages read from the journal at a time.
const PAGE: usize = 256;
/// Live messages held per group while a repair runs; beyond this the repair is abandoned and
/// members recover on their own (the gap is still announced by positions).
const MAX_HELD: usize = 100_000;
/// Attempts to read the journal before a repair gives up.
const READ_ATTEMPTS: u32 = 20;

impl Hub {
    /// Delivers a stored message to a group's members, in position order.
    pub(crate) fn deliver_stored(self: &Arc<Self>, target: &Arc<Target>, position: Position, mut envelope: Envelope) {
        envelope.position = Some(position.seq);
        // Held across the fan-out: a repair starting meanwhile must not overtake this message.
        let mut cursor = target.history.lock();
        if let Some(held) = cursor.held.as_mut() {
            if held.len() < MAX_HELD {
                held.push((position, envelope));
            }
            return;
        }
        match cursor.last {
            Some(last) if position.seq <= last => return,
            Some(last) if position.previous > last => {
                metrics::counter!("signalbox_history_gaps_total").increment(1);
                tracing::info!(subject = %target.subject, last, previous = position.previous, "repairing a gap in live delivery");
                cursor.held = Some(vec![(position, envelope)]);
                drop(cursor);
                tokio::spawn(Arc::clone(self).repair(Arc::clone(target), last));
                return;
            }
            _ => {}
        }
        cursor.last = Some(position.seq);
        self.fan_out(target, &envelope);
    }

    /// After a bus reconnect: every group with stored messages delivered here catches up from
    /// the journal.
    pub(crate) fn resync_history(self: &Arc<Self>) {
        for target in self.targets() {
            let mut cursor = target.history.lock();
            let (Some(last), None) = (cursor.last, cursor.held.as_ref()) else { continue };
            cursor.held = Some(Vec::new());
            drop(cursor);
            tokio::spawn(Arc::clone(self).repair(target, last));
        }
    }

    /// Reads and delivers what came after `after`, then what was held meanwhile.
    async fn repair(self: Arc<Self>, target: Arc<Target>, mut after: u64) {
        let Some(group) = target.group() else { return };
        let subject = self.config.subjects.history(&target.scope, group);
        let mut failures = 0;
        loop {
            // Everything stored after `after`, up to now.
            loop {
                match self.journal.read(&target.scope.app, &subject, after, PAGE).await {
                    Ok(stored) => {
                        failures = 0;
                        let full = stored.len() == PAGE;
                        let _order = target.history.lock();
                        for stored in stored {
                            if let (true, Ok(Body::Message(mut envelope))) =
                                (stored.position.seq > after, wire::decode(stored.payload))
                            {
                                envelope.position = Some(stored.position.seq);
                                self.fan_out(&target, &envelope);
                                after = stored.position.seq;
                            }
                        }
                        if !full {
                            break;
                        }
                    }
                    Err(err) => {
                        failures += 1;
                        tracing::warn!(subject = %subject, error = %err, "cannot read history to repair a gap");
                        if failures >= READ_ATTEMPTS {
                            // Give up: deliver what is held as it is; members' own positions
                            // still let them recover the rest.
                            let mut cursor = target.history.lock();
                            let held = cursor.held.take().unwrap_or_default();
                            cursor.last = held.last().map(|(p, _)| p.seq).or(Some(after));
                            for (_, envelope) in held {
                                self.fan_out(&target, &envelope);
                            }
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100 * u64::from(failures))).await;
                    }
                }
            }
            // Then what arrived live meanwhile, in order; a new gap among it reads again.
            let mut cursor = target.history.lock();
            let held = cursor.held.take().unwrap_or_default();
            let mut remaining = Vec::new();
            for (position, envelope) in held {
                if !remaining.is_empty() || position.previous > after {
                    // A new gap: everything from here waits for the next read.
                    remaining.push((position, envelope));
                } else if position.seq > after {
                    self.fan_out(&target, &envelope);
                    after = position.seq;
                }
            }
            cursor.last = Some(after);
            if remaining.is_empty() {
                return;
            }
            cursor.held = Some(remaining);
        }
    }
}

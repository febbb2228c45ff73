//! One task per node does what would otherwise take a timer per connection: it pings every
//! connection once per heartbeat interval (spread evenly over the interval), closes the ones
//! from which nothing arrived for two intervals, and retires lingering subscriptions. It also
//! notices when the node comes back from a long routing-plane outage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use signalbox_core::CloseCode;
use signalbox_proto::wire::NODE_LOST_AFTER;

use crate::EdgeState;
use crate::conn::Conn;
use crate::outbox::{CloseRequest, Pushed};
use crate::protocol::{Outbound, Transport};
use crate::ws::codec;

pub(crate) async fn run(edge: Arc<EdgeState>) {
    let heartbeat = edge.hub.config.heartbeat_interval;
    // Several ticks per interval so pings are spread out, but never faster than 20 per second.
    let tick = (heartbeat / 8).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let buckets = u64::try_from((heartbeat.as_millis() / tick.as_millis()).max(1)).unwrap_or(1);
    let idle_secs = u32::try_from(edge.hub.config.idle_timeout().as_secs().max(1)).unwrap_or(u32::MAX);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round: u64 = 0;
    let mut epoch = edge.hub.bus.epoch();
    let mut cut_off_since: Option<Instant> = None;
    loop {
        interval.tick().await;
        if edge.hub.bus.is_connected() {
            if cut_off_since.take().is_some_and(|since| since.elapsed() >= NODE_LOST_AFTER) {
                close_after_long_outage(&edge);
            }
        } else {
            cut_off_since.get_or_insert_with(Instant::now);
        }
        // The bus reconnected: stored messages published meanwhile were not delivered live.
        let now_epoch = edge.hub.bus.epoch();
        if now_epoch != epoch {
            epoch = now_epoch;
            edge.hub.resync_history();
        }
        round = round.wrapping_add(1);
        let now = edge.hub.now_secs();
        let bucket = round % buckets;
        let (mut pinged, mut timed_out) = (0u64, 0u64);
        edge.hub.for_each_connection(|conn| {
            let last_seen = conn.last_seen.load(std::sync::atomic::Ordering::Relaxed);
            if now.saturating_sub(last_seen) >= idle_secs {
                if !conn.outbox.is_closing() {
                    conn.outbox.close_now(CloseRequest::default_for(CloseCode::HeartbeatTimeout));
                    timed_out += 1;
                }
            } else if keep_alive(conn, heartbeat, tick, round, bucket == conn.key % buckets) {
                pinged += 1;
            }
            // A resumable connection acknowledges what its client sent, about once a tick.
            if conn.resumable
                && let Some(through) = conn.outbox.ack_due()
                && let Some(frame) = conn.format().encode(&Outbound::Ack(through))
            {
                conn.outbox.push(frame);
            }
        });
        if timed_out > 0 {
            metrics::counter!("signalbox_heartbeat_timeouts_total").increment(timed_out);
            tracing::debug!(timed_out, "closed connections that stopped answering");
        }
        metrics::counter!("signalbox_heartbeat_pings_total").increment(pinged);
        edge.hub.retire_idle_targets();
        edge.addresses.purge_ended(&edge.hub);
        edge.parked.expire(&edge);
    }
}

/// The cluster reported this node's connections disconnected while it was cut off: they
/// reconnect (elsewhere, or here) and recover, so what webhooks and presence were told holds.
fn close_after_long_outage(edge: &EdgeState) {
    let mut closed = 0;
    edge.hub.for_each_connection(|conn| {
        conn.close(CloseRequest::new(CloseCode::Reconnect, "this node was cut off from the cluster; reconnect"));
        closed += 1;
    });
    tracing::warn!(closed, "back after a long routing-plane outage: closing every connection (4200)");
}

/// Sends a connection its keep-alive when one is due: the protocol's own, every half
/// heartbeat and at least as often as the protocol needs, once its opening is answered; else
/// the transport's (a WebSocket ping) once per heartbeat, in the connection's bucket.
fn keep_alive(conn: &Conn, heartbeat: Duration, tick: Duration, round: u64, in_bucket: bool) -> bool {
    let format = conn.format();
    match format.info().keepalive {
        Some(at_least_every) => {
            let period = (heartbeat / 2).min(at_least_every);
            let step = u64::try_from((period.as_millis() / tick.as_millis()).max(1)).unwrap_or(1);
            if !conn.key.wrapping_add(round).is_multiple_of(step) || !conn.is_open() {
                return false;
            }
            format.encode(&Outbound::KeepAlive).is_some_and(|frame| conn.outbox.push(frame) == Pushed::Queued)
        }
        None if in_bucket && format.transport == Transport::WebSocket => {
            conn.outbox.push(codec::PING.clone());
            true
        }
        None => false,
    }
}

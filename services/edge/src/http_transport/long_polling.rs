//! Long polling: a poll takes what is queued, or waits up to [`POLL_TIMEOUT`] for something;
//! a newer poll ends the waiting one; a client that stops polling is gone.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use signalbox_core::CloseCode;

use super::{HttpConnection, concat};
use crate::EdgeState;
use crate::outbox::Taken;
use crate::protocol::{Outbound, Transport};

/// How long a long poll waits for something to send.
pub(crate) const POLL_TIMEOUT: Duration = Duration::from_secs(20);
/// A long-polling connection with no poll for this long is gone.
const POLL_ABANDONED_SECS: u32 = 30;
/// How often long-polling connections are checked for abandonment.
const REAP_EVERY: Duration = Duration::from_secs(5);

/// What a poll got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Polled {
    /// What was queued (empty when the poll timed out).
    Frames(Bytes),
    /// The connection ended, or a newer poll took over: nothing more for this one.
    Ended,
    /// The connection is not on long polling.
    WrongTransport,
}

/// Watches a long-polling connection until it ends: one whose client stopped polling is
/// ended, as is one closing that no poll comes to collect the goodbye of.
pub(crate) fn watch(edge: Arc<EdgeState>, http: Arc<HttpConnection>) {
    tokio::spawn(reap(edge, http));
}

async fn reap(edge: Arc<EdgeState>, http: Arc<HttpConnection>) {
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        if http.is_finished() {
            return;
        }
        if http.polling.load(Ordering::Acquire) > 0 {
            continue;
        }
        let idle = edge.hub.now_secs().saturating_sub(http.last_poll.load(Ordering::Relaxed));
        let closing = http.conn.outbox.close_request();
        if let Some(request) = closing.filter(|_| idle >= REAP_EVERY.as_secs() as u32) {
            http.finish(&edge, request.code, &request.reason);
        } else if idle >= POLL_ABANDONED_SECS {
            http.finish(&edge, CloseCode::HeartbeatTimeout, "the client stopped polling");
        }
    }
}

/// One long poll.
pub(crate) async fn poll(edge: &EdgeState, http: &HttpConnection) -> Polled {
    if http.conn.format().transport != Transport::LongPolling {
        return Polled::WrongTransport;
    }
    let mut generation = 0;
    http.polls.send_modify(|n| {
        *n += 1;
        generation = *n;
    });
    let mut newer = http.polls.subscribe();
    http.polling.fetch_add(1, Ordering::AcqRel);
    http.touch(edge);
    let deadline = tokio::time::sleep(POLL_TIMEOUT);
    tokio::pin!(deadline);
    let polled = loop {
        if http.is_finished() {
            break Polled::Ended;
        }
        let taken = poll_fn(|cx| {
            let mut frames = VecDeque::new();
            http.conn.outbox.poll_take(cx, &mut frames).map(|taken| (taken, frames))
        });
        tokio::select! {
            (taken, frames) = taken => match taken {
                Taken::Frames => break Polled::Frames(concat(frames)),
                // Ended by the client: nothing more to say.
                Taken::Close(_) if http.is_finished() => break Polled::Ended,
                // The protocol's goodbye first; the poll after it ends the connection.
                Taken::Close(request) => {
                    if !http.close_sent.swap(true, Ordering::AcqRel) {
                        let goodbye = http.conn.format().encode(&Outbound::Close(&request)).unwrap_or_default();
                        break Polled::Frames(goodbye);
                    }
                    http.finish(edge, request.code, &request.reason);
                    break Polled::Ended;
                }
            },
            changed = newer.changed() => {
                if changed.is_err() || *newer.borrow_and_update() != generation {
                    break Polled::Ended;
                }
            }
            () = &mut deadline => break Polled::Frames(Bytes::new()),
        }
    };
    http.polling.fetch_sub(1, Ordering::AcqRel);
    http.touch(edge);
    polled
}

/// The client ends its connection (SignalR's `DELETE`); false if it is not on long polling.
pub(crate) fn end(edge: &EdgeState, http: &HttpConnection) -> bool {
    if http.conn.format().transport != Transport::LongPolling {
        return false;
    }
    http.finish(edge, CloseCode::Normal, "the client ended the connection");
    true
}

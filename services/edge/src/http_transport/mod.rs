//! The HTTP transports, for any protocol whose messages delimit themselves: long polling and
//! Server-Sent Events. A connection on one of them is an [`HttpConnection`]: its session
//! reads what the client sends in request bodies, and what the server sends waits in its
//! outbox until a poll takes it or the event stream writes it.
//!
//! What a protocol's entry does around them — which URL, which token, which status text a
//! client library expects — stays with the protocol (`protocol::signalr::transport`).

pub(crate) mod event_stream;
pub(crate) mod long_polling;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use signalbox_core::{AppId, CloseCode, ConnectionId};

use crate::EdgeState;
use crate::admission;
use crate::conn::Conn;
use crate::outbox::CloseRequest;
use crate::session::Session;

/// The connections of this node on an HTTP transport, by app and id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    connections: Mutex<HashMap<(AppId, ConnectionId), Arc<HttpConnection>>>,
}

impl Registry {
    pub(crate) fn get(&self, app: &AppId, id: &ConnectionId) -> Option<Arc<HttpConnection>> {
        self.connections.lock().get(&(app.clone(), id.clone())).cloned()
    }

    /// Forgets a connection's transport once it has ended.
    fn forget(&self, conn: &Conn) {
        let mut connections = self.connections.lock();
        let key = (conn.scope.app.clone(), conn.id.clone());
        if connections.get(&key).is_some_and(|h| h.conn.key == conn.key) {
            connections.remove(&key);
        }
    }
}

/// A connection on an HTTP transport.
#[derive(Debug)]
pub(crate) struct HttpConnection {
    pub(crate) conn: Arc<Conn>,
    /// The user of the token that opened it (the `connect` webhook may have changed the
    /// connection's user): every later request must carry a token of this user.
    token_user: Option<String>,
    session: tokio::sync::Mutex<Session>,
    /// Bumped by every poll: a waiting poll that sees a newer one ends.
    polls: tokio::sync::watch::Sender<u64>,
    /// Polls in progress, and when the last one started or ended (hub seconds).
    polling: AtomicU32,
    last_poll: AtomicU32,
    /// The protocol's goodbye went out: the next poll ends the connection.
    close_sent: AtomicBool,
    finished: AtomicBool,
}

impl HttpConnection {
    /// Registers a started connection's transport; `token_user` is the user of the token
    /// that opened it.
    pub(crate) fn register(edge: &EdgeState, session: Session, token_user: Option<String>) -> Arc<Self> {
        let conn = Arc::clone(session.conn());
        let http = Arc::new(Self {
            conn,
            token_user,
            session: tokio::sync::Mutex::new(session),
            polls: tokio::sync::watch::Sender::new(0),
            polling: AtomicU32::new(0),
            last_poll: AtomicU32::new(edge.hub.now_secs()),
            close_sent: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        });
        let key = (http.conn.scope.app.clone(), http.conn.id.clone());
        edge.http_connections.connections.lock().insert(key, Arc::clone(&http));
        http
    }

    /// Whether a request's token is of the user whose token opened the connection.
    pub(crate) fn same_user(&self, user: Option<&str>) -> bool {
        self.token_user.as_deref() == user
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    fn touch(&self, edge: &EdgeState) {
        let now = edge.hub.now_secs();
        self.last_poll.store(now, Ordering::Relaxed);
        self.conn.touch(now);
    }

    /// Ends the connection once: the `disconnected` event, then it leaves the hub.
    pub(crate) fn finish(&self, edge: &EdgeState, code: CloseCode, reason: &str) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        self.conn.close(CloseRequest::new(code, reason.to_owned()));
        self.polls.send_modify(|n| *n += 1);
        edge.http_connections.forget(&self.conn);
        admission::finish(edge, &self.conn, code.code(), reason);
        metrics::counter!("signalbox_disconnects_total", "code" => code.code().to_string()).increment(1);
        tracing::debug!(connection = %self.conn.id, code = code.code(), reason, "HTTP-transport connection closed");
    }

    /// Hands what a request body carried to the session, and waits for the work it makes.
    pub(crate) async fn receive(&self, edge: &EdgeState, body: &[u8]) -> Received {
        if self.is_finished() || self.conn.outbox.is_closing() {
            return Received::Gone;
        }
        let Ok(mut session) = self.session.try_lock() else { return Received::Busy };
        self.conn.touch(edge.hub.now_secs());
        if let Some(work) = session.on_data(body) {
            work.await;
        }
        Received::Taken
    }
}

/// What became of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    Taken,
    /// Another request's body is being read: one at a time, in order.
    Busy,
    /// The connection has ended (or is ending).
    Gone,
}

/// Frames queued one after another, as one body.
fn concat(frames: VecDeque<Bytes>) -> Bytes {
    if frames.len() == 1 {
        return frames.into_iter().next().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
    for frame in frames {
        out.put_slice(&frame);
    }
    out.freeze()
}

//! Parked connections: resumable connections that no socket holds, waiting for their client to
//! resume them on a new one (SignalR's stateful reconnect). A parked connection stays in the
//! hub — it keeps its groups, and what reaches it is retained — for [`RESUME_WINDOW`]; then,
//! or when it is closed meanwhile (an idle timeout, a full retention, a backend close), it ends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::EdgeState;
use crate::conn::{Conn, ConnKey};
use crate::session::Session;

/// How long a dropped connection may be resumed (ASP.NET Core's `DisconnectTimeout`).
pub(crate) const RESUME_WINDOW: Duration = Duration::from_secs(15);

#[derive(Debug, Default)]
pub(crate) struct Parked {
    sessions: Mutex<HashMap<ConnKey, (Session, Instant)>>,
}

impl Parked {
    /// Parks a connection whose socket let go of it (its outbox is parked already).
    pub(crate) fn park(&self, session: Session) {
        let key = session.conn().key;
        self.sessions.lock().insert(key, (session, Instant::now()));
    }

    /// Takes a parked connection's session, for a new socket.
    pub(crate) fn take(&self, conn: &Conn) -> Option<Session> {
        self.sessions.lock().remove(&conn.key).map(|(session, _)| session)
    }

    /// Takes the session once the connection's socket (asked to, see
    /// [`crate::outbox::Outbox::request_park`]) has let go of it; `None` after `wait`.
    pub(crate) async fn take_when_parked(&self, conn: &Conn, wait: Duration) -> Option<Session> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(session) = self.take(conn) {
                return Some(session);
            }
            if Instant::now() >= deadline || conn.outbox.is_closing() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Ends the connections not resumed in time, or closed while parked (the sweeper calls
    /// this).
    pub(crate) fn expire(&self, edge: &EdgeState) {
        let expired: Vec<Session> = {
            let mut sessions = self.sessions.lock();
            let keys: Vec<ConnKey> = sessions
                .iter()
                .filter(|(_, (session, since))| since.elapsed() >= RESUME_WINDOW || session.conn().outbox.is_closing())
                .map(|(key, _)| *key)
                .collect();
            keys.into_iter().filter_map(|key| sessions.remove(&key)).map(|(session, _)| session).collect()
        };
        for session in expired {
            end(edge, &session, "the connection dropped and was not resumed in time");
        }
    }

    /// Ends every parked connection (the node is going away).
    pub(crate) fn end_all(&self, edge: &EdgeState) {
        let all: Vec<Session> = self.sessions.lock().drain().map(|(_, (session, _))| session).collect();
        for session in all {
            end(edge, &session, "the node went away before the connection was resumed");
        }
    }
}

fn end(edge: &EdgeState, session: &Session, reason: &str) {
    let conn = session.conn();
    let (code, reason) = match conn.outbox.close_request() {
        Some(request) => (request.code.code(), request.reason.into_owned()),
        None => (1006, reason.to_owned()),
    };
    tracing::info!(connection = %conn.id, app = %conn.scope.app, code, reason, "parked connection ended");
    metrics::counter!("signalbox_disconnects_total", "code" => code.to_string()).increment(1);
    crate::admission::finish(edge, conn, code, &reason);
}

//! A connection's session: what its client may do, the same for every protocol. The
//! protocol decodes what arrives into [`Command`]s; the session checks and executes them and
//! answers in the protocol's own encoding.
//!
//! Checks that need no I/O (permissions, limits, rate) are made at once; joins, publishes and
//! upstream calls become futures. Answers go out in the order of the requests: once one
//! request of a batch waits for I/O, the answers after it wait too. The transport runs the
//! returned future before reading on, so a client's requests take effect, and are answered,
//! in the order it sent them.

mod requests;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use signalbox_bus::BoxFuture;
use signalbox_core::{CloseCode, ErrorCode, GroupName, Permissions};
use signalbox_proto::native::ReplyId;

use crate::EdgeState;
use crate::conn::Conn;
use crate::hub::Hub;
use crate::outbox::CloseRequest;
use crate::protocol::{Command, Encoding, Input, Outbound, Violation};
pub(crate) use requests::TokenBucket;
use requests::{Grant, PublishFlags};

/// Unreadable requests in a row after which the connection is closed (4002).
const MAX_CONSECUTIVE_ERRORS: u32 = 50;

/// Bytes a client message may have beyond the app's message limit (what surrounds the data).
pub(crate) const MESSAGE_OVERHEAD: usize = 4 * 1024;

pub(crate) struct Session {
    edge: Arc<EdgeState>,
    hub: Arc<Hub>,
    conn: Arc<Conn>,
    permissions: Permissions,
    publish_allowance: TokenBucket,
    consecutive_errors: u32,
    input: Input,
    /// Groups to join once the client's opening is answered (protocols with an opening).
    groups: Vec<GroupName>,
    /// A resumable connection's opening is answered: what it is sent is held back until the
    /// client next speaks, once it counts what it receives (see `open`).
    release_when_spoken: bool,
    /// Nothing more is read: the connection is closing on a violation.
    failed: bool,
    /// This batch's work that waits for I/O, and every answer after it, in order.
    later: Vec<BoxFuture<'static, ()>>,
}

impl Session {
    /// `groups`: for a protocol with an opening, the groups to join once it is answered.
    pub(crate) fn new(edge: Arc<EdgeState>, conn: Arc<Conn>, permissions: Permissions, groups: Vec<GroupName>) -> Self {
        let limits = &conn.settings.limits;
        let publish_allowance = TokenBucket::new(limits.client_publish_rate, limits.client_publish_burst);
        let mut input = Input::new(conn.format().info(), limits.max_message_bytes as usize + MESSAGE_OVERHEAD);
        input.connection = Some(conn.id.clone());
        let hub = Arc::clone(&edge.hub);
        Self {
            edge,
            hub,
            conn,
            permissions,
            publish_allowance,
            consecutive_errors: 0,
            input,
            groups,
            release_when_spoken: false,
            failed: false,
            later: Vec::new(),
        }
    }

    /// A connection taken over from another edge, its client's numbering where it was.
    pub(crate) fn resumed(edge: Arc<EdgeState>, conn: Arc<Conn>, permissions: Permissions, input: Input) -> Self {
        let mut session = Self::new(edge, conn, permissions, Vec::new());
        session.input = Input { connection: session.input.connection.take(), ..input };
        session
    }

    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    pub(crate) fn permissions(&self) -> &Permissions {
        &self.permissions
    }

    /// The numbering of the client's counted messages, if it numbers them.
    pub(crate) fn sequence(&self) -> Option<crate::protocol::Sequencing> {
        self.input.sequence
    }

    /// Takes what the transport received; returns the work that waits for I/O, in order.
    pub(crate) fn on_data(&mut self, data: &[u8]) -> Option<BoxFuture<'static, ()>> {
        if self.failed {
            return None;
        }
        if std::mem::take(&mut self.release_when_spoken) {
            self.conn.outbox.release();
        }
        let mut commands = Vec::new();
        let decoded = self.conn.format().protocol().decode(&mut self.input, data, &mut commands);
        for command in commands {
            if self.failed {
                break;
            }
            self.execute(command);
        }
        if let Some(sequence) = &self.input.sequence {
            self.conn.outbox.received(sequence.latest);
        }
        if let Err(violation) = decoded {
            self.fail(violation);
        }
        match std::mem::take(&mut self.later) {
            later if later.is_empty() => None,
            later => Some(Box::pin(async move {
                for step in later {
                    step.await;
                }
            })),
        }
    }

    fn execute(&mut self, command: Command) {
        if !matches!(command, Command::Invalid { .. }) {
            self.consecutive_errors = 0;
        }
        match command {
            Command::Open { encoding, sequenced } => self.open(encoding, sequenced),
            Command::Ack { through } => self.conn.outbox.acknowledge(through),
            Command::SignIn { proof, member, user_data } => self.sign_in(proof, member, user_data),
            Command::Join { reply, group, since, proof, member } => {
                self.join(reply, group, since, Grant { proof, member })
            }
            Command::Leave { reply, group } => self.leave(reply, &group),
            Command::Publish { reply, group, event, data, no_echo, members_only } => {
                self.publish(reply, group, event, data, PublishFlags { no_echo, members_only });
            }
            Command::Ping { reply } => self.say(&Outbound::Pong(reply.as_ref())),
            Command::Presence { reply, group } => self.presence(reply, group),
            Command::Event { reply, event, data, invocation_id } => self.event(reply, event, data, invocation_id),
            Command::Invalid { reply, code, message } => {
                self.say(&Outbound::Error { to: reply.as_ref(), code, message: &message });
                self.consecutive_errors += 1;
                if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                    self.conn.close(CloseRequest::default_for(CloseCode::TooManyErrors));
                }
            }
            Command::Unsupported { reply, message } => {
                self.say(&Outbound::Error { to: reply.as_ref(), code: ErrorCode::BadRequest, message: &message });
            }
            Command::Close => self.conn.close(CloseRequest::new(CloseCode::Normal, "the client closed the connection")),
        }
    }

    /// The client's opening is accepted: answered in the encoding it was read in, then the
    /// connection switches to the one it chose and joins its targets and groups.
    ///
    /// A resumable connection whose client numbers what it receives (`sequenced`) retains
    /// what it sends from now on, and holds it back until the client next speaks: a client
    /// starts counting only once it has read the answer (`@microsoft/signalr` creates its
    /// buffer then, and pings), so a message sent with the answer would be delivered
    /// uncounted and the numbering on both sides would disagree after a resume.
    fn open(&mut self, encoding: Encoding, sequenced: bool) {
        let current = self.conn.format();
        let Some(format) = current.with_encoding(encoding) else {
            let message = format!(
                "handshake refused: {} cannot be carried by {}",
                encoding.protocol().info().name,
                current.transport.name()
            );
            self.say(&Outbound::OpenRefused(&message));
            return self.fail(Violation::new(CloseCode::ProtocolError, message));
        };
        // Told once the connection is in its targets: a message sent the moment the client
        // knows it is open must reach it.
        self.conn.outbox.hold_writes();
        self.say(&Outbound::Opened);
        self.conn.set_format(format);
        if sequenced && self.conn.resumable {
            self.conn.outbox.retain();
            self.release_when_spoken = true;
        }
        self.attach();
    }

    /// Joins the connection's targets and groups, then it is open.
    fn attach(&mut self) {
        let (edge, conn, groups) = (Arc::clone(&self.edge), Arc::clone(&self.conn), std::mem::take(&mut self.groups));
        self.later.push(Box::pin(async move {
            match edge.hub.attach(&conn, &groups).await {
                Ok(()) => {
                    conn.open.store(true, Ordering::Release);
                    metrics::counter!("signalbox_connects_total").increment(1);
                    edge.events.connected(&conn);
                }
                Err(err) => {
                    tracing::warn!(connection = %conn.id, error = %err, "cannot attach a connection after its opening");
                    conn.outbox.close_now(err.close_request());
                }
            }
            conn.outbox.release_writes();
        }));
    }

    /// Ends the connection on input it cannot take; an opening not yet read is refused in
    /// the protocol's words first.
    fn fail(&mut self, violation: Violation) {
        tracing::debug!(connection = %self.conn.id, error = %violation, "closing a connection on a protocol violation");
        if !self.input.opened {
            self.say(&Outbound::OpenRefused(&violation.message));
        }
        self.failed = true;
        self.input = Input::default();
        self.conn.close(CloseRequest::new(violation.code, violation.message));
    }

    /// Sends now, or after the work of this batch that waits for I/O.
    fn say(&mut self, outbound: &Outbound<'_>) {
        let Some(frame) = self.conn.format().encode(outbound) else { return };
        let counted = outbound.is_counted();
        if self.later.is_empty() {
            push(&self.conn, frame, counted);
        } else {
            let conn = Arc::clone(&self.conn);
            self.later.push(Box::pin(async move {
                push(&conn, frame, counted);
            }));
        }
    }

    fn say_error(&mut self, reply: Option<&ReplyId>, code: ErrorCode, message: &str) {
        self.say(&Outbound::Error { to: reply, code, message });
    }

    /// Runs after the rest of this batch's work.
    fn then(&mut self, work: impl Future<Output = ()> + Send + 'static) {
        self.later.push(Box::pin(work));
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("conn", &self.conn.id)
            .field("format", &self.conn.format())
            .finish_non_exhaustive()
    }
}

/// Sends an answer from work that ran after I/O.
pub(crate) fn send(conn: &Conn, outbound: &Outbound<'_>) {
    if let Some(frame) = conn.format().encode(outbound) {
        push(conn, frame, outbound.is_counted());
    }
}

fn push(conn: &Conn, frame: bytes::Bytes, counted: bool) {
    if counted {
        conn.outbox.push_counted(frame, None);
    } else {
        conn.outbox.push(frame);
    }
}

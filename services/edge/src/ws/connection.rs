//! One WebSocket connection: a single task that owns the socket.
//!
//! Each wake-up does, in order: write everything queued (one vectored write for a whole
//! backlog), run the client's request in flight if there is one, handle parsed frames, and
//! read more. Reads go through a buffer on the stack of the poll, so an idle connection holds
//! no read buffer; requests are handled one at a time, in order, and reading pauses while
//! one is in flight (backpressure onto the client's TCP window).

use std::collections::VecDeque;
use std::future::{Future as _, poll_fn};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use signalbox_bus::BoxFuture;
use signalbox_core::CloseCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::codec::{self, FrameError, Inbound, Reader};
use crate::EdgeState;
use crate::conn::Conn;
use crate::outbox::{CloseRequest, Taken};
use crate::protocol::Outbound;
use crate::session::Session;

/// The stream under a connection: a TCP socket (or, where hyper keeps it, an upgraded stream).
pub(crate) trait Socket: AsyncRead + AsyncWrite + Unpin + Send {
    /// Makes dropping the stream reset the connection, so that what the kernel still holds
    /// for a peer that stopped reading (megabytes of send buffer) is freed at once rather
    /// than kept by an orphaned socket for minutes.
    fn reset_on_drop(&self);
}

impl Socket for TcpStream {
    fn reset_on_drop(&self) {
        if let Err(err) = self.set_zero_linger() {
            tracing::debug!(error = %err, "cannot set SO_LINGER");
        }
    }
}

/// hyper keeps the socket behind its own type: dropping it is all that can be done.
impl Socket for TokioIo<hyper::upgrade::Upgraded> {
    fn reset_on_drop(&self) {}
}

/// Bytes read per system call, on the stack.
const READ_CHUNK: usize = 8 * 1024;
/// Frames written per system call at most.
const MAX_IOVECS: usize = 64;
/// Queue slots a connection keeps between bursts; bigger buffers are freed once drained.
const KEPT_QUEUE_SLOTS: usize = 8;
/// How long to wait for the client's close frame after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How a connection ended, for logs and metrics.
#[derive(Debug)]
enum Exit {
    /// We sent a close frame (our own, or the echo of the client's).
    Closed {
        code: CloseCode,
        reason: String,
    },
    /// The peer went away without a close handshake.
    Gone,
    /// The peer took nothing we wrote for the write deadline (the idle timeout), our close
    /// frame maybe included: it is not reading, and its socket may not be kept.
    Stalled,
    /// The socket was asked to let go of the connection (it is resumed elsewhere, or the node
    /// drains): the connection is parked, not ended.
    Parked,
    Io(io::Error),
}

enum ReadError {
    Io(io::Error),
    Frame(FrameError),
}

pub(crate) struct Connection<S> {
    io: S,
    conn: Arc<Conn>,
    edge: Arc<EdgeState>,
    session: Session,
    /// The protocol may come to read binary frames (else they close the connection, 1003).
    reads_binary: bool,
    reader: Reader,
    max_frame: usize,
    /// Frames parsed but not handled yet, and the next one to handle.
    inbound: Vec<Inbound>,
    next_inbound: usize,
    /// The client request being executed; no further frame is handled until it is done.
    request: Option<BoxFuture<'static, ()>>,
    /// Frames taken from the outbox, being written; `written` bytes of the first are out.
    pending: VecDeque<Bytes>,
    written: usize,
    /// The close frame has been queued for writing.
    closing: Option<CloseRequest>,
    /// The client sent its close frame: read nothing more.
    peer_closed: bool,
    /// The last write found the socket full: the peer is not taking what we send.
    write_blocked: bool,
    /// While `write_blocked`: when the connection is given up if the socket still takes
    /// nothing. Allocated on the first stall, then re-armed (reset) on each new one.
    write_deadline: Option<Pin<Box<Sleep>>>,
    write_deadline_armed: bool,
}

impl<S: Socket> Connection<S> {
    /// `prefix` holds bytes the client sent right after the handshake.
    pub(crate) fn new(io: S, prefix: &[u8], session: Session, edge: Arc<EdgeState>) -> Self {
        let conn = Arc::clone(session.conn());
        let max_frame = conn.settings.limits.max_message_bytes as usize + crate::session::MESSAGE_OVERHEAD;
        let reads_binary = conn.format().info().reads_binary();
        let mut connection = Self {
            io,
            conn,
            edge,
            session,
            reads_binary,
            reader: Reader::default(),
            max_frame,
            inbound: Vec::new(),
            next_inbound: 0,
            request: None,
            pending: VecDeque::new(),
            written: 0,
            closing: None,
            peer_closed: false,
            write_blocked: false,
            write_deadline: None,
            write_deadline_armed: false,
        };
        if !prefix.is_empty() {
            let fed = connection.reader.feed(prefix, max_frame, &mut connection.inbound);
            if let Err(err) = fed {
                connection.fail_protocol(&err);
            }
        }
        connection
    }

    /// Runs the connection to its end, then leaves the hub — or, for a resumable connection
    /// whose socket dropped (not closed), parks it for its client to resume.
    pub(crate) async fn run(mut self) {
        let exit = poll_fn(|cx| self.poll_run(cx)).await;
        let dropped = matches!(exit, Exit::Parked | Exit::Gone | Exit::Io(_) | Exit::Stalled);
        if dropped && self.conn.resumable && self.conn.outbox.park() {
            // A request in flight (an upstream call) still finishes: its answer is retained
            // for the resumed socket.
            if let Some(request) = self.request.take() {
                tokio::spawn(request);
            }
            // The client resumes on a new socket at once: no close handshake to wait for.
            let _ = tokio::time::timeout(CLOSE_GRACE, self.io.shutdown()).await;
            tracing::info!(connection = %self.conn.id, app = %self.conn.scope.app, exit = ?exit, "connection parked: its client may resume it");
            self.edge.parked.park(self.session);
            return;
        }
        if matches!(exit, Exit::Closed { .. }) && !self.peer_closed {
            // Give the client a moment to answer our close frame before dropping the socket.
            let _ = tokio::time::timeout(CLOSE_GRACE, self.wait_for_peer_close()).await;
        }
        if self.pending.is_empty() {
            let _ = self.io.shutdown().await;
        } else {
            // Frames (maybe our close frame) the peer never took: reset rather than leave
            // them to an orphaned socket.
            self.io.reset_on_drop();
        }
        let (code, reason) = self.ending(&exit);
        crate::admission::finish(&self.edge, &self.conn, code, &reason);
        match &exit {
            Exit::Closed { code, reason } => {
                metrics::counter!("signalbox_disconnects_total", "code" => code.code().to_string()).increment(1);
                tracing::info!(connection = %self.conn.id, app = %self.conn.scope.app, code = code.code(), reason, "connection closed");
            }
            Exit::Gone => {
                metrics::counter!("signalbox_disconnects_total", "code" => "1006").increment(1);
                tracing::info!(connection = %self.conn.id, app = %self.conn.scope.app, code = 1006, "connection dropped by peer");
            }
            Exit::Stalled => {
                metrics::counter!("signalbox_disconnects_total", "code" => code.to_string()).increment(1);
                tracing::info!(connection = %self.conn.id, app = %self.conn.scope.app, code, reason, "connection dropped: the client reads nothing");
            }
            Exit::Io(err) => {
                metrics::counter!("signalbox_disconnects_total", "code" => "1006").increment(1);
                tracing::info!(connection = %self.conn.id, app = %self.conn.scope.app, code = 1006, error = %err, "connection failed");
            }
            Exit::Parked => {
                metrics::counter!("signalbox_disconnects_total", "code" => "1006").increment(1);
                tracing::info!(connection = %self.conn.id, app = %self.conn.scope.app, code = 1006, "connection given up and not parked");
            }
        }
    }

    /// The close code and reason a connection ended with, as webhooks are told.
    fn ending(&self, exit: &Exit) -> (u16, String) {
        match (exit, &self.closing) {
            (Exit::Closed { code, reason }, _) => (code.code(), reason.clone()),
            // We were closing it and it did not take our close frame.
            (Exit::Gone, Some(request)) => (request.code.code(), request.reason.to_string()),
            (Exit::Gone, None) => (1006, "the connection dropped without a close frame".into()),
            (Exit::Stalled, Some(request)) => (request.code.code(), request.reason.to_string()),
            (Exit::Stalled, None) => {
                (CloseCode::SlowConsumer.code(), "the client read nothing for the write deadline".into())
            }
            (Exit::Parked, Some(request)) => (request.code.code(), request.reason.to_string()),
            (Exit::Parked, None) => (1006, "the connection was given up for a resume that did not come".into()),
            (Exit::Io(err), _) => (1006, format!("the connection failed: {err}")),
        }
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<Exit> {
        loop {
            if self.conn.outbox.park_requested() {
                return Poll::Ready(Exit::Parked);
            }
            match self.poll_write(cx) {
                Poll::Ready(Ok(())) => {
                    let request = self.closing.take().unwrap_or_else(|| CloseRequest::default_for(CloseCode::Normal));
                    return Poll::Ready(Exit::Closed { code: request.code, reason: request.reason.into_owned() });
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Exit::Io(err)),
                Poll::Pending => {}
            }
            if self.poll_write_deadline(cx).is_ready() {
                return Poll::Ready(Exit::Stalled);
            }
            if self.closing.is_some() {
                // Our close frame waits for the socket to take it: a client that reads slowly
                // still learns why it is closed; one that reads nothing meets the write deadline.
                return Poll::Pending;
            }
            if let Some(request) = self.request.as_mut() {
                ready!(request.as_mut().poll(cx));
                self.request = None;
                continue;
            }
            if self.next_inbound < self.inbound.len() {
                let frame = std::mem::replace(&mut self.inbound[self.next_inbound], Inbound::Pong);
                self.next_inbound += 1;
                self.handle(frame);
                continue;
            }
            self.inbound.clear();
            self.next_inbound = 0;
            if self.inbound.capacity() > 16 {
                self.inbound = Vec::new();
            }
            if self.peer_closed {
                return Poll::Pending;
            }
            match ready!(self.poll_read(cx)) {
                Ok(true) => {}
                Ok(false) => return Poll::Ready(Exit::Gone),
                Err(ReadError::Io(err)) => return Poll::Ready(Exit::Io(err)),
                Err(ReadError::Frame(err)) => self.fail_protocol(&err),
            }
        }
    }

    /// Ready once the socket has taken nothing for the write deadline (the idle timeout: a
    /// peer that reads nothing cannot answer pings either), whatever else is going on.
    fn poll_write_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.write_blocked {
            self.write_deadline_armed = false;
            return Poll::Pending;
        }
        if !self.write_deadline_armed {
            self.write_deadline_armed = true;
            let at = Instant::now() + self.edge.hub.config.idle_timeout();
            match &mut self.write_deadline {
                Some(deadline) => deadline.as_mut().reset(at),
                None => self.write_deadline = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        match &mut self.write_deadline {
            Some(deadline) => deadline.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }

    fn fail_protocol(&mut self, err: &FrameError) {
        tracing::debug!(connection = %self.conn.id, error = %err, "closing on a protocol violation");
        self.conn.outbox.close_now(CloseRequest::new(err.close_code(), err.to_string()));
        self.peer_closed = true;
    }

    fn handle(&mut self, frame: Inbound) {
        match frame {
            Inbound::Text(text) => self.request = self.session.on_data(&text),
            Inbound::Binary(data) if self.reads_binary => self.request = self.session.on_data(&data),
            Inbound::Binary(_) => {
                self.conn.outbox.close_now(CloseRequest::default_for(CloseCode::UnsupportedData));
                self.peer_closed = true;
            }
            Inbound::Ping(payload) => {
                self.conn.outbox.push(codec::pong_frame(&payload));
            }
            Inbound::Pong => {}
            Inbound::Close(peer) => {
                self.peer_closed = true;
                let reason = peer.map(|(code, reason)| format!("client closed ({code}) {reason}")).unwrap_or_default();
                self.conn.outbox.close(CloseRequest::new(CloseCode::Normal, reason));
            }
        }
    }

    /// Writes what is queued. Ready(Ok) only once the close frame is out.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // With frames of our own still to write, the outbox is not polled below: this also
        // registers for its wake-up, or a close requested while the socket is full (a slow
        // consumer, a heartbeat timeout) would never be seen.
        if self.closing.is_none()
            && !self.pending.is_empty()
            && let Some(request) = self.conn.outbox.poll_urgent_close(cx)
        {
            // Keep only a frame already half written (the stream must stay well-formed).
            self.pending.truncate(usize::from(self.written > 0));
            self.push_close(&request);
            self.closing = Some(request);
        }
        loop {
            if self.pending.is_empty() {
                if self.closing.is_some() {
                    return Pin::new(&mut self.io).poll_flush(cx);
                }
                match self.conn.outbox.poll_take(cx, &mut self.pending) {
                    Poll::Ready(Taken::Frames) => {}
                    Poll::Ready(Taken::Close(request)) => {
                        self.push_close(&request);
                        self.closing = Some(request);
                    }
                    Poll::Pending => {
                        if self.pending.capacity() > KEPT_QUEUE_SLOTS {
                            self.pending = VecDeque::new();
                        }
                        return Poll::Pending;
                    }
                }
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, frame) in self.pending.iter().take(MAX_IOVECS).enumerate() {
                slices[i] = IoSlice::new(if i == 0 { &frame[self.written..] } else { frame });
                count = i + 1;
            }
            let Poll::Ready(written) = Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]) else {
                self.write_blocked = true;
                return Poll::Pending;
            };
            let n = written?;
            self.write_blocked = false;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
        }
    }

    /// Queues the close frame, after the protocol's own goodbye if it has one.
    fn push_close(&mut self, request: &CloseRequest) {
        if let Some(goodbye) = self.conn.format().encode(&Outbound::Close(request)) {
            self.pending.push_back(goodbye);
        }
        let code = (self.conn.format().info().close_code)(request.code);
        self.pending.push_back(codec::close_frame(code, &request.reason));
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.pending.front() else { break };
            let left = front.len() - self.written;
            if n >= left {
                n -= left;
                self.pending.pop_front();
                self.written = 0;
            } else {
                self.written += n;
                n = 0;
            }
        }
    }

    /// Reads once. Ok(false) at end of stream.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, ReadError>> {
        let mut buf = [0u8; READ_CHUNK];
        let mut read_buf = ReadBuf::new(&mut buf);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read_buf)).map_err(ReadError::Io)?;
        let data = read_buf.filled();
        if data.is_empty() {
            return Poll::Ready(Ok(false));
        }
        self.conn.touch(self.edge.hub.now_secs());
        self.reader.feed(data, self.max_frame, &mut self.inbound).map_err(ReadError::Frame)?;
        Poll::Ready(Ok(true))
    }

    /// Reads and drops whatever comes until the client's close frame or the end of stream.
    async fn wait_for_peer_close(&mut self) {
        loop {
            match poll_fn(|cx| self.poll_read(cx)).await {
                Ok(true) if self.inbound.iter().any(|f| matches!(f, Inbound::Close(_))) => return,
                Ok(true) => self.inbound.clear(),
                Ok(false) | Err(_) => return,
            }
        }
    }
}

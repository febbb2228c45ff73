//! A connection's bounded outbound queue.
//!
//! The hub pushes shared, fully framed bytes; the connection's task takes everything queued
//! in one go and writes it with one vectored write, so a backlog costs one wake-up and one
//! system call, not one per message. The queue is bounded in frames and bytes: a push that
//! would overflow it drops what is queued and asks the connection to close as a slow
//! consumer (4100) — memory stays bounded and nobody else waits.
//!
//! A resumable connection also retains what its client counts until the client acknowledges
//! it (`retained`), and may be *parked*: no socket holds it, until one resumes it.

mod retained;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use signalbox_core::CloseCode;

use crate::protocol::Format;
use retained::Retained;
pub(crate) use retained::{Full, RetainedFrame};

/// Why and how a connection is being closed by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    pub(crate) code: CloseCode,
    pub(crate) reason: Cow<'static, str>,
    /// Send what is queued first (a polite close) or drop it (a slow consumer, a protocol
    /// violation: the close frame must not wait behind data the peer will never read).
    pub(crate) flush: bool,
}

impl CloseRequest {
    pub(crate) fn new(code: CloseCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Self { code, reason: reason.into(), flush: true }
    }

    pub(crate) fn default_for(code: CloseCode) -> Self {
        Self::new(code, code.default_reason())
    }
}

/// The result of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// The queue was full: the connection is now closing as a slow consumer.
    Overflowed,
    /// The connection is closing; the frame was dropped.
    Closing,
}

/// What the writer got from [`Outbox::poll_take`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Frames were moved into the writer's buffer.
    Frames,
    /// Nothing is left to send and the connection must close.
    Close(CloseRequest),
}

#[derive(Debug)]
pub(crate) struct Outbox {
    /// Pushed to by any fan-out, taken by one writer; held for a push or a swap only.
    state: Mutex<State>,
    /// Wakes the connection's task when the queue goes from empty to non-empty or a close
    /// is requested.
    waker: AtomicWaker,
    max_bytes: usize,
    max_frames: usize,
    /// The socket is to give up the connection, leaving it parked (a resume on another
    /// socket, a drain). Atomic: the writer looks at every turn.
    park_requested: std::sync::atomic::AtomicBool,
    /// Nothing is written yet (see [`hold_writes`](Self::hold_writes)).
    writes_held: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    close: Option<CloseRequest>,
    /// A resumable connection's retained frames (boxed: most connections never retain).
    retained: Option<Box<Retained>>,
}

impl State {
    fn is_parked(&self) -> bool {
        self.retained.as_ref().is_some_and(|r| r.parked)
    }
}

/// The bytes a connection may queue: the operator's `outbox_max_bytes`, but at least two of
/// the largest messages its app accepts, framed in any format the connection may come to
/// use (its opening may still choose another encoding). Two: a replay from history waits for
/// half the queue, and one must still fit there.
pub(crate) fn capacity_for(configured: usize, max_payload: usize, format: Format) -> usize {
    configured.max(2 * format.max_reachable_frame(max_payload))
}

impl Outbox {
    pub(crate) fn new(max_bytes: usize, max_frames: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            waker: AtomicWaker::new(),
            max_bytes,
            max_frames,
            park_requested: false.into(),
            writes_held: false.into(),
        }
    }

    /// Queues one frame the client does not count (a keep-alive, an Ack): a parked
    /// connection drops it.
    pub(crate) fn push(&self, frame: Bytes) -> Pushed {
        let state = self.state.lock();
        if state.close.is_some() {
            return Pushed::Closing;
        }
        if state.is_parked() {
            return Pushed::Queued;
        }
        self.queue(state, frame)
    }

    /// Queues one frame the client counts (a message, presence, a reply); a resumable
    /// connection retains it too, until acknowledged. `message_id` names the message it
    /// carries, if any.
    pub(crate) fn push_counted(&self, frame: Bytes, message_id: Option<&str>) -> Pushed {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return Pushed::Closing;
        }
        if let Some(retained) = state.retained.as_mut() {
            let kept_back = retained.parked || retained.holding;
            let kept = RetainedFrame { frame: frame.clone(), message_id: message_id.map(Into::into) };
            if retained.push(kept).is_err() {
                return self.overflow(state);
            }
            if kept_back {
                return Pushed::Queued;
            }
        }
        self.queue(state, frame)
    }

    fn overflow(&self, mut state: parking_lot::MutexGuard<'_, State>) -> Pushed {
        state.frames = VecDeque::new();
        state.bytes = 0;
        state.close = Some(CloseRequest { flush: false, ..CloseRequest::default_for(CloseCode::SlowConsumer) });
        drop(state);
        self.waker.wake();
        Pushed::Overflowed
    }

    fn queue(&self, mut state: parking_lot::MutexGuard<'_, State>, frame: Bytes) -> Pushed {
        if state.frames.len() >= self.max_frames || state.bytes + frame.len() > self.max_bytes {
            return self.overflow(state);
        }
        let was_empty = state.frames.is_empty();
        state.bytes += frame.len();
        state.frames.push_back(frame);
        drop(state);
        // A non-empty queue means the writer was already woken and has not taken it yet.
        if was_empty {
            self.waker.wake();
        }
        Pushed::Queued
    }

    /// Retains every counted frame from now on (a resumable connection's opening), up to the
    /// queue's size in bytes — and holds them back until [`release`](Self::release): the
    /// client must count the first one it receives as 1.
    pub(crate) fn retain(&self) {
        self.state.lock().retained = Some(Box::new(Retained::new(self.max_bytes)));
    }

    /// The client counts what it receives now: queues what was held back since
    /// [`retain`](Self::retain).
    pub(crate) fn release(&self) {
        let mut state = self.state.lock();
        let Some(retained) = state.retained.as_mut().filter(|r| r.holding) else { return };
        retained.holding = false;
        if retained.parked {
            return;
        }
        let held: Vec<Bytes> = retained.frames().map(|f| f.frame.clone()).collect();
        for frame in held {
            state.bytes += frame.len();
            state.frames.push_back(frame);
        }
        drop(state);
        self.waker.wake();
    }

    pub(crate) fn is_retaining(&self) -> bool {
        self.state.lock().retained.is_some()
    }

    /// The client has every counted frame up to `through`.
    pub(crate) fn acknowledge(&self, through: u64) {
        if let Some(retained) = self.state.lock().retained.as_mut() {
            retained.acknowledge(through);
        }
    }

    /// Counted client messages arrived up to `id`.
    pub(crate) fn received(&self, id: u64) {
        if let Some(retained) = self.state.lock().retained.as_mut() {
            retained.received(id);
        }
    }

    /// The Ack the client is owed, if messages arrived since the last one (never while parked).
    pub(crate) fn ack_due(&self) -> Option<u64> {
        let mut state = self.state.lock();
        state.retained.as_mut().filter(|r| !r.parked).and_then(|r| r.ack_due())
    }

    /// Asks the connection's socket to let go of it, leaving it parked for a resume.
    pub(crate) fn request_park(&self) {
        let state = self.state.lock();
        // A connection that is closing ends as it was asked to.
        if state.retained.is_some() && !state.is_parked() && state.close.is_none() {
            self.park_requested.store(true, std::sync::atomic::Ordering::Release);
            drop(state);
            self.waker.wake();
        }
    }

    pub(crate) fn park_requested(&self) -> bool {
        self.park_requested.load(std::sync::atomic::Ordering::Acquire)
    }

    /// No socket holds the connection any more: parks it if it is resumable and not closing
    /// (what was queued is retained already). False when it must end instead.
    pub(crate) fn park(&self) -> bool {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return false;
        }
        let Some(retained) = state.retained.as_mut() else { return false };
        retained.parked = true;
        self.park_requested.store(false, std::sync::atomic::Ordering::Release);
        state.frames = VecDeque::new();
        state.bytes = 0;
        true
    }

    pub(crate) fn is_parked(&self) -> bool {
        self.state.lock().is_parked()
    }

    /// A new socket holds the connection: queues `sequence` (made from the first retained
    /// frame's id), then every retained frame. False when it is closing or not parked.
    pub(crate) fn unpark(&self, sequence: impl FnOnce(u64) -> Option<Bytes>) -> bool {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return false;
        }
        let Some(retained) = state.retained.as_mut().filter(|r| r.parked) else { return false };
        retained.parked = false;
        retained.holding = false;
        let mut frames: VecDeque<Bytes> = sequence(retained.first_id()).into_iter().collect();
        frames.extend(retained.frames().map(|f| f.frame.clone()));
        state.bytes = frames.iter().map(Bytes::len).sum();
        state.frames = frames;
        drop(state);
        self.waker.wake();
        true
    }

    /// Takes a parked connection's retained frames and the id of the first (a handover).
    pub(crate) fn take_retained(&self) -> Option<(u64, Vec<RetainedFrame>)> {
        let mut state = self.state.lock();
        state.retained.as_mut().filter(|r| r.parked).map(|r| r.take())
    }

    /// Starts a parked connection's retention over from another edge's frames, numbered from
    /// `first_id`; what was retained here meanwhile follows, without copies of their messages.
    pub(crate) fn merge_retained(&self, first_id: u64, frames: Vec<RetainedFrame>) -> Result<(), Full> {
        let mut state = self.state.lock();
        match state.retained.as_mut() {
            Some(retained) => retained.merge(first_id, frames),
            None => Ok(()),
        }
    }

    /// Queues, but writes nothing until [`release_writes`](Self::release_writes): what a
    /// client is told first (that its opening is answered) must not reach it before the
    /// connection is in its targets, or a message sent the moment it knows would be lost.
    pub(crate) fn hold_writes(&self) {
        self.writes_held.store(true, std::sync::atomic::Ordering::Release);
    }

    pub(crate) fn release_writes(&self) {
        self.writes_held.store(false, std::sync::atomic::Ordering::Release);
        self.waker.wake();
    }

    /// Asks the connection to close once what is queued is sent. The first request wins.
    pub(crate) fn close(&self, request: CloseRequest) {
        let mut state = self.state.lock();
        if state.close.is_none() {
            state.close = Some(request);
            drop(state);
            self.waker.wake();
        }
    }

    /// Like [`close`](Self::close), but drops what is queued first.
    pub(crate) fn close_now(&self, request: CloseRequest) {
        let mut state = self.state.lock();
        state.frames = VecDeque::new();
        state.bytes = 0;
        if state.close.is_none() {
            state.close = Some(CloseRequest { flush: false, ..request });
        }
        drop(state);
        self.waker.wake();
    }

    /// Whether more than half the queue is in use: a producer that can wait (a replay from
    /// history) waits, so that it never pushes the connection over its limit.
    pub(crate) fn is_backed_up(&self) -> bool {
        let state = self.state.lock();
        state.bytes > self.max_bytes / 2 || state.frames.len() > self.max_frames / 2
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The close requested, if any.
    pub(crate) fn close_request(&self) -> Option<CloseRequest> {
        self.state.lock().close.clone()
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.state.lock().close.is_some()
    }

    /// For a writer busy with its own backlog (a socket that does not take it): a close that
    /// must not wait for that backlog, if one was requested; otherwise registers for a wake-up.
    ///
    /// A writer that is not calling [`poll_take`](Self::poll_take) must call this on every
    /// poll: a push consumes the registered waker, so without it a later overflow or
    /// heartbeat close would wake nobody and the connection would outlive its close.
    pub(crate) fn poll_urgent_close(&self, cx: &mut Context<'_>) -> Option<CloseRequest> {
        // Register before looking, as in `poll_take`.
        self.waker.register(cx.waker());
        self.state.lock().close.as_ref().filter(|c| !c.flush).cloned()
    }

    /// For the writer: moves every queued frame into `into` (which must be empty), or
    /// returns the close request once nothing is queued, or registers for a wake-up.
    ///
    /// The queue and the writer's buffer are swapped, not replaced: under steady traffic the
    /// two buffers trade places and nothing is allocated per batch.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>, into: &mut VecDeque<Bytes>) -> Poll<Taken> {
        debug_assert!(into.is_empty());
        // Register before looking, so a push between the look and the return still wakes us.
        self.waker.register(cx.waker());
        let mut state = self.state.lock();
        if self.writes_held.load(std::sync::atomic::Ordering::Acquire) && state.close.is_none() {
            return Poll::Pending;
        }
        if !state.frames.is_empty() {
            std::mem::swap(&mut state.frames, into);
            state.bytes = 0;
            return Poll::Ready(Taken::Frames);
        }
        match &state.close {
            Some(request) => Poll::Ready(Taken::Close(request.clone())),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct CountWakes(std::sync::atomic::AtomicUsize);
    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn batches_and_wakes_once_per_batch() {
        let outbox = Outbox::new(1000, 100);
        let wakes = Arc::new(CountWakes(0.into()));
        let waker = std::task::Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut taken = VecDeque::new();
        assert_eq!(outbox.poll_take(&mut cx, &mut taken), Poll::Pending);
        for _ in 0..5 {
            assert_eq!(outbox.push(frame(10)), Pushed::Queued);
        }
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1, "one wake for a burst");
        assert_eq!(outbox.poll_take(&mut cx, &mut taken), Poll::Ready(Taken::Frames));
        assert_eq!(taken.len(), 5);
    }

    #[test]
    fn overflow_closes_as_slow_consumer_and_frees_the_queue() {
        let outbox = Outbox::new(100, 1000);
        assert_eq!(outbox.push(frame(60)), Pushed::Queued);
        assert_eq!(outbox.push(frame(60)), Pushed::Overflowed);
        assert_eq!(outbox.push(frame(1)), Pushed::Closing);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut taken = VecDeque::new();
        let Poll::Ready(Taken::Close(request)) = outbox.poll_take(&mut cx, &mut taken) else { panic!("must close") };
        assert_eq!(request.code, CloseCode::SlowConsumer);
        assert!(taken.is_empty(), "queued frames were dropped");
        let frames = Outbox::new(1000, 2);
        assert_eq!(frames.push(frame(1)), Pushed::Queued);
        assert_eq!(frames.push(frame(1)), Pushed::Queued);
        assert_eq!(frames.push(frame(1)), Pushed::Overflowed);
    }

    #[test]
    fn a_writer_stuck_on_its_backlog_is_woken_by_an_urgent_close() {
        let outbox = Outbox::new(100, 1000);
        let wakes = Arc::new(CountWakes(0.into()));
        let waker = std::task::Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut taken = VecDeque::new();
        assert_eq!(outbox.poll_take(&mut cx, &mut taken), Poll::Pending);
        assert_eq!(outbox.push(frame(10)), Pushed::Queued);
        assert_eq!(outbox.poll_take(&mut cx, &mut taken), Poll::Ready(Taken::Frames));
        // The socket does not take `taken`; the next push into the empty queue wakes the writer,
        // which finds its socket still blocked and looks only for an urgent close.
        assert_eq!(outbox.push(frame(10)), Pushed::Queued);
        assert_eq!(outbox.poll_urgent_close(&mut cx), None);
        let before = wakes.0.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(outbox.push(frame(100)), Pushed::Overflowed);
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), before + 1, "the overflow wakes the writer");
        assert_eq!(outbox.poll_urgent_close(&mut cx).map(|c| c.code), Some(CloseCode::SlowConsumer));
    }

    #[test]
    fn close_sends_what_is_queued_first() {
        let outbox = Outbox::new(1000, 100);
        outbox.push(frame(1));
        outbox.close(CloseRequest::default_for(CloseCode::ClosedByBackend));
        outbox.close(CloseRequest::default_for(CloseCode::GoingAway));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut taken = VecDeque::new();
        assert_eq!(outbox.poll_take(&mut cx, &mut taken), Poll::Ready(Taken::Frames));
        taken.clear();
        let Poll::Ready(Taken::Close(request)) = outbox.poll_take(&mut cx, &mut taken) else { panic!("must close") };
        assert_eq!(request.code, CloseCode::ClosedByBackend, "first close request wins");
    }

    fn taken(outbox: &Outbox) -> Vec<Bytes> {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut taken = VecDeque::new();
        match outbox.poll_take(&mut cx, &mut taken) {
            Poll::Ready(Taken::Frames) => taken.into_iter().collect(),
            _ => Vec::new(),
        }
    }

    fn text(frame: &str) -> Bytes {
        Bytes::copy_from_slice(frame.as_bytes())
    }

    #[test]
    fn a_resumable_connection_holds_back_until_released_then_retains_until_acknowledged() {
        let outbox = Outbox::new(1000, 100);
        outbox.retain();
        assert_eq!(outbox.push_counted(text("m1"), Some("1")), Pushed::Queued);
        assert_eq!(outbox.push(text("ping")), Pushed::Queued);
        assert_eq!(taken(&outbox), [text("ping")], "counted frames wait until the client counts");
        outbox.release();
        outbox.push_counted(text("m2"), Some("2"));
        assert_eq!(taken(&outbox), [text("m1"), text("m2")]);

        // The socket drops: parked, what comes is retained only; a resume sends the Sequence of
        // the first frame not acknowledged, then every such frame.
        outbox.acknowledge(1);
        assert!(outbox.park());
        assert_eq!(outbox.push_counted(text("m3"), Some("3")), Pushed::Queued);
        assert_eq!(outbox.push(text("ping")), Pushed::Queued);
        assert!(taken(&outbox).is_empty(), "nothing is queued while parked");
        assert!(outbox.unpark(|first| Some(Bytes::from(format!("seq {first}")))));
        assert_eq!(taken(&outbox), [text("seq 2"), text("m2"), text("m3")]);
    }

    #[test]
    fn a_closing_or_plain_connection_is_never_parked() {
        let plain = Outbox::new(1000, 100);
        assert!(!plain.park(), "not resumable");
        let closing = Outbox::new(1000, 100);
        closing.retain();
        closing.close(CloseRequest::default_for(CloseCode::ClosedByBackend));
        assert!(!closing.park(), "the server ends it: no resume");
    }

    #[test]
    fn retention_beyond_the_limit_closes_as_a_slow_consumer() {
        let outbox = Outbox::new(10, 100);
        outbox.retain();
        outbox.release();
        assert_eq!(outbox.push_counted(frame(6), None), Pushed::Queued);
        let _ = taken(&outbox);
        assert_eq!(outbox.push_counted(frame(6), None), Pushed::Overflowed, "the first is not acknowledged");
        assert_eq!(outbox.close_request().map(|c| c.code), Some(CloseCode::SlowConsumer));
    }

    #[test]
    fn a_handover_takes_the_retained_frames_and_a_merge_puts_theirs_first() {
        let old = Outbox::new(1000, 100);
        old.retain();
        old.release();
        old.push_counted(text("m1"), Some("1"));
        old.push_counted(text("m2"), Some("2"));
        assert!(old.take_retained().is_none(), "only a parked connection is handed over");
        assert!(old.park());
        let (first, frames) = old.take_retained().expect("parked");
        let new = Outbox::new(1000, 100);
        new.retain();
        assert!(new.park());
        new.push_counted(text("m2"), Some("2"));
        new.push_counted(text("m3"), Some("3"));
        new.merge_retained(first, frames).expect("fits");
        assert!(new.unpark(|first| Some(Bytes::from(format!("seq {first}")))));
        assert_eq!(taken(&new), [text("seq 1"), text("m1"), text("m2"), text("m3")]);
    }

    #[test]
    fn held_writes_wait_for_the_release_but_a_close_does_not() {
        let outbox = Outbox::new(1000, 100);
        outbox.hold_writes();
        outbox.push(text("opened"));
        assert!(taken(&outbox).is_empty(), "held");
        outbox.release_writes();
        assert_eq!(taken(&outbox), [text("opened")]);
        let refused = Outbox::new(1000, 100);
        refused.hold_writes();
        refused.close_now(CloseRequest::default_for(CloseCode::TryAgainLater));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(refused.poll_take(&mut cx, &mut VecDeque::new()), Poll::Ready(Taken::Close(_))));
    }
}

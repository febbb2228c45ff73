//! What a resumable connection keeps of what it sent until its client acknowledges it, so
//! that a client whose socket dropped can resume — on a new socket, here or on another edge —
//! with every message it missed, in order, once.
//!
//! Frames are numbered as the client counts them (1, 2, 3 … in the order they were queued);
//! the client's Ack drops those up to an id. While no socket holds the connection (it is
//! *parked*) frames are retained, not queued; a resume queues the protocol's Sequence and
//! every retained frame again, and the client skips those it already has by their number.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

/// One retained frame: its bytes, and the id of the message it carries (to leave out copies
/// of a message when another edge's retained frames are merged in).
#[derive(Debug, Clone)]
pub(crate) struct RetainedFrame {
    pub(crate) frame: Bytes,
    pub(crate) message_id: Option<Arc<str>>,
}

#[derive(Debug)]
pub(crate) struct Retained {
    /// The id of the first frame in `frames`; the next frame's is `first_id + frames.len()`.
    first_id: u64,
    frames: VecDeque<RetainedFrame>,
    bytes: usize,
    max_bytes: usize,
    /// No socket holds the connection: frames are retained, not queued.
    pub(super) parked: bool,
    /// The client does not count what it receives yet: frames are retained, not queued,
    /// until it does (see `Outbox::release`).
    pub(super) holding: bool,
    /// The last counted client message received, and the last one acknowledged to it.
    received: u64,
    acknowledged: u64,
}

/// Retention would exceed its limit: the client has not acknowledged enough.
#[derive(Debug)]
pub(crate) struct Full;

impl Retained {
    pub(super) fn new(max_bytes: usize) -> Self {
        Self {
            first_id: 1,
            frames: VecDeque::new(),
            bytes: 0,
            max_bytes,
            parked: false,
            holding: true,
            received: 0,
            acknowledged: 0,
        }
    }

    pub(super) fn push(&mut self, frame: RetainedFrame) -> Result<(), Full> {
        if self.bytes + frame.frame.len() > self.max_bytes {
            return Err(Full);
        }
        self.bytes += frame.frame.len();
        self.frames.push_back(frame);
        Ok(())
    }

    /// The client has every frame up to `through`.
    pub(super) fn acknowledge(&mut self, through: u64) {
        while self.first_id <= through {
            let Some(frame) = self.frames.pop_front() else { break };
            self.bytes -= frame.frame.len();
            self.first_id += 1;
        }
    }

    /// The id of the first frame a resume sends (the next one's when none is retained).
    pub(super) fn first_id(&self) -> u64 {
        self.first_id
    }

    pub(super) fn frames(&self) -> impl Iterator<Item = &RetainedFrame> {
        self.frames.iter()
    }

    /// Takes every retained frame (a handover to another edge).
    pub(super) fn take(&mut self) -> (u64, Vec<RetainedFrame>) {
        self.bytes = 0;
        (self.first_id, std::mem::take(&mut self.frames).into())
    }

    /// Counted client messages received up to `id`.
    pub(super) fn received(&mut self, id: u64) {
        self.received = self.received.max(id);
    }

    /// The Ack to send, if messages arrived since the last one.
    pub(super) fn ack_due(&mut self) -> Option<u64> {
        (self.received > self.acknowledged).then(|| {
            self.acknowledged = self.received;
            self.received
        })
    }

    /// Starts over from another edge's retained frames, numbered from `first_id`; frames
    /// retained here meanwhile follow, except copies of messages the other edge already had.
    pub(super) fn merge(&mut self, first_id: u64, theirs: Vec<RetainedFrame>) -> Result<(), Full> {
        let known: std::collections::HashSet<Arc<str>> =
            theirs.iter().filter_map(|frame| frame.message_id.clone()).collect();
        let ours = std::mem::take(&mut self.frames);
        self.first_id = first_id;
        self.bytes = 0;
        for frame in theirs {
            self.push(frame)?;
        }
        for frame in ours {
            if frame.message_id.as_ref().is_none_or(|id| !known.contains(id)) {
                self.push(frame)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str, id: Option<&str>) -> RetainedFrame {
        RetainedFrame { frame: Bytes::copy_from_slice(text.as_bytes()), message_id: id.map(Arc::from) }
    }

    fn texts(retained: &Retained) -> Vec<String> {
        retained.frames().map(|f| String::from_utf8(f.frame.to_vec()).unwrap()).collect()
    }

    #[test]
    fn acks_drop_what_the_client_has_and_ids_keep_counting() {
        let mut retained = Retained::new(1024);
        for text in ["a", "b", "c"] {
            retained.push(frame(text, None)).unwrap();
        }
        retained.acknowledge(2);
        assert_eq!((retained.first_id(), texts(&retained)), (3, vec!["c".to_owned()]));
        retained.acknowledge(2);
        retained.acknowledge(10);
        assert_eq!(retained.first_id(), 4, "past the end: the next frame will be 4");
        retained.push(frame("d", None)).unwrap();
        assert_eq!(retained.first_id(), 4);
    }

    #[test]
    fn retention_is_bounded() {
        let mut retained = Retained::new(2);
        retained.push(frame("ab", None)).unwrap();
        assert!(retained.push(frame("c", None)).is_err());
        retained.acknowledge(1);
        retained.push(frame("c", None)).unwrap();
    }

    #[test]
    fn acks_are_due_once_per_new_message() {
        let mut retained = Retained::new(16);
        assert_eq!(retained.ack_due(), None);
        retained.received(3);
        retained.received(2);
        assert_eq!(retained.ack_due(), Some(3));
        assert_eq!(retained.ack_due(), None);
    }

    #[test]
    fn a_merge_keeps_their_order_then_ours_without_copies() {
        let mut retained = Retained::new(1024);
        retained.push(frame("m2", Some("2"))).unwrap();
        retained.push(frame("m3", Some("3"))).unwrap();
        retained.push(frame("presence", None)).unwrap();
        retained.merge(7, vec![frame("m1", Some("1")), frame("m2", Some("2"))]).unwrap();
        assert_eq!(retained.first_id(), 7);
        assert_eq!(texts(&retained), ["m1", "m2", "m3", "presence"]);
    }
}

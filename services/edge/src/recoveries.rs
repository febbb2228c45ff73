//! What a connection's recoveries do to live messages of the groups being recovered.
//!
//! While a group's replay from history runs, its live messages are held; when the replay
//! ends, the held ones it did not send follow it. The replay reads the journal up to *now*,
//! which can include messages whose live copies have not reached this node yet: those copies
//! must not be delivered a second time. So after the replay a group stays here, as a floor,
//! until the first live message beyond what the replay sent — live messages of a group arrive
//! in position order, so after that one nothing older can come.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use signalbox_core::GroupName;

#[derive(Debug, Default)]
pub(crate) struct Recoveries {
    groups: Mutex<Vec<Recovering>>,
    /// Whether `groups` has any entry: the one check fan-out makes per recipient.
    any: AtomicBool,
}

#[derive(Debug)]
struct Recovering {
    group: GroupName,
    /// Live messages held while the replay runs; `None` once it is done.
    held: Option<Vec<(u64, Bytes)>>,
    held_bytes: usize,
    /// Once the replay is done: the last position it sent.
    replayed_up_to: u64,
}

/// What [`Recoveries::intercept`] did with a live message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intercepted {
    /// Nothing: deliver it as usual.
    Deliver,
    /// Held for after the replay, or dropped because the replay sent it.
    Taken,
    /// Holding it would exceed the limit: the connection is a slow consumer.
    Overflow,
}

impl Recoveries {
    /// Starts recovering `group`: its live messages are held from now on. Call before joining.
    pub(crate) fn start(&self, group: &GroupName) {
        let mut groups = self.groups.lock();
        groups.retain(|r| &r.group != group);
        groups.push(Recovering { group: group.clone(), held: Some(Vec::new()), held_bytes: 0, replayed_up_to: 0 });
        self.any.store(true, Ordering::Release);
    }

    /// Takes a live message of `group` at `position`: holds it while the replay runs (up to
    /// `max_held_bytes` per group), drops it if the replay sent it.
    pub(crate) fn intercept(&self, group: &str, position: u64, frame: &Bytes, max_held_bytes: usize) -> Intercepted {
        if !self.any.load(Ordering::Acquire) {
            return Intercepted::Deliver;
        }
        let mut groups = self.groups.lock();
        let Some(index) = groups.iter().position(|r| r.group.as_str() == group) else { return Intercepted::Deliver };
        let recovering = &mut groups[index];
        match &mut recovering.held {
            Some(_) if recovering.held_bytes + frame.len() > max_held_bytes => Intercepted::Overflow,
            Some(held) => {
                held.push((position, frame.clone()));
                recovering.held_bytes += frame.len();
                Intercepted::Taken
            }
            None if position <= recovering.replayed_up_to => Intercepted::Taken,
            None => {
                groups.swap_remove(index);
                self.any.store(!groups.is_empty(), Ordering::Release);
                Intercepted::Deliver
            }
        }
    }

    /// Ends the replay of `group`, which sent everything up to `replayed_up_to`: hands the held
    /// messages it did not send to `deliver`, in order, under the lock so nothing overtakes them.
    pub(crate) fn finish(&self, group: &GroupName, replayed_up_to: u64, mut deliver: impl FnMut(Bytes)) {
        let mut groups = self.groups.lock();
        let Some(index) = groups.iter().position(|r| &r.group == group) else { return };
        let recovering = &mut groups[index];
        let mut passed = false;
        for (position, frame) in recovering.held.take().unwrap_or_default() {
            if position > replayed_up_to {
                deliver(frame);
                passed = true;
            }
        }
        recovering.replayed_up_to = replayed_up_to;
        if passed {
            groups.swap_remove(index);
        }
        self.any.store(!groups.is_empty(), Ordering::Release);
    }

    /// Forgets `group` (the join failed, the group was left, or it has no positions).
    pub(crate) fn cancel(&self, group: &GroupName) {
        let mut groups = self.groups.lock();
        groups.retain(|r| &r.group != group);
        self.any.store(!groups.is_empty(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn group(name: &str) -> GroupName {
        GroupName::new(name).expect("valid")
    }

    fn frame(position: u64) -> Bytes {
        Bytes::from(position.to_string())
    }

    fn finish(recoveries: &Recoveries, name: &str, up_to: u64) -> Vec<Bytes> {
        let mut delivered = Vec::new();
        recoveries.finish(&group(name), up_to, |f| delivered.push(f));
        delivered
    }

    #[test]
    fn groups_not_recovering_pass_through() {
        let recoveries = Recoveries::default();
        assert_eq!(Intercepted::Deliver, recoveries.intercept("a", 1, &frame(1), LIMIT));
        recoveries.start(&group("a"));
        assert_eq!(Intercepted::Deliver, recoveries.intercept("b", 1, &frame(1), LIMIT), "another group");
    }

    #[test]
    fn held_messages_the_replay_did_not_send_follow_it() {
        let recoveries = Recoveries::default();
        recoveries.start(&group("a"));
        for position in [4, 5, 6] {
            assert_eq!(Intercepted::Taken, recoveries.intercept("a", position, &frame(position), LIMIT));
        }
        assert_eq!(finish(&recoveries, "a", 5), vec![frame(6)], "4 and 5 were replayed");
        assert_eq!(Intercepted::Deliver, recoveries.intercept("a", 7, &frame(7), LIMIT), "then live as usual");
    }

    #[test]
    fn a_live_copy_arriving_after_the_replay_that_sent_it_is_dropped() {
        let recoveries = Recoveries::default();
        recoveries.start(&group("a"));
        assert!(finish(&recoveries, "a", 9).is_empty());
        assert_eq!(
            Intercepted::Taken,
            recoveries.intercept("a", 8, &frame(8), LIMIT),
            "late live copy of a replayed message"
        );
        assert_eq!(
            Intercepted::Taken,
            recoveries.intercept("a", 9, &frame(9), LIMIT),
            "late live copy of a replayed message"
        );
        assert_eq!(
            Intercepted::Deliver,
            recoveries.intercept("a", 10, &frame(10), LIMIT),
            "the first new one goes through"
        );
        assert_eq!(Intercepted::Deliver, recoveries.intercept("a", 11, &frame(11), LIMIT), "and the floor is gone");
    }

    #[test]
    fn cancelling_forgets_the_group() {
        let recoveries = Recoveries::default();
        recoveries.start(&group("a"));
        assert_eq!(Intercepted::Taken, recoveries.intercept("a", 3, &frame(3), LIMIT));
        recoveries.cancel(&group("a"));
        assert_eq!(Intercepted::Deliver, recoveries.intercept("a", 4, &frame(4), LIMIT));
        assert!(finish(&recoveries, "a", 0).is_empty(), "nothing left to finish");
    }

    #[test]
    fn restarting_a_recovery_resets_it() {
        let recoveries = Recoveries::default();
        recoveries.start(&group("a"));
        assert!(finish(&recoveries, "a", 9).is_empty());
        recoveries.start(&group("a"));
        assert_eq!(Intercepted::Taken, recoveries.intercept("a", 2, &frame(2), LIMIT), "held again");
        assert_eq!(finish(&recoveries, "a", 1), vec![frame(2)]);
    }

    #[test]
    fn holding_more_than_the_limit_overflows() {
        let recoveries = Recoveries::default();
        recoveries.start(&group("a"));
        let big = Bytes::from(vec![b'x'; 600]);
        assert_eq!(recoveries.intercept("a", 1, &big, 1000), Intercepted::Taken);
        assert_eq!(recoveries.intercept("a", 2, &big, 1000), Intercepted::Overflow);
    }
}

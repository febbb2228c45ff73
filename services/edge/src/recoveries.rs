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
    /// Once the replay is done: the last position it sent.
    replayed_up_to: u64,
}

impl Recoveries {
    /// Starts recovering `group`: its live messages are held from now on. Call before joining.
    pub(crate) fn start(&self, group: &GroupName) {
        let mut groups = self.groups.lock();
        groups.retain(|r| &r.group != group);
        groups.push(Recovering { group: group.clone(), held: Some(Vec::new()), replayed_up_to: 0 });
        self.any.store(true, Ordering::Release);
    }

    /// Takes a live message of `group` at `position`: holds it while the replay runs, drops it
    /// if the replay sent it. False when the message is to be delivered as usual.
    pub(crate) fn intercept(&self, group: &str, position: u64, frame: &Bytes) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut groups = self.groups.lock();
        let Some(index) = groups.iter().position(|r| r.group.as_str() == group) else { return false };
        let recovering = &mut groups[index];
        match &mut recovering.held {
            Some(held) => {
                held.push((position, frame.clone()));
                true
            }
            None if position <= recovering.replayed_up_to => true,
            None => {
                groups.swap_remove(index);
                self.any.store(!groups.is_empty(), Ordering::Release);
                false
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
        assert!(!recoveries.intercept("a", 1, &frame(1)));
        recoveries.start(&group("a"));
        assert!(!recoveries.intercept("b", 1, &frame(1)), "another group");
    }

    #[test]
    fn held_messages_the_replay_did_not_send_follow_it() {
        let recoveries = Recoveries::default();
        recoveries.start(&group("a"));
        for position in [4, 5, 6] {
            assert!(recoveries.intercept("a", position, &frame(position)));
        }
        assert_eq!(finish(&recoveries, "a", 5), vec![frame(6)], "4 and 5 were replayed");
        assert!(!recoveries.intercept("a", 7, &frame(7)), "then live as usual");
    }

    #[test]
    fn a_live_copy_arriving_after_the_replay_that_sent_it_is_dropped() {
        let recoveries = Recoveries::default();
        recoveries.start(&group("a"));
        assert!(finish(&recoveries, "a", 9).is_empty());
        assert!(recoveries.intercept("a", 8, &frame(8)), "late live copy of a replayed message");
        assert!(recoveries.intercept("a", 9, &frame(9)), "late live copy of a replayed message");
        assert!(!recoveries.intercept("a", 10, &frame(10)), "the first new one goes through");
        assert!(!recoveries.intercept("a", 11, &frame(11)), "and the floor is gone");
    }

    #[test]
    fn cancelling_forgets_the_group() {
        let recoveries = Recoveries::default();
        recoveries.start(&group("a"));
        assert!(recoveries.intercept("a", 3, &frame(3)));
        recoveries.cancel(&group("a"));
        assert!(!recoveries.intercept("a", 4, &frame(4)));
        assert!(finish(&recoveries, "a", 0).is_empty(), "nothing left to finish");
    }

    #[test]
    fn restarting_a_recovery_resets_it() {
        let recoveries = Recoveries::default();
        recoveries.start(&group("a"));
        assert!(finish(&recoveries, "a", 9).is_empty());
        recoveries.start(&group("a"));
        assert!(recoveries.intercept("a", 2, &frame(2)), "held again");
        assert_eq!(finish(&recoveries, "a", 1), vec![frame(2)]);
    }
}

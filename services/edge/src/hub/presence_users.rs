//! Presence by user, for groups whose members are users (Pusher's presence channels): a user
//! is added with their first connection in the group, on any edge, and removed with their
//! last. Each node counts the connections per user here and on every other node (from their
//! updates; a node that just got its first member asks the others for everyone they hold).

use std::collections::HashMap;

use signalbox_core::NodeId;
use signalbox_proto::wire::PresenceMember;

use crate::conn::ConnKey;

/// A user who came or went, not yet told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UserChange {
    /// `by`: the local connection that brought them, which is not told (it knows).
    Added {
        user: String,
        info: Option<String>,
        by: Option<ConnKey>,
    },
    Removed {
        user: String,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Users {
    /// Connections per user here, and the user's info.
    local: HashMap<String, (u32, Option<String>)>,
    /// The same for each other node.
    remote: HashMap<NodeId, HashMap<String, (u32, Option<String>)>>,
    /// What the local members have not heard yet, in order.
    pub(crate) changes: Vec<UserChange>,
    /// Local connections that joined since the last flush, with how many changes there were
    /// then: a change from before a connection joined is not news to it (its join's answer
    /// listed the members).
    pub(crate) joined_at: HashMap<ConnKey, usize>,
}

impl Users {
    fn total(&self, user: &str) -> u32 {
        let here = self.local.get(user).map_or(0, |(n, _)| *n);
        here + self.remote.values().filter_map(|users| users.get(user)).map(|(n, _)| *n).sum::<u32>()
    }

    /// Distinct users, on every node.
    pub(crate) fn count(&self) -> u64 {
        let mut users: Vec<&String> = self.local.keys().chain(self.remote.values().flat_map(HashMap::keys)).collect();
        users.sort();
        users.dedup();
        users.len() as u64
    }

    /// Runs `change` on the counts, and records who came or went by it.
    fn counting(&mut self, user: &str, info: Option<&str>, by: Option<ConnKey>, change: impl FnOnce(&mut Self)) {
        let before = self.total(user);
        change(self);
        let after = self.total(user);
        if before == 0 && after > 0 {
            self.changes.push(UserChange::Added { user: user.to_owned(), info: info.map(str::to_owned), by });
        } else if before > 0 && after == 0 {
            self.changes.push(UserChange::Removed { user: user.to_owned() });
        }
    }

    pub(crate) fn local_joined(&mut self, user: &str, info: Option<&str>, by: ConnKey) {
        self.joined_at.insert(by, self.changes.len());
        self.counting(user, info, Some(by), |users| add(&mut users.local, user, info));
    }

    pub(crate) fn local_left(&mut self, user: &str) {
        self.counting(user, None, None, |users| remove(&mut users.local, user));
    }

    /// Another node's changes.
    pub(crate) fn remote_changed(&mut self, node: &NodeId, joined: &[PresenceMember], left: &[PresenceMember]) {
        for member in joined {
            let Some(user) = member.user.as_deref() else { continue };
            let info = member.info_json.as_deref();
            self.counting(user, info, None, |users| add(users.remote.entry(node.clone()).or_default(), user, info));
        }
        for member in left {
            let Some(user) = member.user.as_deref() else { continue };
            self.counting(user, None, None, |users| {
                if let Some(node_users) = users.remote.get_mut(node) {
                    remove(node_users, user);
                }
            });
        }
    }

    /// Everyone another node holds (its answer to a sync request).
    pub(crate) fn remote_replaced(&mut self, node: &NodeId, everyone: &[PresenceMember]) {
        let mut theirs: HashMap<String, (u32, Option<String>)> = HashMap::new();
        for member in everyone {
            if let Some(user) = member.user.as_deref() {
                add(&mut theirs, user, member.info_json.as_deref());
            }
        }
        let old: Vec<String> = self.remote.get(node).map(|users| users.keys().cloned().collect()).unwrap_or_default();
        let mut users: Vec<String> = old.into_iter().chain(theirs.keys().cloned()).collect();
        users.sort();
        users.dedup();
        for user in users {
            let now = theirs.get(&user).cloned();
            let info = now.as_ref().and_then(|(_, info)| info.clone());
            self.counting(&user, info.as_deref(), None, |users| {
                let node_users = users.remote.entry(node.clone()).or_default();
                match now {
                    Some(entry) => {
                        node_users.insert(user.clone(), entry);
                    }
                    None => {
                        node_users.remove(&user);
                    }
                }
            });
        }
    }

    /// A node stopped beating: its users no longer count.
    pub(crate) fn remote_gone(&mut self, node: &NodeId) {
        let Some(gone) = self.remote.get(node).map(|users| users.keys().cloned().collect::<Vec<_>>()) else { return };
        for user in gone {
            self.counting(&user, None, None, |users| {
                if let Some(node_users) = users.remote.get_mut(node) {
                    node_users.remove(&user);
                }
            });
        }
        self.remote.remove(node);
    }
}

fn add(users: &mut HashMap<String, (u32, Option<String>)>, user: &str, info: Option<&str>) {
    let entry = users.entry(user.to_owned()).or_insert((0, None));
    entry.0 += 1;
    if entry.1.is_none() {
        entry.1 = info.map(str::to_owned);
    }
}

fn remove(users: &mut HashMap<String, (u32, Option<String>)>, user: &str) {
    if let Some(entry) = users.get_mut(user) {
        entry.0 = entry.0.saturating_sub(1);
        if entry.0 == 0 {
            users.remove(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(user: &str) -> PresenceMember {
        PresenceMember { connection_id: format!("c-{user}"), user: Some(user.into()), info_json: None }
    }

    fn added(user: &str, by: Option<ConnKey>) -> UserChange {
        UserChange::Added { user: user.into(), info: None, by }
    }

    fn removed(user: &str) -> UserChange {
        UserChange::Removed { user: user.into() }
    }

    #[test]
    fn a_user_is_added_with_the_first_connection_and_removed_with_the_last_on_any_node() {
        let node = NodeId::new("edge1").unwrap();
        let mut users = Users::default();
        users.local_joined("ann", None, 1);
        users.local_joined("ann", None, 2);
        users.remote_changed(&node, &[member("ann"), member("bob")], &[]);
        assert_eq!(users.count(), 2);
        assert_eq!(std::mem::take(&mut users.changes), [added("ann", Some(1)), added("bob", None)]);
        users.local_left("ann");
        users.local_left("ann");
        assert!(users.changes.is_empty(), "ann is still on the other node");
        users.remote_changed(&node, &[], &[member("ann")]);
        assert_eq!(std::mem::take(&mut users.changes), [removed("ann")]);
        users.remote_gone(&node);
        assert_eq!(std::mem::take(&mut users.changes), [removed("bob")]);
        assert_eq!(users.count(), 0);
    }

    #[test]
    fn a_full_answer_replaces_what_a_node_was_thought_to_hold() {
        let node = NodeId::new("edge1").unwrap();
        let mut users = Users::default();
        users.remote_changed(&node, &[member("ann")], &[]);
        users.changes.clear();
        users.remote_replaced(&node, &[member("bob"), member("bob")]);
        assert_eq!(std::mem::take(&mut users.changes), [removed("ann"), added("bob", None)]);
        users.remote_changed(&node, &[], &[member("bob")]);
        assert!(users.changes.is_empty(), "bob has a second connection there");
    }
}

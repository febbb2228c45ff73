//! Who is in a group, summed up from the connections every node reported: members are users
//! (a user with three connections is one member); anonymous connections count only as
//! connections.

use std::collections::BTreeMap;

use crate::wire::PresenceEntry;

/// A group's presence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresenceSummary {
    /// Every connection, anonymous ones included.
    pub connections: usize,
    /// One per user, ordered by user id.
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    pub connections: usize,
    /// The `info` of one of the user's connections, as JSON.
    pub info_json: Option<String>,
}

impl PresenceSummary {
    pub fn from_entries(entries: &[PresenceEntry]) -> Self {
        let mut members: BTreeMap<&str, Member> = BTreeMap::new();
        for entry in entries {
            let Some(user) = entry.user.as_deref() else { continue };
            let member = members.entry(user).or_insert_with(|| Member {
                user_id: user.to_owned(),
                connections: 0,
                info_json: None,
            });
            member.connections += 1;
            if member.info_json.is_none() {
                member.info_json.clone_from(&entry.info_json);
            }
        }
        Self { connections: entries.len(), members: members.into_values().collect() }
    }

    /// Distinct users.
    pub fn count(&self) -> usize {
        self.members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(connection: &str, user: Option<&str>, info: Option<&str>) -> PresenceEntry {
        PresenceEntry {
            connection_id: connection.into(),
            user: user.map(Into::into),
            info_json: info.map(Into::into),
            group: None,
        }
    }

    #[test]
    fn users_are_members_and_anonymous_connections_only_count() {
        let summary = PresenceSummary::from_entries(&[
            entry("c1", Some("bob"), None),
            entry("c2", Some("alice"), Some(r#"{"n":1}"#)),
            entry("c3", None, None),
            entry("c4", Some("bob"), Some(r#"{"n":2}"#)),
        ]);
        assert_eq!((summary.count(), summary.connections), (2, 4));
        assert_eq!(summary.members[0].user_id, "alice");
        assert_eq!(summary.members[1].connections, 2);
        assert_eq!(summary.members[1].info_json.as_deref(), Some(r#"{"n":2}"#));
    }
}

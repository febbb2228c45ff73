//! What a client token lets its connection do: `action:pattern` strings such as
//! `join:room-*` or `publish:chat`. A pattern is matched against the whole group name;
//! `*` matches any run of characters (including none); every other character is literal.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::GroupName;

/// What a permission allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Join matching groups (and leave them again).
    Join,
    /// Leave matching groups, even ones the client may not join (e.g. added by the backend).
    Leave,
    /// Publish to matching groups.
    Publish,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Publish => "publish",
        }
    }
}

/// One `action:pattern` grant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Permission {
    pub action: Action,
    pattern: String,
}

/// A permission string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid permission {permission:?}: expected join:PATTERN, leave:PATTERN or publish:PATTERN")]
pub struct InvalidPermission {
    pub permission: String,
}

/// Longest pattern accepted, in characters: a group name's length (a longer pattern could
/// only match with `*`s standing for nothing).
pub const PATTERN_MAX_CHARS: usize = 128;

impl Permission {
    pub fn new(action: Action, pattern: impl Into<String>) -> Result<Self, InvalidPermission> {
        let pattern = pattern.into();
        if pattern.is_empty() || pattern.chars().count() > PATTERN_MAX_CHARS || pattern.chars().any(char::is_control) {
            return Err(InvalidPermission { permission: format!("{}:{pattern}", action.as_str()) });
        }
        Ok(Self { action, pattern })
    }

    pub fn parse(s: &str) -> Result<Self, InvalidPermission> {
        let invalid = || InvalidPermission { permission: s.to_owned() };
        let (action, pattern) = s.split_once(':').ok_or_else(invalid)?;
        let action = match action {
            "join" => Action::Join,
            "leave" => Action::Leave,
            "publish" => Action::Publish,
            _ => return Err(invalid()),
        };
        Self::new(action, pattern).map_err(|_| invalid())
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn matches(&self, group: &GroupName) -> bool {
        glob_match(self.pattern.as_bytes(), group.as_str().as_bytes())
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.action.as_str(), self.pattern)
    }
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The set of grants of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions(Vec<Permission>);

impl Permissions {
    pub fn new(grants: Vec<Permission>) -> Self {
        Self(grants)
    }

    /// Whether the connection may do `action` on `group`. Join implies leave.
    pub fn allows(&self, action: Action, group: &GroupName) -> bool {
        self.0.iter().any(|p| {
            let covers = p.action == action || (action == Action::Leave && p.action == Action::Join);
            covers && p.matches(group)
        })
    }

    pub fn grants(&self) -> &[Permission] {
        &self.0
    }
}

/// Matches `text` against `pattern` where `*` stands for any run of bytes. Iterative with
/// one backtrack point, so it runs in O(len(pattern) * len(text)) at worst — no
/// exponential blow-up on hostile patterns like `*a*a*a*a*b`.
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, matched)) = backtrack {
            p = star + 1;
            t = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(s: &str) -> GroupName {
        GroupName::new(s).expect("valid group")
    }

    #[test]
    fn glob_semantics() {
        assert!(glob_match(b"room-*", b"room-1"));
        assert!(glob_match(b"room-*", b"room-"));
        assert!(!glob_match(b"room-*", b"room"));
        assert!(glob_match(b"*", b"anything at all"));
        assert!(glob_match(b"a*c*e", b"abcde"));
        assert!(!glob_match(b"a*c*e", b"abcdf"));
        assert!(glob_match(b"exact", b"exact"));
        assert!(!glob_match(b"exact", b"exactly"));
        // Unicode is matched byte-wise, which is exact for whole characters.
        assert!(glob_match("zürich-*".as_bytes(), "zürich-1".as_bytes()));
        // Hostile pattern stays fast.
        let text = "a".repeat(500);
        assert!(!glob_match(b"*a*a*a*a*a*a*a*a*b", text.as_bytes()));
    }

    #[test]
    fn parse_and_allows() {
        let perms = Permissions::new(vec![
            Permission::parse("join:room-*").expect("valid"),
            Permission::parse("publish:room-1").expect("valid"),
            Permission::parse("leave:lobby").expect("valid"),
        ]);
        assert!(perms.allows(Action::Join, &group("room-7")));
        assert!(perms.allows(Action::Leave, &group("room-7")), "join implies leave");
        assert!(perms.allows(Action::Leave, &group("lobby")));
        assert!(!perms.allows(Action::Join, &group("lobby")));
        assert!(perms.allows(Action::Publish, &group("room-1")));
        assert!(!perms.allows(Action::Publish, &group("room-2")));
        assert!(!Permissions::default().allows(Action::Join, &group("x")));
    }

    #[test]
    fn bad_permissions_are_refused() {
        for bad in ["join", "join:", "jump:room", ":room", "join:a\nb"] {
            assert!(Permission::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Permission::parse("publish:a:b").expect("valid").pattern(), "a:b");
    }
}

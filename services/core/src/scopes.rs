//! What an app key may do. A key created without scopes gets all of them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One capability of an app key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Publish messages (broadcast, users, groups, connections).
    Publish,
    /// Add and remove connections and users to and from groups; close connections.
    Groups,
    /// Mint client tokens (and sign them: every key can sign, this scope gates the REST call).
    Tokens,
    /// Read connections and other state.
    Read,
}

impl KeyScope {
    pub const ALL: [Self; 4] = [Self::Publish, Self::Groups, Self::Tokens, Self::Read];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Groups => "groups",
            Self::Tokens => "tokens",
            Self::Read => "read",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// A set of scopes; stored as a comma-separated list.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyScopes(u8);

impl KeyScopes {
    pub fn all() -> Self {
        Self::from_iter(KeyScope::ALL)
    }

    pub fn contains(self, scope: KeyScope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = KeyScope> {
        KeyScope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Parses `publish,groups`; `None` if any entry is unknown.
    pub fn parse_list(s: &str) -> Option<Self> {
        if s.is_empty() {
            return Some(Self(0));
        }
        s.split(',').map(KeyScope::parse).collect::<Option<Vec<_>>>().map(Self::from_iter)
    }
}

impl FromIterator<KeyScope> for KeyScopes {
    fn from_iter<I: IntoIterator<Item = KeyScope>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, s| bits | s.bit()))
    }
}

impl fmt::Display for KeyScopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(KeyScope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for KeyScopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for KeyScopes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for KeyScopes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<KeyScope>::deserialize(deserializer)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_round_trip() {
        let scopes: KeyScopes = [KeyScope::Publish, KeyScope::Read].into_iter().collect();
        assert_eq!(scopes.to_string(), "publish,read");
        assert_eq!(KeyScopes::parse_list("publish,read"), Some(scopes));
        assert_eq!(KeyScopes::parse_list("publish,fly"), None);
        assert!(KeyScopes::all().contains(KeyScope::Tokens));
        assert!(!scopes.contains(KeyScope::Groups));
        assert_eq!(serde_json::to_value(scopes).expect("json"), serde_json::json!(["publish", "read"]));
    }
}

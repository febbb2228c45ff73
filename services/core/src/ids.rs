//! Identifiers and names, each validated once where it enters the system.
//!
//! Two families:
//! - **ids** that Signalbox generates (`AppId`, `TenantId`, `KeyId`, `NodeId`, `ConnectionId`):
//!   ASCII `[A-Za-z0-9_-]`, safe in URLs and NATS subjects as they are;
//! - **names** that tenants choose (`GroupName`, `UserId`, `EventName`): any Unicode text of
//!   1 to 128 characters (at most 512 bytes of UTF-8) without control characters. Dots,
//!   `*`, `>`, spaces and non-ASCII are all allowed: the routing plane encodes names before
//!   they reach a subject, so no name can inject subject tokens.
//!
//! `HubName` sits between the two: a SignalR hub, `[A-Za-z][A-Za-z0-9_]{0,127}`, compared
//! case-insensitively (stored lowercase), as Azure SignalR Service does.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};

/// Why a string was refused as an id or a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is too long: at most {max_chars} characters and {max_bytes} bytes")]
    TooLong { kind: &'static str, max_chars: usize, max_bytes: usize },
    #[error("{kind} contains a character that is not allowed ({rule})")]
    BadCharacter { kind: &'static str, rule: &'static str },
}

impl InvalidName {
    /// Which kind of name was refused (`"group name"`, `"user id"`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty { kind } | Self::TooLong { kind, .. } | Self::BadCharacter { kind, .. } => kind,
        }
    }
}

/// Maximum length of a tenant-chosen name, in characters.
pub const NAME_MAX_CHARS: usize = 128;
/// Maximum length of a tenant-chosen name, in bytes of UTF-8.
pub const NAME_MAX_BYTES: usize = 512;
/// Maximum length of a generated id.
pub const ID_MAX_LEN: usize = 64;
/// A name as a JSON Schema pattern: no control characters (Unicode category Cc).
pub const NAME_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$";

const ID_RULE: &str = "ASCII letters, digits, '_' and '-'";
const NAME_RULE: &str = "no control characters";
const HUB_RULE: &str = "an ASCII letter, then letters, digits or '_'";

fn check_id(kind: &'static str, s: &str) -> Result<(), InvalidName> {
    if s.is_empty() {
        return Err(InvalidName::Empty { kind });
    }
    if s.len() > ID_MAX_LEN {
        return Err(InvalidName::TooLong { kind, max_chars: ID_MAX_LEN, max_bytes: ID_MAX_LEN });
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(InvalidName::BadCharacter { kind, rule: ID_RULE });
    }
    Ok(())
}

fn check_name(kind: &'static str, s: &str) -> Result<(), InvalidName> {
    if s.is_empty() {
        return Err(InvalidName::Empty { kind });
    }
    // 128 characters are at most 512 bytes of UTF-8, so the byte bound needs no check of its own.
    if s.len() > NAME_MAX_BYTES || s.chars().count() > NAME_MAX_CHARS {
        return Err(InvalidName::TooLong { kind, max_chars: NAME_MAX_CHARS, max_bytes: NAME_MAX_BYTES });
    }
    if s.chars().any(char::is_control) {
        return Err(InvalidName::BadCharacter { kind, rule: NAME_RULE });
    }
    Ok(())
}

fn check_hub(s: &str) -> Result<(), InvalidName> {
    const KIND: &str = "hub name";
    if s.is_empty() {
        return Err(InvalidName::Empty { kind: KIND });
    }
    if s.len() > 128 {
        return Err(InvalidName::TooLong { kind: KIND, max_chars: 128, max_bytes: 128 });
    }
    let mut bytes = s.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(InvalidName::BadCharacter { kind: KIND, rule: HUB_RULE });
    }
    Ok(())
}

fn string_schema(description: &str, pattern: Option<&str>, max_length: usize) -> RefOr<Schema> {
    let mut builder = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .min_length(Some(1))
        .max_length(Some(max_length));
    if let Some(pattern) = pattern {
        builder = builder.pattern(Some(pattern));
    }
    RefOr::T(Schema::Object(builder.build()))
}

/// Declares a cheap-to-clone validated string newtype (`Arc<str>` inside).
macro_rules! validated_string {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $check:expr, $doc:literal, $pattern:expr, $max:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn new(s: impl AsRef<str>) -> Result<Self, InvalidName> {
                let s = s.as_ref();
                ($check)($kind, s)?;
                Ok(Self(Arc::from(s)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::new(&*s).map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string_schema($doc, $pattern, $max)
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

validated_string!(
    /// A tenant (customer account).
    TenantId, "tenant id", check_id, "Tenant id.", Some("^[A-Za-z0-9_-]+$"), ID_MAX_LEN
);
validated_string!(
    /// An app: the unit of isolation.
    AppId, "app id", check_id, "App id.", Some("^[A-Za-z0-9_-]+$"), ID_MAX_LEN
);
validated_string!(
    /// An app key's public id (the `kid` of the client tokens it signs).
    KeyId, "key id", check_id, "Key id.", Some("^[A-Za-z0-9_-]+$"), ID_MAX_LEN
);
validated_string!(
    /// One of an app's webhook endpoints.
    WebhookId, "webhook id", check_id, "Webhook id.", Some("^[A-Za-z0-9_-]+$"), ID_MAX_LEN
);
validated_string!(
    /// One edge process. Random per start; the prefix of every connection id it hands out.
    NodeId, "node id", check_id, "Edge node id.", Some("^[A-Za-z0-9_-]+$"), ID_MAX_LEN
);
validated_string!(
    /// One client session: `{node}_{random}`, so any node can route to it without a lookup.
    ConnectionId, "connection id", check_id, "Connection id.", Some("^[A-Za-z0-9_-]+$"), ID_MAX_LEN
);
validated_string!(
    /// A group of connections in an app (a room, a document, a ticker).
    GroupName, "group name", check_name,
    "Group name: 1-128 characters (at most 512 bytes of UTF-8), no control characters.", Some(NAME_PATTERN), NAME_MAX_CHARS
);
validated_string!(
    /// A user: every connection whose token carries this `sub`.
    UserId, "user id", check_name,
    "User id: 1-128 characters (at most 512 bytes of UTF-8), no control characters.", Some(NAME_PATTERN), NAME_MAX_CHARS
);
validated_string!(
    /// The name of a message's event.
    EventName, "event name", check_name,
    "Event name: 1-128 characters (at most 512 bytes of UTF-8), no control characters.", Some(NAME_PATTERN), NAME_MAX_CHARS
);

/// Lower-case alphabet for generated ids: no ambiguous characters, safe everywhere.
const ID_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Characters of a SignalR connection id.
const SIGNALR_ID_LEN: usize = 22;

/// `len` random characters of [`ID_ALPHABET`] (5 bits of entropy each).
pub fn random_token(len: usize) -> String {
    let bytes: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
    bytes.iter().map(|b| ID_ALPHABET[usize::from(b & 31)] as char).collect()
}

/// A fresh message id (`msg_` and 100 random bits).
pub fn message_id() -> String {
    format!("msg_{}", random_token(20))
}

/// A fresh webhook event id (`evt_` and 100 random bits): the CloudEvents `id`.
pub fn event_id() -> String {
    format!("evt_{}", random_token(20))
}

impl TenantId {
    pub fn generate() -> Self {
        Self(Arc::from(format!("tnt_{}", random_token(16))))
    }
}

impl AppId {
    pub fn generate() -> Self {
        Self(Arc::from(format!("app_{}", random_token(16))))
    }
}

impl KeyId {
    pub fn generate() -> Self {
        Self(Arc::from(format!("key_{}", random_token(16))))
    }
}

impl WebhookId {
    pub fn generate() -> Self {
        Self(Arc::from(format!("whk_{}", random_token(16))))
    }
}

impl NodeId {
    /// Node ids are 8 characters of the id alphabet, without `_`, so that a connection
    /// id's node is everything before its first `_`.
    pub fn generate() -> Self {
        Self(Arc::from(random_token(8)))
    }
}

impl ConnectionId {
    /// A fresh connection id on `node` (80 bits of randomness after the node).
    pub fn generate(node: &NodeId) -> Self {
        Self(Arc::from(format!("{node}_{}", random_token(16))))
    }

    /// A fresh SignalR connection id: 110 random bits and no node (whichever edge its
    /// transport reaches holds it, found through the connection's own subject).
    pub fn generate_signalr() -> Self {
        Self(Arc::from(random_token(SIGNALR_ID_LEN)))
    }

    /// Whether the id has the shape of a SignalR connection id.
    pub fn is_signalr(&self) -> bool {
        self.0.len() == SIGNALR_ID_LEN && self.0.bytes().all(|b| ID_ALPHABET.contains(&b))
    }

    /// Whether the id has the shape of a Pusher connection id (`{digits}-{digits}`, its socket
    /// id with a `-` for the `.`).
    pub fn is_pusher(&self) -> bool {
        self.0.split_once('-').is_some_and(|(a, b)| {
            [a, b].iter().all(|part| !part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit()))
        })
    }

    /// The node that holds this connection, if the id has the `{node}_{random}` shape.
    pub fn node(&self) -> Option<NodeId> {
        let (node, rest) = self.0.split_once('_')?;
        if rest.is_empty() {
            return None;
        }
        NodeId::new(node).ok()
    }
}

/// A SignalR hub: a namespace inside an app with its own users, groups and connections.
/// The native protocol and the `/v1` REST API use the default hub, [`HubName::native`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HubName(Arc<str>);

/// The token that stands for the native (default) hub. Not a valid SignalR hub name,
/// so the native namespace can never collide with a hub.
const NATIVE_HUB: &str = "_";

impl HubName {
    /// A SignalR hub name, compared case-insensitively.
    pub fn new(s: impl AsRef<str>) -> Result<Self, InvalidName> {
        let s = s.as_ref();
        check_hub(s)?;
        Ok(Self(Arc::from(s.to_ascii_lowercase())))
    }

    /// The hub of the native protocol and of `/v1`.
    pub fn native() -> Self {
        Self(Arc::from(NATIVE_HUB))
    }

    pub fn is_native(&self) -> bool {
        &*self.0 == NATIVE_HUB
    }

    /// Parses either a hub name or the native hub's token, as found in a subject.
    pub fn from_token(s: &str) -> Result<Self, InvalidName> {
        if s == NATIVE_HUB { Ok(Self::native()) } else { Self::new(s) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HubName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HubName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Where a connection lives: an app and a hub inside it. Nothing crosses scopes.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Scope {
    pub app: AppId,
    pub hub: HubName,
}

impl Scope {
    pub fn native(app: AppId) -> Self {
        Self { app, hub: HubName::native() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_only_the_safe_alphabet() {
        assert!(AppId::new("app_0123abc-XYZ").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "ü", &"a".repeat(65)] {
            assert!(AppId::new(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn names_allow_subject_metacharacters_and_unicode_but_not_controls() {
        for ok in ["room.1", "a*b", ">", "with space", "Zürich 🚀", &"x".repeat(128)] {
            assert!(GroupName::new(ok).is_ok(), "{ok:?} must be allowed");
        }
        assert_eq!(GroupName::new(""), Err(InvalidName::Empty { kind: "group name" }));
        assert!(matches!(GroupName::new("x".repeat(129)), Err(InvalidName::TooLong { .. })));
        // 128 characters of 4 bytes each is the longest name in bytes.
        assert!(GroupName::new("🚀".repeat(128)).is_ok());
        assert!(matches!(UserId::new("a\nb"), Err(InvalidName::BadCharacter { .. })));
        assert!(matches!(UserId::new("a\u{0}b"), Err(InvalidName::BadCharacter { .. })));
    }

    #[test]
    fn names_validate_when_deserialized() {
        assert!(serde_json::from_str::<GroupName>("\"room\"").is_ok());
        assert!(serde_json::from_str::<GroupName>("\"\"").is_err());
        assert!(serde_json::from_str::<GroupName>("42").is_err());
    }

    #[test]
    fn connection_ids_name_their_node() {
        let node = NodeId::generate();
        let conn = ConnectionId::generate(&node);
        assert_eq!(conn.node(), Some(node));
        assert_eq!(ConnectionId::new("nonode").expect("valid").node(), None);
        assert_eq!(ConnectionId::new("abc_").expect("valid").node(), None);
        let signalr = ConnectionId::generate_signalr();
        assert!(signalr.is_signalr() && signalr.node().is_none());
        assert!(!conn.is_signalr() && !ConnectionId::new("nonsense").expect("valid").is_signalr());
    }

    #[test]
    fn hubs_are_case_insensitive_and_distinct_from_native() {
        assert_eq!(HubName::new("Chat").expect("valid"), HubName::new("chat").expect("valid"));
        assert!(HubName::new("_").is_err());
        assert!(HubName::new("1chat").is_err());
        assert!(HubName::from_token("_").expect("native").is_native());
        assert!(!HubName::new("chat").expect("valid").is_native());
    }
}

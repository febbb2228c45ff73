//! The subject scheme of the routing plane.
//!
//! Every subject starts with a configurable root (default `sb`) and a one-letter class, and
//! carries the app:
//!
//! | subject | carries | subscribed by |
//! |---|---|---|
//! | `{root}.m.{app}.{hub}.all` | broadcasts to a hub | an edge while it holds a connection of that hub |
//! | `{root}.m.{app}.{hub}.g.{group}` | group messages | an edge while a local connection is in the group |
//! | `{root}.m.{app}.{hub}.u.{user}` | user messages and user control | an edge while it holds a connection of the user |
//! | `{root}.n.{node}.{app}` | connection messages, control, queries | that edge, always (`{root}.n.{node}.*`) |
//! | `{root}.s.{app}.{connection}` | a SignalR connection's messages, control and HTTP transport requests (its id names no node: whichever edge its transport reached holds it) | that edge, while it holds the connection |
//! | `{root}.a.{app}.{op}` | edge → api requests (keys, user groups) | every api node, as a queue group |
//! | `{root}.c.{app}` | config changes (key revoked, settings) | every edge and api node (`{root}.c.*`) |
//! | `{root}.h.{app}.{hub}.g.{group}` | group messages to store (history) | the app's history stream, which republishes each stored message on the group's `m` subject |
//! | `{root}.e.{node}` | a node's heartbeat | every api node and edge (`{root}.e.*`) |
//! | `{root}.r` | a roll call: every edge answers with its heartbeat at once | every edge |
//! | `{root}.w.{app}` | connection events for the app's webhooks | the event queue (a stream in a cluster) |
//!
//! Names (groups, users) are encoded into one token: `[A-Za-z0-9_-]` stays as it is and
//! every other byte becomes `~XX` (upper-case hex). The encoding is injective, so no name can
//! add a token, a wildcard or collide with another name.

use std::fmt;
use std::sync::Arc;

use signalbox_core::{AppId, ConnectionId, GroupName, HubName, InvalidName, NodeId, Scope, UserId};

/// A concrete NATS subject (or a subscription pattern with `*`/`>`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(Arc<str>);

impl Subject {
    /// Accepts any syntactically valid NATS subject or pattern: non-empty tokens, no
    /// whitespace, `>` only last. Used for subjects that arrive from the wire.
    pub fn new(s: &str) -> Result<Self, SubjectError> {
        let tokens: Vec<&str> = s.split('.').collect();
        let valid = !s.is_empty()
            && tokens.iter().all(|t| !t.is_empty() && !t.bytes().any(|b| b.is_ascii_whitespace()))
            && tokens.iter().rev().skip(1).all(|t| *t != ">");
        if valid { Ok(Self(Arc::from(s))) } else { Err(SubjectError::Unknown(s.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this (concrete) subject matches `pattern` under NATS wildcard rules.
    pub fn matches(&self, pattern: &Subject) -> bool {
        let mut tokens = self.0.split('.');
        let mut pattern_tokens = pattern.0.split('.');
        loop {
            match (pattern_tokens.next(), tokens.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(p), Some(t)) if p == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    pub fn is_pattern(&self) -> bool {
        self.0.split('.').any(|t| t == "*" || t == ">")
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// An api operation that edges request over the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiOp {
    /// Look up a key: its app, secret, state and the app's settings.
    Key,
    /// The groups a user was added to through the REST API.
    UserGroups,
    /// Who is in a group, gathered from every node.
    Presence,
    /// The app's `connect` webhook, asked before a connection opens.
    Connect,
    /// A client event, for the app's `event` webhook.
    ClientEvent,
}

impl ApiOp {
    pub const ALL: [Self; 5] = [Self::Key, Self::UserGroups, Self::Presence, Self::Connect, Self::ClientEvent];

    fn token(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::UserGroups => "user-groups",
            Self::Presence => "presence",
            Self::Connect => "connect",
            Self::ClientEvent => "event",
        }
    }
}

/// What a subject addresses, once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    All(Scope),
    Group(Scope, GroupName),
    User(Scope, UserId),
    Node(NodeId, AppId),
    /// A SignalR connection (node-less id).
    Connection(AppId, ConnectionId),
    Api(AppId, ApiOp),
    Config(AppId),
    Heartbeat(NodeId),
    RollCall,
    Events(AppId),
}

/// A subject that does not follow the scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("subject {0:?} is outside the scheme")]
    Unknown(String),
    #[error("subject {subject:?} has an invalid name: {source}")]
    InvalidName { subject: String, source: InvalidName },
    #[error("subject {0:?} has a malformed escape")]
    BadEscape(String),
}

/// Builds and parses subjects under one root.
#[derive(Debug, Clone)]
pub struct Subjects {
    root: Arc<str>,
}

impl Default for Subjects {
    fn default() -> Self {
        Self::new("sb")
    }
}

impl Subjects {
    /// `root` must be one or more plain tokens (`sb`, `prod.sb`); anything else is replaced
    /// by its encoding so it cannot add wildcards.
    pub fn new(root: &str) -> Self {
        let root: Vec<String> = root.split('.').map(encode_token).collect();
        Self { root: Arc::from(root.join(".")) }
    }

    fn make(&self, rest: fmt::Arguments<'_>) -> Subject {
        Subject(Arc::from(format!("{}.{rest}", self.root)))
    }

    pub fn all(&self, scope: &Scope) -> Subject {
        self.make(format_args!("m.{}.{}.all", scope.app, scope.hub))
    }

    pub fn group(&self, scope: &Scope, group: &GroupName) -> Subject {
        self.make(format_args!("m.{}.{}.g.{}", scope.app, scope.hub, encode_token(group.as_str())))
    }

    pub fn user(&self, scope: &Scope, user: &UserId) -> Subject {
        self.make(format_args!("m.{}.{}.u.{}", scope.app, scope.hub, encode_token(user.as_str())))
    }

    pub fn node(&self, node: &NodeId, app: &AppId) -> Subject {
        self.make(format_args!("n.{node}.{app}"))
    }

    /// A SignalR connection, wherever it is held.
    pub fn connection(&self, app: &AppId, connection: &ConnectionId) -> Subject {
        self.make(format_args!("s.{app}.{connection}"))
    }

    /// Everything addressed to one node, whatever the app.
    pub fn node_pattern(&self, node: &NodeId) -> Subject {
        self.make(format_args!("n.{node}.*"))
    }

    pub fn api(&self, app: &AppId, op: ApiOp) -> Subject {
        self.make(format_args!("a.{app}.{}", op.token()))
    }

    /// Every api request, for the api's queue group.
    pub fn api_pattern(&self) -> Subject {
        self.make(format_args!("a.*.*"))
    }

    pub fn config(&self, app: &AppId) -> Subject {
        self.make(format_args!("c.{app}"))
    }

    pub fn config_pattern(&self) -> Subject {
        self.make(format_args!("c.*"))
    }

    pub fn heartbeat(&self, node: &NodeId) -> Subject {
        self.make(format_args!("e.{node}"))
    }

    pub fn heartbeat_pattern(&self) -> Subject {
        self.make(format_args!("e.*"))
    }

    /// Asks every edge to send its heartbeat now (a starting api node learns the cluster).
    pub fn roll_call(&self) -> Subject {
        self.make(format_args!("r"))
    }

    /// Where an app's connection events for webhooks are queued.
    pub fn events(&self, app: &AppId) -> Subject {
        self.make(format_args!("w.{app}"))
    }

    /// Every app's connection events (the subjects of the event queue).
    pub fn events_pattern(&self) -> Subject {
        self.make(format_args!("w.*"))
    }

    /// Where a message to a group with history is stored.
    pub fn history(&self, scope: &Scope, group: &GroupName) -> Subject {
        self.make(format_args!("h.{}.{}.g.{}", scope.app, scope.hub, encode_token(group.as_str())))
    }

    /// Every history subject of an app (the subjects of its history stream).
    pub fn history_pattern(&self, app: &AppId) -> Subject {
        self.make(format_args!("h.{app}.>"))
    }

    /// Where an app's stored messages are republished: its live message subjects.
    pub fn live_pattern(&self, app: &AppId) -> Subject {
        self.make(format_args!("m.{app}.>"))
    }

    /// The live subject of a history subject (`…h.{app}…` → `…m.{app}…`).
    pub fn live_of_history(&self, history: &Subject) -> Option<Subject> {
        let rest = history.as_str().strip_prefix(&*self.root)?.strip_prefix(".h.")?;
        Some(Subject(Arc::from(format!("{}.m.{rest}", self.root))))
    }

    /// A name for per-deployment resources (streams, buckets): the root with dots replaced.
    pub fn resource_prefix(&self) -> String {
        self.root.replace('.', "_")
    }

    /// Parses a concrete subject back into what it addresses.
    pub fn parse(&self, subject: &str) -> Result<Route, SubjectError> {
        let unknown = || SubjectError::Unknown(subject.to_owned());
        let rest = subject.strip_prefix(&*self.root).and_then(|r| r.strip_prefix('.')).ok_or_else(unknown)?;
        let tokens: Vec<&str> = rest.split('.').collect();
        let invalid = |source: InvalidName| SubjectError::InvalidName { subject: subject.to_owned(), source };
        let app = |s: &str| AppId::new(s).map_err(invalid);
        let scope = |a: &str, h: &str| -> Result<Scope, SubjectError> {
            Ok(Scope { app: app(a)?, hub: HubName::from_token(h).map_err(invalid)? })
        };
        let name = |s: &str| decode_token(s).ok_or_else(|| SubjectError::BadEscape(subject.to_owned()));
        match tokens.as_slice() {
            ["m", a, h, "all"] => Ok(Route::All(scope(a, h)?)),
            ["m", a, h, "g", g] => Ok(Route::Group(scope(a, h)?, GroupName::new(name(g)?).map_err(invalid)?)),
            ["m", a, h, "u", u] => Ok(Route::User(scope(a, h)?, UserId::new(name(u)?).map_err(invalid)?)),
            ["n", n, a] => Ok(Route::Node(NodeId::new(n).map_err(invalid)?, app(a)?)),
            ["s", a, c] => Ok(Route::Connection(app(a)?, ConnectionId::new(c).map_err(invalid)?)),
            ["a", a, op] => {
                let op = ApiOp::ALL.into_iter().find(|o| o.token() == *op).ok_or_else(unknown)?;
                Ok(Route::Api(app(a)?, op))
            }
            ["c", a] => Ok(Route::Config(app(a)?)),
            ["e", n] => Ok(Route::Heartbeat(NodeId::new(n).map_err(invalid)?)),
            ["r"] => Ok(Route::RollCall),
            ["w", a] => Ok(Route::Events(app(a)?)),
            _ => Err(unknown()),
        }
    }
}

/// Encodes a name into one subject token (see the module docs).
pub fn encode_token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push('~');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Reverses [`encode_token`]; `None` if the token is not a valid encoding.
pub fn decode_token(token: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(token.len());
    let mut input = token.bytes();
    while let Some(b) = input.next() {
        match b {
            b'~' => {
                let hi = hex_value(input.next()?)?;
                let lo = hex_value(input.next()?)?;
                let decoded = hi << 4 | lo;
                // A byte that would have passed through was never escaped: reject, so that
                // every name has exactly one encoding.
                if decoded.is_ascii_alphanumeric() || decoded == b'_' || decoded == b'-' {
                    return None;
                }
                bytes.push(decoded);
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => bytes.push(b),
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::native(AppId::new("app_1").expect("valid"))
    }

    #[test]
    fn hostile_names_stay_in_one_token_and_round_trip() {
        let subjects = Subjects::default();
        for raw in ["room-1", "a.b", "*", ">", "a b", "Zürich 🚀", "~7E", "x.*.>", &"é".repeat(128)] {
            let group = GroupName::new(raw).expect("valid name");
            let subject = subjects.group(&scope(), &group);
            let tokens: Vec<&str> = subject.as_str().split('.').collect();
            assert_eq!(tokens.len(), 6, "{subject}");
            assert!(!subject.is_pattern(), "{subject}");
            assert!(!subject.as_str().contains(' '));
            assert_eq!(subjects.parse(subject.as_str()), Ok(Route::Group(scope(), group)));
        }
    }

    #[test]
    fn encoding_is_injective() {
        assert_ne!(encode_token("a.b"), encode_token("a~2Eb"));
        assert_eq!(decode_token("a~2Eb").as_deref(), Some("a.b"));
        assert_eq!(decode_token("~61"), None, "escaped pass-through byte");
        assert_eq!(decode_token("~2"), None);
        assert_eq!(decode_token("~zz"), None);
        assert_eq!(decode_token("a.b"), None);
        assert_eq!(decode_token("~FF"), None, "not UTF-8");
    }

    #[test]
    fn every_subject_parses_back() {
        let s = Subjects::new("test");
        let app = AppId::new("app_1").expect("valid");
        let node = NodeId::new("node0001").expect("valid");
        let user = UserId::new("bob@example.com").expect("valid");
        let hub = Scope { app: app.clone(), hub: HubName::new("Chat").expect("valid") };
        assert_eq!(s.parse(s.all(&hub).as_str()), Ok(Route::All(hub.clone())));
        assert_eq!(s.parse(s.user(&hub, &user).as_str()), Ok(Route::User(hub.clone(), user)));
        assert_eq!(s.parse(s.node(&node, &app).as_str()), Ok(Route::Node(node.clone(), app.clone())));
        assert_eq!(s.parse(s.api(&app, ApiOp::Key).as_str()), Ok(Route::Api(app.clone(), ApiOp::Key)));
        assert_eq!(s.parse(s.config(&app).as_str()), Ok(Route::Config(app.clone())));
        let signalr = ConnectionId::new("abcdefghjkmnpqrstvwxyz").expect("valid");
        assert_eq!(s.parse(s.connection(&app, &signalr).as_str()), Ok(Route::Connection(app.clone(), signalr)));
        for op in ApiOp::ALL {
            assert_eq!(s.parse(s.api(&app, op).as_str()), Ok(Route::Api(app.clone(), op)));
        }
        assert_eq!(s.parse(s.heartbeat(&node).as_str()), Ok(Route::Heartbeat(node.clone())));
        assert!(s.heartbeat(&node).matches(&s.heartbeat_pattern()));
        assert_eq!(s.parse(s.roll_call().as_str()), Ok(Route::RollCall));
        assert_eq!(s.parse(s.events(&app).as_str()), Ok(Route::Events(app.clone())));
        assert!(s.events(&app).matches(&s.events_pattern()));
        assert!(s.node(&node, &app).matches(&s.node_pattern(&node)));
        assert!(s.config(&app).matches(&s.config_pattern()));
        assert!(!s.config(&app).matches(&s.node_pattern(&node)));
        let group = GroupName::new("a.b").expect("valid");
        let history = s.history(&hub, &group);
        assert!(history.matches(&s.history_pattern(&app)));
        assert_eq!(s.live_of_history(&history), Some(s.group(&hub, &group)));
        assert!(s.group(&hub, &group).matches(&s.live_pattern(&app)));
        assert_eq!(Subjects::new("prod.sb").resource_prefix(), "prod_sb");
        for bad in
            ["", "test", "other.m.app_1._.all", "test.m.app_1._.nope", "test.m.a.b.c.d.e", "test.m.app_1._.g.~ZZ"]
        {
            assert!(s.parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wire_subjects_are_checked() {
        assert!(Subject::new("a.b.>").is_ok());
        for bad in ["", "a..b", "a. b", "a.>.b", "."] {
            assert!(Subject::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wildcard_matching() {
        let subject = |s: &str| Subject(Arc::from(s));
        assert!(subject("a.b.c").matches(&subject("a.>")));
        assert!(subject("a.b.c").matches(&subject("a.*.c")));
        assert!(!subject("a.b").matches(&subject("a.*.c")));
        assert!(!subject("a").matches(&subject("a.>")));
        assert!(subject("a.b").matches(&subject("a.b")));
    }
}

//! Per-app settings: what a tenant may tune, with the defaults an app starts with and the
//! hard caps no setting may exceed (so that one app can never take a node down).
//!
//! Settings are stored and exchanged as JSON. A `PATCH` is a JSON merge patch (RFC 7396)
//! applied to the current settings and then validated as a whole, so new settings added
//! later need no new patch code.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Everything an app can tune.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AppSettings {
    pub limits: Limits,
    pub history: HistorySettings,
    pub presence: PresenceSettings,
    pub webhooks: WebhookSettings,
    pub pusher: PusherSettings,
}

/// How the members of one group hear of each other (see [`AppSettings::presence_mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PresenceMode {
    #[default]
    Off,
    /// Batched lists of the connections that joined and left, and the count.
    Connections,
    /// The number of connections, when it changes.
    Count,
    /// Users: one is added with their first connection and removed with their last, across
    /// every edge (Pusher's presence channels).
    Users,
}

impl AppSettings {
    /// How a group's members hear of each other: as `presence.events` says, except that with
    /// Pusher on, a group named `presence-…` is a Pusher presence channel, whose members are
    /// users.
    pub fn presence_mode(&self, group: &crate::GroupName) -> PresenceMode {
        if self.pusher.enabled && group.as_str().starts_with(crate::pusher::PRESENCE_PREFIX) {
            return PresenceMode::Users;
        }
        match self.presence.events {
            PresenceEvents::Off => PresenceMode::Off,
            PresenceEvents::Members => PresenceMode::Connections,
            PresenceEvents::Count => PresenceMode::Count,
        }
    }
}

/// Pusher Channels clients and server libraries (docs/pusher.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PusherSettings {
    /// Accept Pusher clients at `/app/{key}`. Off by default: in Pusher's model the key is
    /// public and every group not named `private-…` or `presence-…` is a public channel any
    /// holder of the key may subscribe to.
    pub enabled: bool,
    /// Pusher clients may send client events (`client-…`) on the private channels they are in.
    #[schema(default = true)]
    pub client_events: bool,
}

impl Default for PusherSettings {
    fn default() -> Self {
        Self { enabled: false, client_events: true }
    }
}

/// What group members hear when others join or leave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceSettings {
    /// `off` (default): nothing; `members`: batched `joined`/`left` lists (and the count);
    /// `count`: only the number of connections in the group, when it changes.
    pub events: PresenceEvents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum PresenceEvents {
    #[default]
    Off,
    Members,
    Count,
}

/// How the app's webhooks are called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// How long a connect waits for the `connect` webhook, in milliseconds.
    #[schema(default = 5000, minimum = 1, maximum = 30000)]
    pub connect_timeout_ms: u32,
    /// What a connect does when the `connect` webhook fails or times out: `reject` (the
    /// client is closed with 4103 and retries) or `accept` (it connects as its token says).
    pub connect_failure: ConnectFailure,
    /// How long a client event waits for the `event` webhook's answer, in milliseconds.
    #[schema(default = 10000, minimum = 1, maximum = 30000)]
    pub event_timeout_ms: u32,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self { connect_timeout_ms: 5000, connect_failure: ConnectFailure::Reject, event_timeout_ms: 10_000 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConnectFailure {
    #[default]
    Reject,
    Accept,
}

/// Which groups keep history, and for how long. Messages to those groups are stored before
/// they are delivered, carry a position, and can be recovered by a client that reconnects
/// within the retention window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HistorySettings {
    /// Group name patterns (`*` matches any run of characters), such as `room-*`. None by default.
    #[schema(schema_with = history_patterns_schema)]
    pub groups: Vec<String>,
    /// How long a message is kept, in seconds.
    #[schema(default = 300, minimum = 1, maximum = 604800)]
    pub max_age_seconds: u32,
    /// How many messages are kept per group (the oldest go first).
    #[schema(default = 1000, minimum = 1, maximum = 100000)]
    pub max_messages: u32,
}

/// `history.groups`: at most 100 patterns of 1-128 characters without control characters.
fn history_patterns_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let pattern = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(crate::permission::PATTERN_MAX_CHARS))
        .pattern(Some(crate::ids::NAME_PATTERN));
    ArrayBuilder::new()
        .items(pattern)
        .max_items(Some(caps::HISTORY_PATTERNS))
        .description(Some("Group name patterns (`*` matches any run of characters), such as `room-*`."))
        .build()
}

impl Default for HistorySettings {
    fn default() -> Self {
        Self { groups: Vec::new(), max_age_seconds: 300, max_messages: 1000 }
    }
}

impl HistorySettings {
    /// Whether messages to `group` are kept.
    pub fn keeps(&self, group: &crate::GroupName) -> bool {
        self.groups.iter().any(|pattern| crate::permission::glob_match(pattern.as_bytes(), group.as_str().as_bytes()))
    }

    pub fn is_enabled(&self) -> bool {
        !self.groups.is_empty()
    }
}

/// Resource limits of one app. Exceeding one gets a documented error reply or close code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Concurrent client connections of the app on one edge node.
    #[schema(default = 10000, minimum = 1, maximum = 1000000)]
    pub max_connections: u32,
    /// Largest message payload accepted, from REST or from a client, in bytes.
    #[schema(default = 65536, minimum = 1, maximum = 1048576)]
    pub max_message_bytes: u32,
    /// Groups one connection may be in at once.
    #[schema(default = 100, minimum = 1, maximum = 1000)]
    pub max_groups_per_connection: u32,
    /// Messages per second one client connection may publish (sustained rate).
    #[schema(default = 20, minimum = 1, maximum = 10000)]
    pub client_publish_rate: u32,
    /// Messages a client may publish in a burst above the sustained rate.
    #[schema(default = 40, minimum = 1, maximum = 10000)]
    pub client_publish_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_message_bytes: 64 * 1024,
            max_groups_per_connection: 100,
            client_publish_rate: 20,
            client_publish_burst: 40,
        }
    }
}

/// The hard caps: no setting may go above these.
pub mod caps {
    pub const MAX_CONNECTIONS: u32 = 1_000_000;
    pub const MAX_MESSAGE_BYTES: u32 = 1024 * 1024;
    pub const MAX_GROUPS_PER_CONNECTION: u32 = 1_000;
    pub const CLIENT_PUBLISH_RATE: u32 = 10_000;
    pub const CLIENT_PUBLISH_BURST: u32 = 10_000;
    pub const HISTORY_MAX_AGE_SECONDS: u32 = 7 * 24 * 3600;
    pub const HISTORY_MAX_MESSAGES: u32 = 100_000;
    pub const HISTORY_PATTERNS: usize = 100;
    pub const WEBHOOK_TIMEOUT_MS: u32 = 30_000;
}

/// A setting out of its allowed range, or settings that do not parse.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{field} must be between {min} and {max}")]
    OutOfRange { field: &'static str, min: u64, max: u64 },
    #[error("settings are not valid: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("history.groups: a pattern must be 1-128 characters without control characters")]
    InvalidPattern,
}

impl AppSettings {
    /// Checks every value against its cap.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let l = &self.limits;
        check("limits.max_connections", l.max_connections, caps::MAX_CONNECTIONS)?;
        check("limits.max_message_bytes", l.max_message_bytes, caps::MAX_MESSAGE_BYTES)?;
        check("limits.max_groups_per_connection", l.max_groups_per_connection, caps::MAX_GROUPS_PER_CONNECTION)?;
        check("limits.client_publish_rate", l.client_publish_rate, caps::CLIENT_PUBLISH_RATE)?;
        check("limits.client_publish_burst", l.client_publish_burst, caps::CLIENT_PUBLISH_BURST)?;
        let h = &self.history;
        check("history.max_age_seconds", h.max_age_seconds, caps::HISTORY_MAX_AGE_SECONDS)?;
        check("history.max_messages", h.max_messages, caps::HISTORY_MAX_MESSAGES)?;
        if h.groups.len() > caps::HISTORY_PATTERNS {
            return Err(SettingsError::OutOfRange {
                field: "history.groups",
                min: 0,
                max: caps::HISTORY_PATTERNS as u64,
            });
        }
        if h.groups.iter().any(|p| {
            p.is_empty() || p.chars().count() > crate::permission::PATTERN_MAX_CHARS || p.chars().any(char::is_control)
        }) {
            return Err(SettingsError::InvalidPattern);
        }
        let w = &self.webhooks;
        check("webhooks.connect_timeout_ms", w.connect_timeout_ms, caps::WEBHOOK_TIMEOUT_MS)?;
        check("webhooks.event_timeout_ms", w.event_timeout_ms, caps::WEBHOOK_TIMEOUT_MS)?;
        Ok(())
    }

    /// Parses and validates settings from JSON (missing fields take their defaults).
    pub fn from_json(mut value: serde_json::Value) -> Result<Self, SettingsError> {
        whole_numbers(&mut value);
        let settings: Self = serde_json::from_value(value)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Applies a JSON merge patch (RFC 7396) and validates the result.
    pub fn merge_patch(&self, patch: &serde_json::Value) -> Result<Self, SettingsError> {
        let mut current = serde_json::to_value(self)?;
        merge(&mut current, patch);
        Self::from_json(current)
    }
}

/// JSON Schema counts `5.0` as an integer: so do settings (every number in them is one).
fn whole_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0 && (0.0..=9.0e15).contains(f)) {
                *value = Value::from(f as u64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

fn check(field: &'static str, value: u32, max: u32) -> Result<(), SettingsError> {
    if value == 0 || value > max {
        return Err(SettingsError::OutOfRange { field, min: 1, max: u64::from(max) });
    }
    Ok(())
}

/// RFC 7396: objects merge key by key, `null` removes, anything else replaces.
fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(fields) = target {
        for (key, value) in patch_fields {
            if value.is_null() {
                fields.remove(key);
            } else {
                merge(fields.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let s = AppSettings::default();
        s.validate().expect("defaults are valid");
        assert_eq!(s.limits.max_message_bytes, 65536);
    }

    #[test]
    fn merge_patch_changes_only_what_it_names() {
        let s = AppSettings::default();
        let patched = s.merge_patch(&json!({"limits": {"max_connections": 5}})).expect("valid");
        assert_eq!(patched.limits.max_connections, 5);
        assert_eq!(patched.limits.max_message_bytes, 65536);
        // null resets to the default
        let reset = patched.merge_patch(&json!({"limits": {"max_connections": null}})).expect("valid");
        assert_eq!(reset.limits.max_connections, 10_000);
    }

    #[test]
    fn history_patterns_choose_groups() {
        let s =
            AppSettings::default().merge_patch(&json!({"history": {"groups": ["room-*", "exact"]}})).expect("valid");
        let g = |n: &str| crate::GroupName::new(n).expect("group");
        assert!(s.history.keeps(&g("room-1")) && s.history.keeps(&g("exact")));
        assert!(!s.history.keeps(&g("lobby")) && !s.history.keeps(&g("exactly")));
        assert!(!AppSettings::default().history.is_enabled());
        assert!(matches!(
            AppSettings::default().merge_patch(&json!({"history": {"groups": [""]}})),
            Err(SettingsError::InvalidPattern)
        ));
        assert!(matches!(
            AppSettings::default().merge_patch(&json!({"history": {"max_age_seconds": 0}})),
            Err(SettingsError::OutOfRange { .. })
        ));
    }

    #[test]
    fn whole_numbers_written_as_decimals_count() {
        let s = AppSettings::default().merge_patch(&json!({"limits": {"max_connections": 5.0}})).expect("5.0 is 5");
        assert_eq!(s.limits.max_connections, 5);
        assert!(AppSettings::default().merge_patch(&json!({"limits": {"max_connections": 5.5}})).is_err());
    }

    #[test]
    fn caps_and_unknown_fields_are_refused() {
        let s = AppSettings::default();
        assert!(matches!(
            s.merge_patch(&json!({"limits": {"max_message_bytes": 2_000_000}})),
            Err(SettingsError::OutOfRange { field: "limits.max_message_bytes", .. })
        ));
        assert!(matches!(
            s.merge_patch(&json!({"limits": {"max_connections": 0}})),
            Err(SettingsError::OutOfRange { .. })
        ));
        assert!(matches!(s.merge_patch(&json!({"bogus": 1})), Err(SettingsError::Malformed(_))));
        assert!(matches!(
            s.merge_patch(&json!({"limits": {"max_connections": "many"}})),
            Err(SettingsError::Malformed(_))
        ));
        assert!(matches!(s.merge_patch(&json!({"limits": {"max_connections": -1}})), Err(SettingsError::Malformed(_))));
    }

    #[test]
    fn presence_and_webhook_settings_parse_and_are_checked() {
        let s = AppSettings::default()
            .merge_patch(&json!({"presence": {"events": "count"}, "webhooks": {"connect_failure": "accept"}}))
            .expect("valid");
        assert_eq!(s.presence.events, PresenceEvents::Count);
        assert_eq!(s.webhooks.connect_failure, ConnectFailure::Accept);
        assert_eq!(s.webhooks.connect_timeout_ms, 5000);
        assert!(AppSettings::default().merge_patch(&json!({"presence": {"events": "loud"}})).is_err());
        assert!(AppSettings::default().merge_patch(&json!({"webhooks": {"connect_timeout_ms": 60000}})).is_err());
    }
}

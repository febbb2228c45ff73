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
}

/// A setting out of its allowed range, or settings that do not parse.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{field} must be between {min} and {max}")]
    OutOfRange { field: &'static str, min: u64, max: u64 },
    #[error("settings are not valid: {0}")]
    Malformed(#[from] serde_json::Error),
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
        Ok(())
    }

    /// Parses and validates settings from JSON (missing fields take their defaults).
    pub fn from_json(value: serde_json::Value) -> Result<Self, SettingsError> {
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
}

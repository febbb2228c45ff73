//! The events an app's webhooks can ask for.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One kind of webhook event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    /// Before a connection is accepted (blocking): may reject it, or set its user, groups and
    /// permissions.
    Connect,
    /// A connection opened (queued, retried).
    Connected,
    /// A connection closed, with the reason (queued, retried).
    Disconnected,
    /// A client event (blocking): the webhook's answer is the client's reply.
    Event,
}

impl WebhookEvent {
    pub const ALL: [Self; 4] = [Self::Connect, Self::Connected, Self::Disconnected, Self::Event];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::Event => "event",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The CloudEvents `type` of a delivery of this event.
    pub fn cloud_event_type(self) -> &'static str {
        match self {
            Self::Connect => "signalbox.connect",
            Self::Connected => "signalbox.connected",
            Self::Disconnected => "signalbox.disconnected",
            Self::Event => "signalbox.event",
        }
    }

    /// Whether the caller waits for the webhook's answer (no queue, no retries).
    pub fn is_blocking(self) -> bool {
        matches!(self, Self::Connect | Self::Event)
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of webhook events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WebhookEvents(u8);

impl WebhookEvents {
    pub fn contains(self, event: WebhookEvent) -> bool {
        self.0 & (1 << event as u8) != 0
    }

    pub fn insert(&mut self, event: WebhookEvent) {
        self.0 |= 1 << event as u8;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = WebhookEvent> {
        WebhookEvent::ALL.into_iter().filter(move |e| self.contains(*e))
    }

    /// Parses names; `None` if one is unknown.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut set = Self::default();
        for name in names {
            set.insert(WebhookEvent::parse(name)?);
        }
        Some(set)
    }

    /// Comma-separated names (the stored form).
    pub fn to_list(self) -> String {
        self.iter().map(WebhookEvent::as_str).collect::<Vec<_>>().join(",")
    }
}

impl FromIterator<WebhookEvent> for WebhookEvents {
    fn from_iter<I: IntoIterator<Item = WebhookEvent>>(iter: I) -> Self {
        let mut set = Self::default();
        for event in iter {
            set.insert(event);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_round_trip_through_their_list() {
        let set = WebhookEvents::parse(["disconnected", "connect"]).expect("known");
        assert!(set.contains(WebhookEvent::Connect) && !set.contains(WebhookEvent::Event));
        assert_eq!(set.to_list(), "connect,disconnected");
        assert_eq!(WebhookEvents::parse(set.to_list().split(',')), Some(set));
        assert_eq!(WebhookEvents::parse(["shutdown"]), None);
        assert!(WebhookEvents::default().is_empty());
    }
}

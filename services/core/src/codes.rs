//! The one table of client-visible codes: WebSocket close codes and protocol error codes,
//! each with what the client should do about it. `docs/protocol.md` renders this table;
//! a test there keeps the two in step.
//!
//! Close-code ranges follow one rule so a client that does not know a specific code still
//! does the right thing: 4000–4099 give up, 4100–4199 retry with backoff, 4200–4299
//! reconnect at once, 4400–4499 get a new token first.

use serde::{Deserialize, Serialize};

/// What a client should do after an error or a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAction {
    /// Reconnect (or resend) after an exponential backoff with jitter.
    Retry,
    /// Reconnect at once, preferably to another node.
    ReconnectNow,
    /// Fetch a new token, then reconnect.
    Reauthenticate,
    /// Do not retry: the request or the connection cannot succeed as it is.
    GiveUp,
}

/// Why the server closed a WebSocket. Values are stable: they are part of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// The client or the server ended the session normally.
    Normal = 1000,
    /// The node is shutting down; reconnect elsewhere.
    GoingAway = 1001,
    /// The client broke the WebSocket protocol (unmasked or malformed frame, bad opcode).
    ProtocolError = 1002,
    /// A binary frame on a text-only protocol.
    UnsupportedData = 1003,
    /// A text frame that is not valid UTF-8.
    InvalidPayload = 1007,
    /// A frame or message over the size limit.
    MessageTooBig = 1009,
    /// An unexpected server error.
    InternalError = 1011,
    /// The server cannot serve the connection right now (e.g. the routing plane is down).
    TryAgainLater = 1013,
    /// Closed by the tenant's backend through the REST API.
    ClosedByBackend = 4000,
    /// The app was deleted.
    AppDeleted = 4001,
    /// The client sent malformed frames repeatedly; the connection is not worth keeping.
    TooManyErrors = 4002,
    /// The app's `connect` webhook refused the connection.
    ConnectRejected = 4003,
    /// The connection would start in more groups than the app's `max_groups_per_connection`
    /// (its token, the `connect` webhook's answer and the user's groups together).
    TooManyGroups = 4004,
    /// The outbound queue overflowed: the client reads too slowly.
    SlowConsumer = 4100,
    /// No frame (not even a pong) arrived within the idle timeout.
    HeartbeatTimeout = 4101,
    /// The app has reached its connection limit.
    ConnectionLimit = 4102,
    /// The app's `connect` webhook failed or did not answer in time (and the app rejects
    /// connections when it does).
    ConnectWebhookFailed = 4103,
    /// The node is draining: reconnect at once, to another node.
    Reconnect = 4200,
    /// The token is missing, malformed, wrongly signed, or for another app.
    InvalidToken = 4401,
    /// The token has expired.
    TokenExpired = 4402,
    /// The key that signed the token was revoked.
    KeyRevoked = 4403,
}

impl CloseCode {
    pub const ALL: [Self; 21] = [
        Self::Normal,
        Self::GoingAway,
        Self::ProtocolError,
        Self::UnsupportedData,
        Self::InvalidPayload,
        Self::MessageTooBig,
        Self::InternalError,
        Self::TryAgainLater,
        Self::ClosedByBackend,
        Self::AppDeleted,
        Self::TooManyErrors,
        Self::ConnectRejected,
        Self::TooManyGroups,
        Self::SlowConsumer,
        Self::HeartbeatTimeout,
        Self::ConnectionLimit,
        Self::ConnectWebhookFailed,
        Self::Reconnect,
        Self::InvalidToken,
        Self::TokenExpired,
        Self::KeyRevoked,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn action(self) -> ClientAction {
        match self {
            Self::Normal
            | Self::ProtocolError
            | Self::UnsupportedData
            | Self::InvalidPayload
            | Self::MessageTooBig
            | Self::ClosedByBackend
            | Self::AppDeleted
            | Self::TooManyErrors
            | Self::ConnectRejected
            | Self::TooManyGroups => ClientAction::GiveUp,
            Self::GoingAway | Self::Reconnect => ClientAction::ReconnectNow,
            Self::InternalError
            | Self::TryAgainLater
            | Self::SlowConsumer
            | Self::HeartbeatTimeout
            | Self::ConnectionLimit
            | Self::ConnectWebhookFailed => ClientAction::Retry,
            Self::InvalidToken | Self::TokenExpired | Self::KeyRevoked => ClientAction::Reauthenticate,
        }
    }

    /// A short reason, sent as the close frame's reason when no better one is known.
    pub fn default_reason(self) -> &'static str {
        match self {
            Self::Normal => "normal closure",
            Self::GoingAway => "server shutting down",
            Self::ProtocolError => "websocket protocol error",
            Self::UnsupportedData => "binary frames are not supported by this protocol",
            Self::InvalidPayload => "text frame is not valid UTF-8",
            Self::MessageTooBig => "frame exceeds the size limit",
            Self::InternalError => "internal error",
            Self::TryAgainLater => "service temporarily unavailable",
            Self::ClosedByBackend => "closed by the application's backend",
            Self::AppDeleted => "the app was deleted",
            Self::TooManyErrors => "too many malformed frames",
            Self::ConnectRejected => "rejected by the application",
            Self::TooManyGroups => "more groups than the app allows per connection",
            Self::SlowConsumer => "client is not reading fast enough",
            Self::HeartbeatTimeout => "no heartbeat received",
            Self::ConnectionLimit => "the app's connection limit is reached",
            Self::ConnectWebhookFailed => "the application's connect webhook is unavailable",
            Self::Reconnect => "node is draining; reconnect",
            Self::InvalidToken => "invalid token",
            Self::TokenExpired => "token expired",
            Self::KeyRevoked => "key revoked",
        }
    }
}

/// A machine-readable error in a reply frame (and the `code` of REST problems).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON, or a field is missing or of the wrong type, or its
    /// `data` nests deeper than 64 levels or holds a number with no finite value.
    BadRequest,
    /// The frame's `type` is not one this protocol knows.
    UnknownType,
    /// A group, user or event name breaks the naming rules.
    InvalidName,
    /// The token does not permit this.
    Forbidden,
    /// The message is larger than the app's `max_message_bytes`.
    MessageTooLarge,
    /// The connection is already in `max_groups_per_connection` groups.
    TooManyGroups,
    /// Published faster than the app's `client_publish_rate`.
    RateLimited,
    /// The routing plane cannot take the request right now.
    Unavailable,
    /// An unexpected server error.
    Internal,
    /// No webhook of the app handles client events.
    NoUpstream,
    /// The app's webhook failed, timed out or answered with an error.
    UpstreamFailed,
}

impl ErrorCode {
    pub const ALL: [Self; 11] = [
        Self::BadRequest,
        Self::UnknownType,
        Self::InvalidName,
        Self::Forbidden,
        Self::MessageTooLarge,
        Self::TooManyGroups,
        Self::RateLimited,
        Self::Unavailable,
        Self::Internal,
        Self::NoUpstream,
        Self::UpstreamFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::UnknownType => "unknown_type",
            Self::InvalidName => "invalid_name",
            Self::Forbidden => "forbidden",
            Self::MessageTooLarge => "message_too_large",
            Self::TooManyGroups => "too_many_groups",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::NoUpstream => "no_upstream",
            Self::UpstreamFailed => "upstream_failed",
        }
    }

    pub fn action(self) -> ClientAction {
        match self {
            Self::RateLimited | Self::Unavailable | Self::Internal | Self::UpstreamFailed => ClientAction::Retry,
            _ => ClientAction::GiveUp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_ranges_match_their_action() {
        for code in CloseCode::ALL {
            let expected = match code.code() {
                4000..=4099 => Some(ClientAction::GiveUp),
                4100..=4199 => Some(ClientAction::Retry),
                4200..=4299 => Some(ClientAction::ReconnectNow),
                4400..=4499 => Some(ClientAction::Reauthenticate),
                _ => None,
            };
            if let Some(expected) = expected {
                assert_eq!(code.action(), expected, "{code:?}");
            }
        }
    }

    #[test]
    fn error_codes_serialize_as_their_names() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).expect("json"), code.as_str());
        }
    }
}

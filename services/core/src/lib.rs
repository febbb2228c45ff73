//! Signalbox's shared vocabulary, with no I/O: every other crate speaks in these types.
//!
//! # Layout
//! - [`clock`]: Unix time as the protocol carries it;
//! - [`ids`]: generated ids (`AppId`, `ConnectionId`, …) and tenant-chosen names
//!   (`GroupName`, `UserId`, `EventName`), validated once at the boundary;
//! - [`settings`]: per-app settings, their defaults and hard caps;
//! - [`permission`]: `join:room-*`-style grants and their matching;
//! - [`scopes`]: what an app key may do;
//! - [`token`]: client-token claims, HS256 signing and verification;
//! - [`signalr`]: SignalR connection tokens and Azure SignalR-style access tokens;
//! - [`pusher`]: Pusher credentials, socket ids and signatures;
//! - [`codes`]: the one table of close codes and error codes, with what a client should do;
//! - [`recovery`]: why a group was not recovered after a reconnect;
//! - [`webhook`]: the events an app's webhooks can ask for;
//! - [`json`]: the depth and number limits of published JSON;
//! - [`admission`]: the mark an HTTP request carries until it is authenticated.
//!
//! This crate must not depend on tokio, axum, sqlx, NATS or any other Signalbox crate.

pub mod admission;
pub mod clock;
pub mod codes;
pub mod ids;
pub mod json;
pub mod permission;
pub mod pusher;
pub mod recovery;
pub mod scopes;
pub mod settings;
pub mod signalr;
pub mod token;
pub mod webhook;

pub use codes::{ClientAction, CloseCode, ErrorCode};
pub use ids::{
    AppId, ConnectionId, EventName, GroupName, HubName, InvalidName, KeyId, NodeId, Scope, TenantId, UserId, WebhookId,
};
pub use permission::{Action, Permission, Permissions};
pub use recovery::RecoveryFailure;
pub use scopes::{KeyScope, KeyScopes};
pub use settings::{AppSettings, Limits};
pub use token::{ClientClaims, TokenError};
pub use webhook::{WebhookEvent, WebhookEvents};

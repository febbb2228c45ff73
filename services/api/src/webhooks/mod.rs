//! Webhooks: the app's upstream.
//!
//! - [`targets`]: where webhooks may be sent (no loopback, private, link-local or metadata
//!   addresses unless the operator allows them), checked when saved and on every call;
//! - [`signing`]: the `Signalbox-Signature` header;
//! - `client`: one CloudEvents call over HTTP;
//! - `blocking`: `connect` and client events, which a caller waits for;
//! - `dispatcher`: connection events queued, delivered at least once, in order per
//!   connection, with retries, and the disconnects of lost edges.

pub(crate) mod blocking;
pub(crate) mod client;
pub(crate) mod dispatcher;
mod signalr;
pub mod signing;
pub mod targets;

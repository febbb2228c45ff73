//! Signalbox's wire formats, with no runtime: what clients and nodes say to each other.
//!
//! # Layout
//! - [`native`]: the `signalbox.json.v1` client protocol — inbound frame parsing, outbound
//!   frame encoding;
//! - [`wire`]: the versioned binary packets of the routing plane (the message envelope,
//!   node control, edge → api requests, config announcements);
//! - [`subject`]: the subject scheme and the encoding of names into subject tokens;
//! - [`presence`]: a group's presence summed up from the nodes' answers;
//! - [`signalr`]: the ASP.NET Core SignalR hub protocol (JSON), for the SignalR adapter.
//!
//! Depends only on `signalbox-core`. Must not depend on tokio, axum, NATS or the store.

pub mod native;
pub mod presence;
pub mod signalr;
pub mod subject;
pub mod wire;

pub use subject::{ApiOp, Route, Subject, SubjectError, Subjects};

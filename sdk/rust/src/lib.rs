//! Signalbox for Rust.
//!
//! - [`server`]: the REST API — tenants, apps, keys, tokens, publishing, groups,
//!   connections, presence and webhooks — for a tenant's backend (or an operator);
//! - [`token`]: signing client tokens locally, without a REST call;
//! - [`realtime`]: one client connection: join, leave, publish, receive, recover;
//! - [`reconnecting`]: a client that stays connected and resumes what it missed;
//! - [`webhook`]: verifying the signature of Signalbox's webhook requests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use signalbox_sdk::server::{Client, Message};
//! let backend = Client::new("http://127.0.0.1:8080", "key_…​.secret")?;
//! backend.send_to_group("app_…", "room-1", &Message::new("chat", serde_json::json!({"text": "hi"}))).await?;
//! # Ok(()) }
//! ```

pub mod realtime;
pub mod reconnecting;
pub mod server;
pub mod token;
pub mod webhook;

pub use signalbox_core::{ClientAction, CloseCode, ErrorCode};

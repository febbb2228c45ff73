//! Pusher Channels, drop-in: pusher-js and the other Pusher clients connect at `/app/{key}`
//! (docs/pusher.md). The codec speaks client protocol 7; the entry checks the key and the
//! app's `pusher` settings before the `101`. Pusher's HTTP API is the api's
//! (`api::routes::pusher`).

mod codec;
mod connect;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::EdgeState;
pub(crate) use codec::Pusher;

/// `GET /app/{key}`.
pub(crate) fn routes() -> Router<Arc<EdgeState>> {
    Router::new().route("/app/{key}", get(connect::upgrade))
}

//! The Pusher protocol's entry: `GET /app/{key}?protocol=7`, a WebSocket upgrade. The key (a
//! Signalbox app key id) names the app; the app must have turned Pusher on. Refusals are close
//! frames with Pusher's codes, which Signalbox's share: 4001 no such app, 4003 Pusher off for
//! the app, 4403 revoked key, 4102 over a connection limit.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode};
use hyper::upgrade::OnUpgrade;
use serde::Deserialize;
use signalbox_core::{Action, ClientClaims, CloseCode, KeyId, Permission, Scope};

use crate::EdgeState;
use crate::admission::{self, Admission, Handshake};
use crate::auth::Authorized;
use crate::directory::LookupError;
use crate::outbox::CloseRequest;
use crate::problem::problem;
use crate::protocol::{Encoding, Format, Transport};
use crate::ws;

/// The client protocol versions spoken (pusher-js speaks 7).
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

#[derive(Debug, Deserialize)]
pub(crate) struct ConnectQuery {
    protocol: Option<String>,
}

/// `GET /app/{key}?protocol=7&client=…&version=…`.
pub(crate) async fn upgrade(
    State(edge): State<Arc<EdgeState>>,
    Path(key): Path<String>,
    Query(query): Query<ConnectQuery>,
    method: Method,
    headers: HeaderMap,
    mut request: axum::extract::Request,
) -> Response {
    let (accept, _) = match ws::check_handshake(&method, &headers, None) {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "upgrade-unavailable", "this server cannot upgrade");
    };
    if edge.draining() {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "draining", "this node is draining; connect to another one");
    }
    let version = query.protocol.as_deref().map(str::parse::<u32>);
    if !matches!(version, Some(Ok(v)) if PROTOCOLS.contains(&v)) {
        let detail = "unsupported Pusher protocol version: this server speaks protocols 5 to 7 (`?protocol=7`)";
        return problem(StatusCode::BAD_REQUEST, "unsupported-protocol", detail);
    }
    let handshake = Handshake::of(&request, &headers);
    let admitted = match authorize(&edge, &key).await {
        Ok(authorized) => {
            crate::http::authenticated(request.extensions());
            let scope = Scope::native(authorized.key.app.clone());
            let format = Format::new(Encoding::PUSHER, Transport::WebSocket);
            let id = signalbox_core::pusher::connection_id();
            let handshake = &handshake;
            let admission =
                Admission { scope, id, format, wanted: Vec::new(), handshake, own_subject: true, resumable: false };
            admission::admit(&edge, authorized, admission).await
        }
        Err(refusal) => Err(refusal),
    };
    ws::accept_upgrade(edge, on_upgrade, accept, None, admitted.map(ws::Opening::Admitted))
}

/// The app of a Pusher key, and what its clients may do: join public channels (private ones
/// by signature, see the codec), leave, and — with client events on — publish to the private
/// channels they are in.
async fn authorize(edge: &EdgeState, key: &str) -> Result<Authorized, CloseRequest> {
    let refused = |code: CloseCode, reason: &'static str| {
        metrics::counter!("signalbox_connects_refused_total", "code" => code.code().to_string()).increment(1);
        CloseRequest::new(code, reason)
    };
    let no_app = || refused(CloseCode::AppDeleted, "no app has this key");
    let key_id = KeyId::new(key).map_err(|_| no_app())?;
    let key = match edge.directory.key_of_any_app(&key_id).await {
        Ok(key) => key,
        Err(LookupError::NotFound) => return Err(no_app()),
        Err(LookupError::Unavailable) => {
            return Err(refused(CloseCode::TryAgainLater, "cannot check the key right now"));
        }
    };
    if key.revoked {
        return Err(refused(CloseCode::KeyRevoked, "this app key has been revoked"));
    }
    if !key.settings.pusher.enabled {
        return Err(refused(
            CloseCode::ConnectRejected,
            "Pusher clients are not enabled for this app (settings.pusher)",
        ));
    }
    let grant = |action, pattern: &str| Permission::new(action, pattern).ok();
    let mut permissions: Vec<Permission> =
        [grant(Action::Join, "*"), grant(Action::Leave, "*")].into_iter().flatten().collect();
    if key.settings.pusher.client_events {
        permissions.extend(grant(Action::Publish, "private-*"));
        permissions.extend(grant(Action::Publish, "presence-*"));
    }
    let claims = ClientClaims {
        sub: None,
        exp: u64::MAX,
        iat: None,
        app: key.app.clone(),
        groups: Vec::new(),
        permissions,
        info: None,
    };
    Ok(Authorized { claims, key_id, key })
}

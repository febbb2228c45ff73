//! The native protocol's entry: `GET /client`, a WebSocket upgrade whose token is checked
//! (and whose `recover` is read) before the `101`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use serde::Deserialize;
use signalbox_core::{ConnectionId, GroupName, Scope};
use signalbox_proto::native;

use crate::EdgeState;
use crate::admission::{self, Admission, Handshake};
use crate::auth;
use crate::problem::problem;
use crate::protocol::{Encoding, Format, Transport};
use crate::ws;

#[derive(Debug, Deserialize)]
pub(crate) struct ClientQuery {
    access_token: Option<String>,
    /// `{"group": last_position, …}`: groups to recover after a reconnect.
    recover: Option<String>,
}

/// Groups a client asks to recover at connect: at most this many.
const MAX_RECOVER: usize = 100;

/// Parses `recover`: a JSON object of group names to positions. The error is a problem detail.
fn parse_recover(raw: Option<&str>) -> Result<Vec<(GroupName, u64)>, String> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let positions: std::collections::BTreeMap<String, u64> = serde_json::from_str(raw)
        .map_err(|_| "`recover` must be a JSON object of group names to positions".to_owned())?;
    if positions.len() > MAX_RECOVER {
        return Err(format!("`recover` names more than {MAX_RECOVER} groups"));
    }
    positions
        .into_iter()
        .map(|(group, position)| GroupName::new(group).map(|g| (g, position)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// `GET /client?access_token=…` with `Sec-WebSocket-Protocol: signalbox.json.v1`.
pub(crate) async fn upgrade(
    State(edge): State<Arc<EdgeState>>,
    Query(query): Query<ClientQuery>,
    method: Method,
    headers: HeaderMap,
    mut request: axum::extract::Request,
) -> Response {
    let (accept, subprotocol) = match ws::check_handshake(&method, &headers, Some(native::SUBPROTOCOL)) {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "upgrade-unavailable",
            "this server cannot upgrade connections",
        );
    };
    if edge.draining() {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "draining", "this node is draining; connect to another one");
    }
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let token = query.access_token.as_deref().or(bearer);
    let recover = match parse_recover(query.recover.as_deref()) {
        Ok(recover) => recover,
        Err(detail) => return problem(StatusCode::BAD_REQUEST, "invalid-recover", &detail),
    };
    let handshake = Handshake::of(&request, &headers);
    let admitted = match auth::authenticate(&edge.directory, token).await {
        Ok(authorized) => {
            // The connect webhook may take a while: this request no longer counts as
            // unauthenticated.
            crate::http::authenticated(request.extensions());
            let scope = Scope::native(authorized.key.app.clone());
            let id = ConnectionId::generate(&edge.hub.config.node);
            let format = Format::new(Encoding::NATIVE, Transport::WebSocket);
            let handshake = &handshake;
            let admission =
                Admission { scope, id, format, wanted: recover, handshake, own_subject: false, resumable: false };
            admission::admit(&edge, authorized, admission).await
        }
        Err(err) => Err(admission::refused(&err)),
    };
    ws::accept_upgrade(edge, on_upgrade, accept, subprotocol, admitted.map(ws::Opening::Admitted))
}

//! The app's `connect` webhook, asked before a connection opens: it may reject the connection
//! (4003, with its reason), or change who it is — user, groups, permissions, info. When it
//! fails or does not answer in time, the app's `connect_failure` setting decides: reject
//! (4103, the client retries) or accept the connection as its token says.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use http::HeaderMap;
use signalbox_core::settings::ConnectFailure;
use signalbox_core::{ClientClaims, CloseCode, ConnectionId, GroupName, Permission, Permissions, Scope, UserId};
use signalbox_proto::ApiOp;
use signalbox_proto::wire::{ApiAnswer, ApiQuery, ConnectDecision, ConnectOutcome, ConnectRequest};

use crate::EdgeState;
use crate::directory::KeyEntry;
use crate::outbox::CloseRequest;

/// What the `connect` webhook is told about the request, besides the token.
#[derive(Debug, Default)]
pub(crate) struct Handshake {
    /// The query parameters other than the token and `recover`.
    query: serde_json::Map<String, serde_json::Value>,
    headers: serde_json::Map<String, serde_json::Value>,
}

/// Headers passed on to the `connect` webhook.
const FORWARDED_HEADERS: [&str; 4] = ["origin", "user-agent", "x-forwarded-for", "accept-language"];

impl Handshake {
    pub(crate) fn of(request: &axum::extract::Request, headers: &HeaderMap) -> Self {
        let mut query = serde_json::Map::new();
        if let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(request.uri()) {
            for (name, value) in pairs {
                if name != "access_token" && name != "recover" {
                    query.insert(name, serde_json::Value::String(value));
                }
            }
        }
        let mut forwarded = serde_json::Map::new();
        for name in FORWARDED_HEADERS {
            if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
                forwarded.insert(name.to_owned(), serde_json::Value::String(value.to_owned()));
            }
        }
        Self { query, headers: forwarded }
    }
}

/// Who a connection is, after its token and the app's `connect` webhook.
pub(super) struct Identity {
    pub(super) user: Option<UserId>,
    pub(super) groups: Vec<GroupName>,
    pub(super) permissions: Permissions,
    pub(super) info: Option<Arc<str>>,
}

/// Asks the app's `connect` webhook; applies its changes, or refuses with its reason.
pub(super) async fn ask_connect_webhook(
    edge: &EdgeState,
    key: &KeyEntry,
    scope: &Scope,
    id: &ConnectionId,
    claims: &ClientClaims,
    handshake: &Handshake,
    identity: &mut Identity,
) -> Result<(), CloseRequest> {
    let timeout_ms = key.settings.webhooks.connect_timeout_ms;
    let request = ConnectRequest {
        connection_id: id.to_string(),
        hub: scope.hub.to_string(),
        user: identity.user.as_ref().map(ToString::to_string),
        groups: identity.groups.iter().map(ToString::to_string).collect(),
        permissions: claims.permissions.iter().map(ToString::to_string).collect(),
        claims_json: serde_json::to_string(claims).unwrap_or_else(|_| "{}".into()),
        query_json: serde_json::Value::Object(handshake.query.clone()).to_string(),
        headers_json: serde_json::Value::Object(handshake.headers.clone()).to_string(),
        timeout_ms,
    };
    // The api's own deadline, plus the time to get there and back.
    let wait = Duration::from_millis(u64::from(timeout_ms)) + Duration::from_secs(2);
    let answer = edge.directory.request(&scope.app, ApiOp::Connect, ApiQuery::Connect(request), wait).await;
    let decision = match answer {
        Ok(ApiAnswer::Connect(decision)) => decision,
        Ok(_) | Err(_) => ConnectDecision {
            outcome: ConnectOutcome::Failed as i32,
            reason: "the connect webhook could not be asked".into(),
            ..ConnectDecision::default()
        },
    };
    match ConnectOutcome::try_from(decision.outcome) {
        Ok(ConnectOutcome::Accept) => {
            let invalid = |what: &str| {
                CloseRequest::new(CloseCode::ConnectWebhookFailed, format!("the connect webhook set an invalid {what}"))
            };
            if let Some(user) = decision.user {
                identity.user = Some(UserId::new(user).map_err(|_| invalid("user id"))?);
            }
            if decision.replace_groups {
                identity.groups = decision
                    .groups
                    .iter()
                    .map(GroupName::new)
                    .collect::<Result<_, _>>()
                    .map_err(|_| invalid("group"))?;
            }
            if decision.replace_permissions {
                let permissions =
                    decision.permissions.iter().map(|p| Permission::parse(p)).collect::<Result<Vec<_>, _>>();
                identity.permissions = Permissions::new(permissions.map_err(|_| invalid("permission"))?);
            }
            if let Some(info) = decision.info_json {
                identity.info = Some(Arc::from(info));
            }
            Ok(())
        }
        Ok(ConnectOutcome::Reject) => {
            metrics::counter!("signalbox_connects_refused_total", "code" => "4003").increment(1);
            Err(CloseRequest::new(CloseCode::ConnectRejected, decision.reason))
        }
        Ok(ConnectOutcome::NoWebhook) => Ok(()),
        Ok(ConnectOutcome::Failed) | Err(_) => match key.settings.webhooks.connect_failure {
            ConnectFailure::Accept => {
                tracing::warn!(app = %scope.app, reason = decision.reason, "connect webhook failed; accepting as the app's policy says");
                Ok(())
            }
            ConnectFailure::Reject => {
                metrics::counter!("signalbox_connects_refused_total", "code" => "4103").increment(1);
                Err(CloseRequest::new(CloseCode::ConnectWebhookFailed, decision.reason))
            }
        },
    }
}

//! The api's side of the routing plane: answering edges (a key and its app's settings, a
//! user's groups, a group's presence, the app's `connect` and `event` webhooks), hearing the
//! announcements of other api nodes to keep caches right, and edges' heartbeats.

use std::sync::Arc;

use bytes::Bytes;
use signalbox_bus::{Delivery, Inbox};
use signalbox_core::{AppId, HubName, KeyId, Scope, UserId, clock};
use signalbox_proto::Route;
use signalbox_proto::wire::{
    self, ApiAnswer, ApiFailure, ApiFailureKind, ApiQuery, ApiReply, ApiRequest, Body, ConfigChangeKind, GroupList,
    GroupPresenceQuery, KeyInfo, PresenceList, PresenceQuery,
};

use crate::ApiState;
use crate::webhooks::blocking;

pub(crate) async fn run(state: Arc<ApiState>, mut inbox: Inbox) {
    while let Some(delivery) = inbox.recv().await {
        match state.subjects.parse(delivery.subject.as_str()) {
            Ok(Route::Config(app)) => hear_change(&state, &app, delivery.payload),
            Ok(Route::Heartbeat(_)) => {
                if let Ok(Body::Heartbeat(heartbeat)) = wire::decode(delivery.payload) {
                    state.nodes.heard(&heartbeat);
                }
            }
            Ok(Route::Api(app, _)) => {
                tokio::spawn(answer(Arc::clone(&state), app, delivery));
            }
            _ => {
                metrics::counter!("signalbox_bus_dropped_packets_total", "kind" => "api_unroutable").increment(1);
            }
        }
    }
}

fn hear_change(state: &ApiState, app: &AppId, payload: Bytes) {
    let Ok(Body::ConfigChange(change)) = wire::decode(payload) else { return };
    match change.kind {
        Some(ConfigChangeKind::KeyRevoked(key)) => {
            if let Ok(key) = KeyId::new(key) {
                state.cache.forget_key(&key);
            }
        }
        Some(ConfigChangeKind::SettingsChanged(_) | ConfigChangeKind::AppDeleted(_)) => state.cache.forget_app(app),
        None => {}
    }
}

fn failure(kind: ApiFailureKind, message: &str) -> ApiAnswer {
    ApiAnswer::Error(ApiFailure { kind: kind as i32, message: message.to_owned() })
}

async fn answer(state: Arc<ApiState>, app: AppId, delivery: Delivery) {
    let Some(reply) = delivery.reply else { return };
    let answer = match wire::decode(delivery.payload) {
        Ok(Body::ApiRequest(ApiRequest { app: claimed, query: Some(query) })) if claimed == app.as_str() => match query
        {
            ApiQuery::Key(key) => key_answer(&state, &app, &key).await,
            ApiQuery::UserGroups(q) => user_groups_answer(&state, &app, &q.hub, &q.user).await,
            ApiQuery::Presence(q) => presence_answer(&state, &app, q).await,
            ApiQuery::Connect(request) => ApiAnswer::Connect(blocking::connect(&state, &app, request).await),
            ApiQuery::ClientEvent(request) => client_event_answer(&state, &app, request).await,
        },
        _ => failure(ApiFailureKind::NotFound, "unreadable request"),
    };
    let packet = wire::encode(Body::ApiReply(ApiReply { answer: Some(answer) }));
    if let Err(err) = reply.send(packet).await {
        tracing::warn!(app = %app, error = %err, "could not answer an edge");
    }
}

async fn key_answer(state: &ApiState, app: &AppId, key: &str) -> ApiAnswer {
    let Ok(key) = KeyId::new(key) else { return failure(ApiFailureKind::NotFound, "no such key") };
    state.cache.sync_epoch(state.bus.epoch());
    let opened = match state.cache.key(&state.store, &state.master_key, &key).await {
        Ok(Some(opened)) if &opened.record.app_id == app || app.as_str() == wire::ANY_APP => opened,
        Ok(_) => return failure(ApiFailureKind::NotFound, "no such key"),
        Err(err) => {
            tracing::error!(app = %app, key = %key, error = %err, "key lookup for an edge failed");
            return failure(ApiFailureKind::Unavailable, "key lookup failed");
        }
    };
    let app = &opened.record.app_id;
    let settings = match state.cache.app(&state.store, app).await {
        Ok(Some(record)) => serde_json::to_string(&record.settings).unwrap_or_default(),
        Ok(None) => return failure(ApiFailureKind::NotFound, "no such app"),
        Err(err) => {
            tracing::error!(app = %app, error = %err, "app lookup for an edge failed");
            return failure(ApiFailureKind::Unavailable, "app lookup failed");
        }
    };
    let webhook_events = match state.cache.webhooks(&state.store, &state.master_key, app).await {
        Ok(webhooks) => webhooks.events.iter().map(|e| e.as_str().to_owned()).collect(),
        Err(err) => {
            tracing::error!(app = %app, error = %err, "webhook lookup for an edge failed");
            return failure(ApiFailureKind::Unavailable, "webhook lookup failed");
        }
    };
    ApiAnswer::Key(KeyInfo {
        key_id: key.to_string(),
        app: app.to_string(),
        secret: opened.secret.clone(),
        revoked: opened.record.revoked_at.is_some(),
        settings_json: settings,
        webhook_events,
    })
}

async fn presence_answer(state: &ApiState, app: &AppId, query: GroupPresenceQuery) -> ApiAnswer {
    let Ok(hub) = HubName::from_token(&query.hub) else { return failure(ApiFailureKind::NotFound, "invalid hub") };
    let scope = Scope { app: app.clone(), hub };
    let entries = state.presence(&scope, PresenceQuery { group: Some(query.group), user: None, prefix: None }).await;
    ApiAnswer::Presence(PresenceList { entries })
}

async fn client_event_answer(
    state: &Arc<ApiState>,
    app: &AppId,
    request: signalbox_proto::wire::ClientEventRequest,
) -> ApiAnswer {
    let max_answer_bytes = match state.cache.app(&state.store, app).await {
        Ok(Some(record)) => record.settings.limits.max_message_bytes as usize,
        Ok(None) => return failure(ApiFailureKind::NotFound, "no such app"),
        Err(_) => return failure(ApiFailureKind::Unavailable, "app lookup failed"),
    };
    metrics::counter!("signalbox_client_events_total").increment(1);
    blocking::client_event(state, app, request, max_answer_bytes).await
}

async fn user_groups_answer(state: &ApiState, app: &AppId, hub: &str, user: &str) -> ApiAnswer {
    let (Ok(hub), Ok(user)) = (HubName::from_token(hub), UserId::new(user)) else {
        return failure(ApiFailureKind::NotFound, "invalid hub or user");
    };
    match state.store.user_groups(app, &hub, &user, clock::unix_millis()).await {
        Ok(groups) => ApiAnswer::UserGroups(GroupList { groups: groups.iter().map(ToString::to_string).collect() }),
        Err(err) => {
            tracing::error!(app = %app, error = %err, "user groups lookup for an edge failed");
            failure(ApiFailureKind::Unavailable, "user groups lookup failed")
        }
    }
}

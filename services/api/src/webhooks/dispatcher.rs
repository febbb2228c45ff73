//! The dispatcher: connection events become deliveries, and deliveries go out.
//!
//! - **Ingest** (one api node at a time: the event queue pins one consumer): each event from
//!   the queue becomes one delivery per webhook that asks for it, stored in one transaction,
//!   then the event is acknowledged. A repeat of an event (redelivered by the queue) is
//!   skipped by its id.
//! - **Deliver** (every api node): claim due deliveries — only the oldest of each
//!   connection's, so a connection's events arrive in order — send them signed, then finish
//!   them, or schedule a retry with exponential backoff and jitter, for up to a day.
//! - **Lost edges**: an edge silent for [`LOST_AFTER`](crate::nodes::LOST_AFTER) said goodbye
//!   to nobody; the disconnects of its connections are queued on its behalf.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::future::join_all;
use signalbox_bus::QueuedEvent;
use signalbox_core::{AppId, WebhookEvent, clock};
use signalbox_proto::wire::{self, Body, ConnectionEvent, ConnectionEventKind};
use signalbox_store::{AttemptRecord, DeliveryRecord, NewDelivery, OpenConnection};
use tokio::task::JoinHandle;

use super::client::Call;
use crate::ApiState;
use crate::error::ApiError;

/// Events taken from the queue per store transaction.
const INGEST_BATCH: usize = 256;
/// Deliveries claimed at once by one node.
const DELIVER_BATCH: i64 = 32;
/// How long a claim lasts: longer than a call can take.
const CLAIM_LEASE_MS: i64 = 60_000;
/// How long one delivery attempt may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle node looks for due deliveries (ingest on this node wakes it at once).
const POLL: Duration = Duration::from_millis(500);
/// How long a delivery is retried before it is given up.
pub(crate) const GIVE_UP_AFTER_MS: i64 = 24 * 3600 * 1000;
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: i64 = 10 * 60 * 1000;
/// How often lost edges are looked for.
const LOST_EDGE_SWEEP: Duration = Duration::from_secs(5);

/// Starts ingesting, delivering and reporting lost edges.
pub(crate) fn start(state: Arc<ApiState>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(ingest(Arc::clone(&state))),
        tokio::spawn(deliver(Arc::clone(&state))),
        tokio::spawn(report_lost_edges(state)),
    ]
}

async fn ingest(state: Arc<ApiState>) {
    loop {
        let events = match state.events.consume().await {
            Ok(events) => events,
            Err(err) => {
                tracing::warn!(error = %err, "cannot consume connection events; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut batches = events.ready_chunks(INGEST_BATCH);
        while let Some(batch) = batches.next().await {
            let events: Vec<QueuedEvent> = batch
                .into_iter()
                .filter_map(|event| event.map_err(|err| tracing::warn!(error = %err, "event queue error")).ok())
                .collect();
            // Unacknowledged events would come back anyway; holding on keeps their order.
            while let Err(err) = record(&state, &events).await {
                tracing::warn!(error = %err, events = events.len(), "cannot store webhook deliveries; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            for event in events {
                if let Err(err) = event.ack().await {
                    tracing::warn!(error = %err, "could not acknowledge a connection event; it will be seen again");
                }
            }
            state.deliveries_waiting.notify_one();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Turns events into deliveries (and keeps the open connections of apps that want disconnects).
async fn record(state: &ApiState, events: &[QueuedEvent]) -> Result<(), ApiError> {
    let mut deliveries = Vec::new();
    for event in events {
        let Ok(Body::ConnectionEvent(event)) = wire::decode(event.payload.clone()) else {
            metrics::counter!("signalbox_bus_dropped_packets_total", "kind" => "event_unreadable").increment(1);
            tracing::warn!("dropping an unreadable connection event");
            continue;
        };
        let Ok(app) = AppId::new(&event.app) else { continue };
        let webhooks = state.cache.webhooks(&state.store, &state.master_key, &app).await?;
        let kind = match ConnectionEventKind::try_from(event.kind) {
            Ok(ConnectionEventKind::Connected) => WebhookEvent::Connected,
            Ok(ConnectionEventKind::Disconnected) => WebhookEvent::Disconnected,
            Ok(ConnectionEventKind::Moved) => {
                if webhooks.events.contains(WebhookEvent::Disconnected) {
                    state.store.move_open_connection(&app, &event.connection_id, &event.node).await?;
                }
                continue;
            }
            Err(_) => continue,
        };
        if webhooks.events.contains(WebhookEvent::Disconnected) {
            match kind {
                WebhookEvent::Connected => state.store.add_open_connection(&open_connection(&app, &event)).await?,
                _ => state.store.remove_open_connection(&app, &event.connection_id).await?,
            }
        }
        let body = event_body(&event, kind);
        for webhook in webhooks.for_event(kind) {
            deliveries.push(NewDelivery {
                webhook_id: webhook.record.id.clone(),
                event_id: event.id.clone(),
                event_type: kind.as_str().to_owned(),
                ordering_key: event.connection_id.clone(),
                body: body.clone(),
                event_time: i64::try_from(event.at_millis).unwrap_or(i64::MAX),
            });
        }
    }
    if !deliveries.is_empty() {
        state.store.queue_deliveries(&deliveries, clock::unix_millis()).await?;
        metrics::counter!("signalbox_webhook_deliveries_queued_total").increment(deliveries.len() as u64);
    }
    Ok(())
}

fn open_connection(app: &AppId, event: &ConnectionEvent) -> OpenConnection {
    OpenConnection {
        app_id: app.clone(),
        connection_id: event.connection_id.clone(),
        node: event.node.clone(),
        hub: event.hub.clone(),
        user_id: event.user.clone(),
        groups: event.groups.clone(),
        connected_at: i64::try_from(event.at_millis).unwrap_or(i64::MAX),
    }
}

/// The JSON body (the CloudEvent's data) of a connected or disconnected event.
fn event_body(event: &ConnectionEvent, kind: WebhookEvent) -> String {
    let mut body = serde_json::json!({
        "connection_id": event.connection_id,
        "user_id": event.user,
        "groups": event.groups,
    });
    if event.hub != signalbox_core::HubName::native().as_str() {
        body["hub"] = serde_json::json!(event.hub);
    }
    if kind == WebhookEvent::Disconnected {
        body["code"] = serde_json::json!(event.close_code);
        body["reason"] = serde_json::json!(event.reason);
    }
    body.to_string()
}

async fn deliver(state: Arc<ApiState>) {
    loop {
        let now = clock::unix_millis();
        match state.store.claim_deliveries(now, now + CLAIM_LEASE_MS, DELIVER_BATCH).await {
            Ok(batch) if !batch.is_empty() => {
                join_all(batch.into_iter().map(|delivery| deliver_one(&state, delivery))).await;
                continue;
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "cannot claim webhook deliveries"),
        }
        tokio::select! {
            () = state.deliveries_waiting.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Waits before attempt `attempt + 1`: 1 s, 2 s, 4 s … up to 10 minutes, ±20 %.
pub(crate) fn backoff_ms(attempt: i32) -> i64 {
    let base = 1000_i64.saturating_mul(1 << attempt.clamp(0, 20)).min(MAX_BACKOFF_MS);
    let jitter = rand::random_range(0.8..1.2);
    (base as f64 * jitter) as i64
}

async fn deliver_one(state: &ApiState, delivery: DeliveryRecord) {
    let result = attempt(state, &delivery).await;
    let now = clock::unix_millis();
    let attempt = delivery.attempts + 1;
    let (outcome, status, latency_ms, error) = match &result {
        Ok((status, latency)) if (200..300).contains(status) => ("delivered", Some(i32::from(*status)), *latency, None),
        Ok((status, latency)) => ("failed", Some(i32::from(*status)), *latency, Some(format!("answered {status}"))),
        Err(error) => ("failed", None, 0, Some(error.clone())),
    };
    let given_up = outcome == "failed" && now - delivery.created_at >= GIVE_UP_AFTER_MS;
    let outcome = if given_up { "gave_up" } else { outcome };
    metrics::counter!("signalbox_webhook_deliveries_total", "outcome" => outcome).increment(1);
    if status.is_some() {
        metrics::histogram!("signalbox_webhook_duration_seconds", "call" => "event").record(latency_ms as f64 / 1e3);
    }
    tracing::info!(
        delivery = delivery.id,
        event_id = %delivery.event_id,
        webhook = %delivery.webhook_id,
        attempt,
        outcome,
        status,
        latency_ms,
        error = error.as_deref(),
        "webhook delivery"
    );
    let stored = if outcome == "failed" {
        state.store.retry_delivery(delivery.id, attempt, now + backoff_ms(attempt - 1)).await
    } else {
        state.store.finish_delivery(delivery.id).await
    };
    if let Err(err) = stored {
        // The claim lapses and the delivery is tried again: at least once.
        tracing::warn!(delivery = delivery.id, error = %err, "cannot record a delivery's outcome");
    }
    if outcome != "delivered" {
        tracing::info!(webhook = %delivery.webhook_id, event = %delivery.event_id, attempt, outcome, error = ?error, "webhook delivery failed");
    }
    let record = AttemptRecord {
        id: 0,
        webhook_id: delivery.webhook_id.clone(),
        event_id: delivery.event_id.clone(),
        event_type: delivery.event_type.clone(),
        attempt,
        outcome: outcome.to_owned(),
        status,
        latency_ms,
        error,
        at: now,
    };
    if let Err(err) = state.store.record_attempt(&record).await {
        tracing::warn!(webhook = %delivery.webhook_id, error = %err, "cannot log a webhook delivery");
    }
}

/// One call; `Ok((status, latency ms))` when the webhook answered.
async fn attempt(state: &ApiState, delivery: &DeliveryRecord) -> Result<(u16, i64), String> {
    let webhook = state
        .cache
        .webhook(&state.store, &state.master_key, &delivery.webhook_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the webhook was deleted".to_owned())?;
    let kind = WebhookEvent::parse(&delivery.event_type).map_or("signalbox.unknown", WebhookEvent::cloud_event_type);
    let call = Call {
        url: &webhook.record.url,
        secrets: &webhook.secrets,
        app: &webhook.record.app_id,
        kind,
        id: &delivery.event_id,
        time_millis: delivery.event_time,
        subject: Some(&delivery.ordering_key),
        user: None,
        body: delivery.body.as_bytes(),
        timeout: DELIVERY_TIMEOUT,
        extra_headers: &[],
    };
    let answer = state.webhook_client.call(&call).await.map_err(|e| e.to_string())?;
    Ok((answer.status, i64::try_from(answer.latency.as_millis()).unwrap_or(i64::MAX)))
}

async fn report_lost_edges(state: Arc<ApiState>) {
    let mut sweep = tokio::time::interval(LOST_EDGE_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        sweep.tick().await;
        if let Err(err) = report_lost_edges_once(&state).await {
            tracing::warn!(error = %err, "cannot look for lost edges");
        }
    }
}

async fn report_lost_edges_once(state: &ApiState) -> Result<(), ApiError> {
    state.nodes.observe_epoch(state.bus.epoch());
    for node in state.store.nodes_with_open_connections().await? {
        let Some(before) = state.nodes.lost_before(&node) else { continue };
        let connections = state.store.open_connections_of_node(&node, before, 1000).await?;
        if connections.is_empty() {
            continue;
        }
        tracing::warn!(
            node,
            connections = connections.len(),
            "connections of a lost edge; reporting them disconnected"
        );
        for connection in connections {
            let event = ConnectionEvent {
                // The same id however often it is reported: deliveries are deduplicated by it.
                id: format!("evt_lost_{}", connection.connection_id),
                app: connection.app_id.to_string(),
                hub: connection.hub.clone(),
                kind: ConnectionEventKind::Disconnected as i32,
                connection_id: connection.connection_id.clone(),
                user: connection.user_id.clone(),
                groups: connection.groups.clone(),
                // 1006: the connection ended without a close frame (never sent on the wire).
                close_code: 1006,
                reason: "the edge holding the connection was lost".into(),
                at_millis: u64::try_from(clock::unix_millis()).unwrap_or_default(),
                node: node.clone(),
            };
            let id = event.id.clone();
            state.events.append(&connection.app_id, &id, wire::encode(Body::ConnectionEvent(event))).await?;
            state.store.remove_open_connection(&connection.app_id, &connection.connection_id).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_minutes_with_jitter() {
        for attempt in 0..40 {
            let wait = backoff_ms(attempt);
            let base = (1000_i64 << attempt.min(20)).min(MAX_BACKOFF_MS) as f64;
            assert!((wait as f64) >= base * 0.8 - 1.0 && (wait as f64) <= base * 1.2 + 1.0, "{attempt}: {wait}");
        }
    }
}

//! The webhook delivery queue and the delivery log.
//!
//! A delivery is one event owed to one webhook. Deliveries of one `(webhook, ordering_key)`
//! — a connection's events — go out one at a time, in the order they were queued: only the
//! oldest pending delivery of each key can be claimed. Claims are leases (`claimed_until`), so
//! any number of api nodes can deliver side by side, and a delivery whose node died is claimed
//! again once its lease runs out.

use signalbox_core::WebhookId;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, corrupt};

/// A delivery to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub webhook_id: WebhookId,
    pub event_id: String,
    pub event_type: String,
    pub ordering_key: String,
    /// The event's JSON body.
    pub body: String,
    pub event_time: i64,
}

/// A claimed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub webhook_id: WebhookId,
    pub event_id: String,
    pub event_type: String,
    pub ordering_key: String,
    pub body: String,
    pub event_time: i64,
    /// Attempts made before this one.
    pub attempts: i32,
    pub created_at: i64,
}

/// One attempt, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub id: i64,
    pub webhook_id: WebhookId,
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: i32,
    /// `delivered`, `failed` (will be retried), `gave_up` or `answered` (a blocking call).
    pub outcome: String,
    pub status: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub at: i64,
}

/// Attempts kept per webhook in the log.
pub const ATTEMPTS_KEPT: i64 = 100;

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRecord, StoreError> {
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        webhook_id: WebhookId::new(row.try_get::<String, _>("webhook_id")?).map_err(corrupt("webhook id"))?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        ordering_key: row.try_get("ordering_key")?,
        body: row.try_get("body")?,
        event_time: row.try_get("event_time")?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
    })
}

fn attempt_from_row(row: &AnyRow) -> Result<AttemptRecord, StoreError> {
    Ok(AttemptRecord {
        id: row.try_get("id")?,
        webhook_id: WebhookId::new(row.try_get::<String, _>("webhook_id")?).map_err(corrupt("webhook id"))?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        attempt: row.try_get("attempt")?,
        outcome: row.try_get("outcome")?,
        status: row.try_get("status")?,
        latency_ms: row.try_get("latency_ms")?,
        error: row.try_get("error")?,
        at: row.try_get("at")?,
    })
}

impl Store {
    /// Queues deliveries in one transaction, in order; a delivery already queued (same webhook
    /// and event id) is skipped.
    pub async fn queue_deliveries(&self, deliveries: &[NewDelivery], now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for d in deliveries {
            sqlx::query(
                "INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, ordering_key, body, event_time, \
                 attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8) \
                 ON CONFLICT (webhook_id, event_id) DO NOTHING",
            )
            .bind(d.webhook_id.as_str())
            .bind(&d.event_id)
            .bind(&d.event_type)
            .bind(&d.ordering_key)
            .bind(&d.body)
            .bind(d.event_time)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Claims up to `limit` due deliveries until `lease_until`: for each `(webhook, key)` only
    /// its oldest delivery, and only if nobody holds a live claim on it.
    pub async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        // The claim condition is repeated on the outer UPDATE: under concurrent claims,
        // Postgres re-checks it on the row it is about to update, so two nodes never both win.
        let rows = sqlx::query(
            "UPDATE webhook_deliveries SET claimed_until = $1 WHERE id IN ( \
                 SELECT d.id FROM webhook_deliveries d \
                 WHERE d.next_attempt_at <= $2 AND (d.claimed_until IS NULL OR d.claimed_until < $3) \
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.webhook_id = d.webhook_id \
                                 AND e.ordering_key = d.ordering_key AND e.id < d.id) \
                 ORDER BY d.id LIMIT $4) \
             AND (claimed_until IS NULL OR claimed_until < $5) \
             RETURNING id, webhook_id, event_id, event_type, ordering_key, body, event_time, attempts, created_at",
        )
        .bind(lease_until)
        .bind(now)
        .bind(now)
        .bind(limit)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows.iter().map(delivery_from_row).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|d| d.id);
        Ok(claimed)
    }

    /// Removes a delivery that is done (delivered or given up).
    pub async fn finish_delivery(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM webhook_deliveries WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Schedules the next attempt of a failed delivery and releases its claim.
    pub async fn retry_delivery(&self, id: i64, attempts: i32, next_attempt_at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = $1, next_attempt_at = $2, claimed_until = NULL WHERE id = $3",
        )
        .bind(attempts)
        .bind(next_attempt_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deliveries still owed to a webhook.
    pub async fn pending_deliveries(&self, webhook: &WebhookId) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(webhook.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Logs an attempt and prunes the webhook's log to the last [`ATTEMPTS_KEPT`].
    pub async fn record_attempt(&self, attempt: &AttemptRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_attempts (webhook_id, event_id, event_type, attempt, outcome, status, latency_ms, \
             error, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(attempt.webhook_id.as_str())
        .bind(&attempt.event_id)
        .bind(&attempt.event_type)
        .bind(attempt.attempt)
        .bind(&attempt.outcome)
        .bind(attempt.status)
        .bind(attempt.latency_ms)
        .bind(attempt.error.as_deref())
        .bind(attempt.at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        sqlx::query(
            "DELETE FROM webhook_attempts WHERE webhook_id = $1 AND id <= (SELECT id FROM webhook_attempts \
             WHERE webhook_id = $2 ORDER BY id DESC LIMIT 1 OFFSET $3)",
        )
        .bind(attempt.webhook_id.as_str())
        .bind(attempt.webhook_id.as_str())
        .bind(ATTEMPTS_KEPT)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The webhook's log, newest first, before the attempt id `before` (for paging).
    pub async fn attempts(
        &self,
        webhook: &WebhookId,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, webhook_id, event_id, event_type, attempt, outcome, status, latency_ms, error, at \
             FROM webhook_attempts WHERE webhook_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(webhook.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }
}

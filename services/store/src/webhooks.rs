//! An app's webhook endpoints. Signing secrets are stored sealed (the dispatcher needs them
//! to sign); during a rotation the previous secret stays live beside the new one.

use signalbox_core::{AppId, WebhookEvents, WebhookId};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::page::{Cursor, Page, PageRequest};
use crate::{Store, StoreError, corrupt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: WebhookId,
    pub app_id: AppId,
    pub url: String,
    pub events: WebhookEvents,
    pub secret_sealed: String,
    pub previous_secret_sealed: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, app_id, url, events, secret_sealed, previous_secret_sealed, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<WebhookRecord, StoreError> {
    let events: String = row.try_get("events")?;
    Ok(WebhookRecord {
        id: WebhookId::new(row.try_get::<String, _>("id")?).map_err(corrupt("webhook id"))?,
        app_id: AppId::new(row.try_get::<String, _>("app_id")?).map_err(corrupt("app id"))?,
        url: row.try_get("url")?,
        events: WebhookEvents::parse(events.split(',').filter(|e| !e.is_empty()))
            .ok_or(StoreError::CorruptRow { what: "webhook events" })?,
        secret_sealed: row.try_get("secret_sealed")?,
        previous_secret_sealed: row.try_get("previous_secret_sealed")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn create_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhooks (id, app_id, url, events, secret_sealed, previous_secret_sealed, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(webhook.id.as_str())
        .bind(webhook.app_id.as_str())
        .bind(&webhook.url)
        .bind(webhook.events.to_list())
        .bind(&webhook.secret_sealed)
        .bind(webhook.previous_secret_sealed.as_deref())
        .bind(webhook.created_at)
        .bind(webhook.updated_at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    /// The webhook, if it belongs to `app`.
    pub async fn webhook(&self, app: &AppId, id: &WebhookId) -> Result<Option<WebhookRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1 AND app_id = $2"));
        let row = sqlx::query(sql).bind(id.as_str()).bind(app.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn list_webhooks(&self, app: &AppId, page: &PageRequest) -> Result<Page<WebhookRecord>, StoreError> {
        let (after_a, after_b, after_id) = page.bounds();
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM webhooks WHERE app_id = $1 AND (created_at > $2 OR (created_at = $3 AND id > $4)) \
             ORDER BY created_at, id LIMIT $5"
        ));
        let rows = sqlx::query(sql)
            .bind(app.as_str())
            .bind(after_a)
            .bind(after_b)
            .bind(after_id)
            .bind(page.clamped_limit() + 1)
            .fetch_all(&self.pool)
            .await?;
        let webhooks = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(webhooks, page, |w| Cursor { created_at: w.created_at, id: w.id.to_string() }))
    }

    /// A webhook by id alone: for the dispatcher, which holds only the id of a delivery's webhook.
    pub async fn webhook_by_id(&self, id: &WebhookId) -> Result<Option<WebhookRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1"));
        let row = sqlx::query(sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every webhook of the app, oldest first (for the dispatcher).
    pub async fn webhooks_of_app(&self, app: &AppId) -> Result<Vec<WebhookRecord>, StoreError> {
        let sql =
            sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM webhooks WHERE app_id = $1 ORDER BY created_at, id"));
        let rows = sqlx::query(sql).bind(app.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Replaces the webhook's url, events and secrets. Returns false if the app has no such webhook.
    pub async fn update_webhook(&self, webhook: &WebhookRecord) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE webhooks SET url = $1, events = $2, secret_sealed = $3, previous_secret_sealed = $4, \
             updated_at = $5 WHERE id = $6 AND app_id = $7",
        )
        .bind(&webhook.url)
        .bind(webhook.events.to_list())
        .bind(&webhook.secret_sealed)
        .bind(webhook.previous_secret_sealed.as_deref())
        .bind(webhook.updated_at)
        .bind(webhook.id.as_str())
        .bind(webhook.app_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Deletes the webhook with its pending deliveries and log. Returns false if there was none.
    pub async fn delete_webhook(&self, app: &AppId, id: &WebhookId) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND app_id = $2")
            .bind(id.as_str())
            .bind(app.as_str())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }
}

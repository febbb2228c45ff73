//! Apps: the unit of isolation. Every read and write of an app names its tenant, so one
//! tenant can never reach another's app through this repository.

use signalbox_core::{AppId, AppSettings, TenantId};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::page::{Cursor, Page, PageRequest};
use crate::{Store, StoreError, corrupt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    pub id: AppId,
    pub tenant_id: TenantId,
    pub name: String,
    pub settings: AppSettings,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, tenant_id, name, settings, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<AppRecord, StoreError> {
    let settings: String = row.try_get("settings")?;
    let settings = serde_json::from_str::<serde_json::Value>(&settings)
        .ok()
        .and_then(|v| AppSettings::from_json(v).ok())
        .ok_or(StoreError::CorruptRow { what: "app settings" })?;
    Ok(AppRecord {
        id: AppId::new(row.try_get::<String, _>("id")?).map_err(corrupt("app id"))?,
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?).map_err(corrupt("tenant id"))?,
        name: row.try_get("name")?,
        settings,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn settings_json(settings: &AppSettings) -> String {
    serde_json::to_string(settings).unwrap_or_else(|_| "{}".to_owned())
}

impl Store {
    pub async fn create_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO apps (id, tenant_id, name, settings, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(app.id.as_str())
        .bind(app.tenant_id.as_str())
        .bind(&app.name)
        .bind(settings_json(&app.settings))
        .bind(app.created_at)
        .bind(app.updated_at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    /// The app, if it exists and belongs to `tenant`.
    pub async fn app_of_tenant(&self, tenant: &TenantId, app: &AppId) -> Result<Option<AppRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM apps WHERE id = $1 AND tenant_id = $2"));
        let row = sqlx::query(sql).bind(app.as_str()).bind(tenant.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()
    }

    /// How many apps the tenant has.
    pub async fn count_apps(&self, tenant: &TenantId) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM apps WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// The app, whoever owns it: for callers already authenticated for this app (its keys).
    pub async fn app(&self, app: &AppId) -> Result<Option<AppRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM apps WHERE id = $1"));
        let row = sqlx::query(sql).bind(app.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn list_apps(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<AppRecord>, StoreError> {
        let (after_a, after_b, after_id) = page.bounds();
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM apps WHERE tenant_id = $1 AND (created_at > $2 OR (created_at = $3 AND id > $4)) \
             ORDER BY created_at, id LIMIT $5"
        ));
        let rows = sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(after_a)
            .bind(after_b)
            .bind(after_id)
            .bind(page.clamped_limit() + 1)
            .fetch_all(&self.pool)
            .await?;
        let apps = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(apps, page, |a| Cursor { created_at: a.created_at, id: a.id.to_string() }))
    }

    /// Replaces the app's name and settings. Returns false if the tenant has no such app.
    pub async fn update_app(&self, app: &AppRecord) -> Result<bool, StoreError> {
        let result =
            sqlx::query("UPDATE apps SET name = $1, settings = $2, updated_at = $3 WHERE id = $4 AND tenant_id = $5")
                .bind(&app.name)
                .bind(settings_json(&app.settings))
                .bind(app.updated_at)
                .bind(app.id.as_str())
                .bind(app.tenant_id.as_str())
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Deletes the app with its keys and memberships. Returns false if there was none.
    pub async fn delete_app(&self, tenant: &TenantId, app: &AppId) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM apps WHERE id = $1 AND tenant_id = $2")
            .bind(app.as_str())
            .bind(tenant.as_str())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }
}

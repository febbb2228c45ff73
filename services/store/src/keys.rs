//! App keys. The secret is stored sealed (encrypted under the master key by the caller):
//! edges need the secret itself to verify HS256 client tokens, so a hash would not do.

use signalbox_core::{AppId, KeyId, KeyScopes, TenantId};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::page::{Cursor, Page, PageRequest};
use crate::{Store, StoreError, corrupt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub app_id: AppId,
    /// The tenant owning the app (joined in on reads; ignored on insert).
    pub tenant_id: TenantId,
    pub name: String,
    pub scopes: KeyScopes,
    pub secret_sealed: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

const SELECT: &str = "SELECT k.id, k.app_id, a.tenant_id, k.name, k.scopes, k.secret_sealed, k.created_at, k.revoked_at \
                      FROM app_keys k JOIN apps a ON a.id = k.app_id";

fn from_row(row: &AnyRow) -> Result<KeyRecord, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(KeyRecord {
        id: KeyId::new(row.try_get::<String, _>("id")?).map_err(corrupt("key id"))?,
        app_id: AppId::new(row.try_get::<String, _>("app_id")?).map_err(corrupt("app id"))?,
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?).map_err(corrupt("tenant id"))?,
        name: row.try_get("name")?,
        scopes: KeyScopes::parse_list(&scopes).ok_or(StoreError::CorruptRow { what: "key scopes" })?,
        secret_sealed: row.try_get("secret_sealed")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl Store {
    pub async fn create_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO app_keys (id, app_id, name, scopes, secret_sealed, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.id.as_str())
        .bind(key.app_id.as_str())
        .bind(&key.name)
        .bind(key.scopes.to_string())
        .bind(&key.secret_sealed)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    /// How many keys of the app are not revoked.
    pub async fn count_live_keys(&self, app: &AppId) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM app_keys WHERE app_id = $1 AND revoked_at IS NULL")
            .bind(app.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// A key by id, revoked or not.
    pub async fn key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("{SELECT} WHERE k.id = $1"));
        let row = sqlx::query(sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn list_keys(&self, app: &AppId, page: &PageRequest) -> Result<Page<KeyRecord>, StoreError> {
        let (after_a, after_b, after_id) = page.bounds();
        let sql = sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE k.app_id = $1 AND (k.created_at > $2 OR (k.created_at = $3 AND k.id > $4)) \
             ORDER BY k.created_at, k.id LIMIT $5"
        ));
        let rows = sqlx::query(sql)
            .bind(app.as_str())
            .bind(after_a)
            .bind(after_b)
            .bind(after_id)
            .bind(page.clamped_limit() + 1)
            .fetch_all(&self.pool)
            .await?;
        let keys = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(keys, page, |k| Cursor { created_at: k.created_at, id: k.id.to_string() }))
    }

    /// Marks the key revoked. Returns false if the app has no such key; revoking twice
    /// keeps the first revocation time.
    pub async fn revoke_key(&self, app: &AppId, id: &KeyId, now: i64) -> Result<bool, StoreError> {
        let result =
            sqlx::query("UPDATE app_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND app_id = $3")
                .bind(now)
                .bind(id.as_str())
                .bind(app.as_str())
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() == 1)
    }
}

//! Tenants: customer accounts, authenticated by a management token stored only as a hash.

use signalbox_core::TenantId;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, corrupt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub id: TenantId,
    pub name: String,
    pub created_at: i64,
}

fn from_row(row: &AnyRow) -> Result<TenantRecord, StoreError> {
    Ok(TenantRecord {
        id: TenantId::new(row.try_get::<String, _>("id")?).map_err(corrupt("tenant id"))?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Stores a tenant with the hash of its token.
    pub async fn create_tenant(&self, tenant: &TenantRecord, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tenants (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(tenant.id.as_str())
            .bind(&tenant.name)
            .bind(token_hash)
            .bind(tenant.created_at)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_write)?;
        Ok(())
    }

    /// The tenant whose token hashes to `token_hash`.
    pub async fn tenant_by_token_hash(&self, token_hash: &str) -> Result<Option<TenantRecord>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }
}

//! The master key's check value: one value sealed under the master key when the database is
//! first used (by the caller: this crate never sees the key), and any one stored secret, so
//! that a start with another master key can be refused before it serves.

use sqlx::Row as _;

use crate::{Store, StoreError};

/// A secret sealed under the master key, with the context (associated data) it was sealed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSample {
    pub context: String,
    pub sealed: String,
}

impl Store {
    /// The check value, if one was stored.
    pub async fn master_key_check(&self) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT sealed FROM master_key_check WHERE id = 1").fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("sealed")).transpose()?)
    }

    /// Stores the check value. Returns false if another node stored one first (read it then).
    pub async fn create_master_key_check(&self, sealed: &str, now: i64) -> Result<bool, StoreError> {
        let result = sqlx::query("INSERT INTO master_key_check (id, sealed, created_at) VALUES (1, $1, $2)")
            .bind(sealed)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_write);
        match result {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// One secret sealed under the master key (an app key's, else a webhook's), if any is stored:
    /// for databases that have secrets from before the check value existed.
    pub async fn sealed_sample(&self) -> Result<Option<SealedSample>, StoreError> {
        for sql in [
            "SELECT id, secret_sealed FROM app_keys ORDER BY created_at LIMIT 1",
            "SELECT id, secret_sealed FROM webhooks ORDER BY created_at LIMIT 1",
        ] {
            if let Some(row) = sqlx::query(sql).fetch_optional(&self.pool).await? {
                return Ok(Some(SealedSample { context: row.try_get("id")?, sealed: row.try_get("secret_sealed")? }));
            }
        }
        Ok(None)
    }
}

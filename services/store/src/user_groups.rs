//! User group memberships made through the REST API: they apply to every current and future
//! connection of the user, until removed or until they expire.

use signalbox_core::{AppId, GroupName, HubName, UserId};
use sqlx::Row as _;

use crate::{Store, StoreError, corrupt};

impl Store {
    /// Adds (or refreshes) a membership; `expires_at` None means until removed.
    pub async fn add_user_group(
        &self,
        app: &AppId,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO user_groups (app_id, hub, user_id, group_name, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (app_id, hub, user_id, group_name) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(app.as_str())
        .bind(hub.as_str())
        .bind(user.as_str())
        .bind(group.as_str())
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    /// Removes a membership. Returns false if there was none.
    pub async fn remove_user_group(
        &self,
        app: &AppId,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
    ) -> Result<bool, StoreError> {
        let result =
            sqlx::query("DELETE FROM user_groups WHERE app_id = $1 AND hub = $2 AND user_id = $3 AND group_name = $4")
                .bind(app.as_str())
                .bind(hub.as_str())
                .bind(user.as_str())
                .bind(group.as_str())
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() == 1)
    }

    /// The user's unexpired groups, in name order.
    pub async fn user_groups(
        &self,
        app: &AppId,
        hub: &HubName,
        user: &UserId,
        now: i64,
    ) -> Result<Vec<GroupName>, StoreError> {
        let rows = sqlx::query(
            "SELECT group_name FROM user_groups WHERE app_id = $1 AND hub = $2 AND user_id = $3 \
             AND (expires_at IS NULL OR expires_at > $4) ORDER BY group_name",
        )
        .bind(app.as_str())
        .bind(hub.as_str())
        .bind(user.as_str())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("group_name")?;
                GroupName::new(name).map_err(corrupt("group name"))
            })
            .collect()
    }

    /// Deletes expired memberships; returns how many.
    pub async fn purge_expired_user_groups(&self, now: i64) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM user_groups WHERE expires_at IS NOT NULL AND expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}

//! Connections announced as connected to apps that want their disconnects: when an edge is
//! lost without saying goodbye, these are the disconnected events still owed.

use signalbox_core::AppId;
use sqlx::Row as _;

use crate::{Store, StoreError, corrupt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenConnection {
    pub app_id: AppId,
    pub connection_id: String,
    pub node: String,
    pub hub: String,
    pub user_id: Option<String>,
    pub groups: Vec<String>,
    pub connected_at: i64,
}

impl Store {
    /// Records an open connection (a repeat is ignored).
    pub async fn add_open_connection(&self, connection: &OpenConnection) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO open_connections (app_id, connection_id, node, hub, user_id, groups, connected_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (app_id, connection_id) DO NOTHING",
        )
        .bind(connection.app_id.as_str())
        .bind(&connection.connection_id)
        .bind(&connection.node)
        .bind(&connection.hub)
        .bind(connection.user_id.as_deref())
        .bind(serde_json::to_string(&connection.groups).unwrap_or_else(|_| "[]".into()))
        .bind(connection.connected_at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    pub async fn remove_open_connection(&self, app: &AppId, connection_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM open_connections WHERE app_id = $1 AND connection_id = $2")
            .bind(app.as_str())
            .bind(connection_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// An open connection moved to another node (its disconnect is owed if that one is lost).
    pub async fn move_open_connection(&self, app: &AppId, connection_id: &str, node: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE open_connections SET node = $3 WHERE app_id = $1 AND connection_id = $2")
            .bind(app.as_str())
            .bind(connection_id)
            .bind(node)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_write)?;
        Ok(())
    }

    /// The nodes that have open connections recorded.
    pub async fn nodes_with_open_connections(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT node FROM open_connections").fetch_all(&self.pool).await?;
        rows.iter().map(|r| r.try_get::<String, _>("node").map_err(StoreError::from)).collect()
    }

    /// Up to `limit` open connections recorded for `node` that connected before `before`.
    pub async fn open_connections_of_node(
        &self,
        node: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<OpenConnection>, StoreError> {
        let rows = sqlx::query(
            "SELECT app_id, connection_id, node, hub, user_id, groups, connected_at FROM open_connections \
             WHERE node = $1 AND connected_at < $2 ORDER BY connected_at LIMIT $3",
        )
        .bind(node)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let groups: String = row.try_get("groups")?;
                Ok(OpenConnection {
                    app_id: AppId::new(row.try_get::<String, _>("app_id")?).map_err(corrupt("app id"))?,
                    connection_id: row.try_get("connection_id")?,
                    node: row.try_get("node")?,
                    hub: row.try_get("hub")?,
                    user_id: row.try_get("user_id")?,
                    groups: serde_json::from_str(&groups).map_err(|_| StoreError::CorruptRow { what: "groups" })?,
                    connected_at: row.try_get("connected_at")?,
                })
            })
            .collect()
    }
}

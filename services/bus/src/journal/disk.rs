//! Where the [`LocalJournal`](super::LocalJournal) keeps history on disk: one SQLite file beside
//! the embedded mode's database (a file of its own, so appends never wait for the store's
//! writers, and the bus needs nothing of the store).
//!
//! The journal's state lives in memory; this file is its durable copy. An append is committed
//! here before it is acknowledged or delivered, in WAL mode with `synchronous = NORMAL`: a
//! committed append survives the process being killed (`kill -9`); an operating-system crash or
//! power loss may lose the last appends committed before it. Removals (retention) are written
//! with the next append and applied again when the file is opened, so lagging behind is safe.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use bytes::Bytes;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row as _, Sqlite, Transaction};

use super::Retention;

/// The file could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("history storage: {0}")]
pub struct DiskError(#[from] sqlx::Error);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS journal_apps (
    app TEXT PRIMARY KEY,
    origin INTEGER NOT NULL,
    max_age_seconds INTEGER NOT NULL,
    max_messages INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_groups (
    app TEXT NOT NULL,
    subject TEXT NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (app, subject)
);
CREATE TABLE IF NOT EXISTS journal_messages (
    app TEXT NOT NULL,
    seq INTEGER NOT NULL,
    subject TEXT NOT NULL,
    previous INTEGER NOT NULL,
    stored_at_ms INTEGER NOT NULL,
    dedup_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (app, seq)
);
";

/// One app's history as it was stored.
#[derive(Debug)]
pub(super) struct LoadedApp {
    pub(super) app: String,
    pub(super) origin: u64,
    pub(super) retention: Retention,
    /// Each group's last position ever stored.
    pub(super) groups: Vec<(String, u64)>,
    /// Oldest first.
    pub(super) messages: Vec<LoadedMessage>,
}

#[derive(Debug)]
pub(super) struct LoadedMessage {
    pub(super) seq: u64,
    pub(super) subject: String,
    pub(super) previous: u64,
    pub(super) stored_at_ms: i64,
    pub(super) dedup_id: String,
    pub(super) payload: Bytes,
}

/// A message to store.
#[derive(Debug)]
pub(super) struct NewMessage<'a> {
    pub(super) seq: u64,
    pub(super) subject: &'a str,
    pub(super) previous: u64,
    pub(super) stored_at_ms: i64,
    pub(super) dedup_id: &'a str,
    pub(super) payload: &'a [u8],
}

/// The journal's SQLite file.
#[derive(Debug, Clone)]
pub(super) struct Disk {
    /// One connection: SQLite has one writer anyway, and reads are served from memory.
    pool: SqlitePool,
}

// SQLite stores 64-bit signed integers: positions (microseconds since 1970) fit with room.
fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_sql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

impl Disk {
    /// Opens (creating if needed) the history file at `path`.
    pub(super) async fn open(path: &Path) -> Result<Self, DiskError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self { pool })
    }

    /// Everything stored, app by app.
    pub(super) async fn load(&self) -> Result<Vec<LoadedApp>, DiskError> {
        let mut apps: Vec<LoadedApp> =
            sqlx::query("SELECT app, origin, max_age_seconds, max_messages FROM journal_apps")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|row| LoadedApp {
                    app: row.get(0),
                    origin: from_sql(row.get(1)),
                    retention: Retention {
                        max_age: Duration::from_secs(from_sql(row.get(2))),
                        max_messages: u32::try_from(row.get::<i64, _>(3)).unwrap_or(u32::MAX),
                    },
                    groups: Vec::new(),
                    messages: Vec::new(),
                })
                .collect();
        for app in &mut apps {
            app.groups = sqlx::query("SELECT subject, last FROM journal_groups WHERE app = ?")
                .bind(&app.app)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|row| (row.get(0), from_sql(row.get(1))))
                .collect();
            app.messages = sqlx::query(
                "SELECT seq, subject, previous, stored_at_ms, dedup_id, payload FROM journal_messages \
                 WHERE app = ? ORDER BY seq",
            )
            .bind(&app.app)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|row| LoadedMessage {
                seq: from_sql(row.get(0)),
                subject: row.get(1),
                previous: from_sql(row.get(2)),
                stored_at_ms: row.get(3),
                dedup_id: row.get(4),
                payload: Bytes::from(row.get::<Vec<u8>, _>(5)),
            })
            .collect();
        }
        Ok(apps)
    }

    /// Records a new app's history (or its new retention).
    pub(super) async fn save_app(&self, app: &str, origin: u64, retention: Retention) -> Result<(), DiskError> {
        sqlx::query(
            "INSERT INTO journal_apps (app, origin, max_age_seconds, max_messages) VALUES (?, ?, ?, ?) \
             ON CONFLICT (app) DO UPDATE SET max_age_seconds = excluded.max_age_seconds, \
             max_messages = excluded.max_messages",
        )
        .bind(app)
        .bind(to_sql(origin))
        .bind(to_sql(retention.max_age.as_secs()))
        .bind(i64::from(retention.max_messages))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores one message and its group's new last position, and removes what retention
    /// dropped since the last write — one transaction, committed before this returns.
    pub(super) async fn append(&self, app: &str, message: NewMessage<'_>, removed: &[u64]) -> Result<(), DiskError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO journal_messages (app, seq, subject, previous, stored_at_ms, dedup_id, payload) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(app)
        .bind(to_sql(message.seq))
        .bind(message.subject)
        .bind(to_sql(message.previous))
        .bind(message.stored_at_ms)
        .bind(message.dedup_id)
        .bind(message.payload)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO journal_groups (app, subject, last) VALUES (?, ?, ?) \
             ON CONFLICT (app, subject) DO UPDATE SET last = excluded.last",
        )
        .bind(app)
        .bind(message.subject)
        .bind(to_sql(message.seq))
        .execute(&mut *tx)
        .await?;
        delete_messages(&mut tx, app, removed).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes messages retention dropped.
    pub(super) async fn remove_messages(&self, app: &str, removed: &[u64]) -> Result<(), DiskError> {
        let mut tx = self.pool.begin().await?;
        delete_messages(&mut tx, app, removed).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes an app's history entirely.
    pub(super) async fn remove_app(&self, app: &str) -> Result<(), DiskError> {
        let mut tx = self.pool.begin().await?;
        for table in ["journal_messages", "journal_groups", "journal_apps"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE app = ?")))
                .bind(app)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn delete_messages(tx: &mut Transaction<'_, Sqlite>, app: &str, seqs: &[u64]) -> Result<(), DiskError> {
    for seq in seqs {
        sqlx::query("DELETE FROM journal_messages WHERE app = ? AND seq = ?")
            .bind(app)
            .bind(to_sql(*seq))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

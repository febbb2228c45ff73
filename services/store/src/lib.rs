//! Signalbox's store: the durable state of tenants, apps, keys and user group memberships.
//!
//! # Layout
//! - this file: [`Store`] — connecting, migrating, readiness;
//! - [`tenants`], [`apps`], [`keys`], [`user_groups`], [`webhooks`]: one repository per table;
//! - [`master_key_check`]: what proves at start that the master key is the one in use;
//! - [`deliveries`]: the webhook delivery queue (ordered per connection, claimed with leases)
//!   and the delivery log; [`open_connections`]: disconnects owed if an edge is lost;
//! - [`page`]: cursor pagination shared by the list queries.
//!
//! One implementation serves both backends through sqlx's `Any` driver: every query is
//! plain SQL that Postgres and SQLite both accept, times are Unix milliseconds in `BIGINT`,
//! and each `$n` placeholder appears once, in order. The schema lives in
//! `migrations/postgres` and `migrations/sqlite`; one repository test suite runs against
//! both. Secrets arrive here already hashed or sealed: this crate never sees plaintext.
//!
//! Depends on `signalbox-core` only; never on the bus, the edge or the api.

pub mod apps;
pub mod deliveries;
pub mod keys;
pub mod master_key_check;
pub mod open_connections;
pub mod page;
pub mod tenants;
pub mod user_groups;
pub mod webhooks;

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions as _};

pub use apps::AppRecord;
pub use deliveries::{AttemptRecord, DeliveryRecord, NewDelivery};
pub use keys::KeyRecord;
pub use master_key_check::SealedSample;
pub use open_connections::OpenConnection;
pub use page::{Cursor, Page, PageRequest};
pub use tenants::TenantRecord;
pub use webhooks::WebhookRecord;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL (expected postgres:// or sqlite:)")]
    UnsupportedUrl,
    #[error("a record with this id or name already exists")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row is invalid ({what}): run `signalbox migrate` or check the database")]
    CorruptRow { what: &'static str },
}

impl StoreError {
    fn from_write(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Database(err),
        }
    }
}

/// A handle on the database; cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects to `postgres://…` or `sqlite:PATH` (the SQLite file is created if missing).
    /// Does not migrate: call [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            let separator = if path.contains('?') { '&' } else { '?' };
            (Backend::Sqlite, format!("sqlite://{path}{separator}mode=rwc"))
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let options = AnyConnectOptions::from_str(&url)?.log_statements(tracing::log::LevelFilter::Trace);
        let pool = AnyPoolOptions::new()
            // SQLite serialises writers anyway; a few connections serve concurrent reads.
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets readers proceed while one writer commits.
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies every pending migration of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// A cheap query, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn corrupt(what: &'static str) -> impl Fn(signalbox_core::InvalidName) -> StoreError {
    move |_| StoreError::CorruptRow { what }
}

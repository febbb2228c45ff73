//! A fresh Postgres database per test, on the cluster the test command started.

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

/// A database created for one test and dropped after it.
#[derive(Debug)]
pub struct TestDatabase {
    server_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates `signalbox_test_{random}` on the server named by `SIGNALBOX_TEST_POSTGRES_URL`
    /// (a URL to an existing database on it, such as `postgres://postgres@127.0.0.1:5433/postgres`).
    pub async fn create() -> Self {
        let server_url = std::env::var("SIGNALBOX_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!("SIGNALBOX_TEST_POSTGRES_URL is not set: run the tests with scripts/test.sh, which starts Postgres")
        });
        let name = format!("signalbox_test_{:016x}", random_u64());
        let mut conn = PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test Postgres at {server_url}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        Self { server_url, name }
    }

    /// The URL of this test's database.
    pub fn url(&self) -> String {
        match self.server_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{}", self.name),
            None => panic!("SIGNALBOX_TEST_POSTGRES_URL must end with /DATABASE"),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        // Drop runs outside any runtime we may block: a short-lived thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&server_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
    );
    hasher.finish()
}

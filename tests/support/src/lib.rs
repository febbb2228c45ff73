//! Real services for tests, started on free ports and stopped on drop.
//!
//! - [`NatsServer`]: a `nats-server` with JetStream, per test (or per suite);
//! - [`TestDatabase`]: a fresh Postgres database per test on the cluster that the test
//!   command started (`SIGNALBOX_TEST_POSTGRES_URL`), dropped afterwards;
//! - [`Process`]: a `signalbox` role (or any child) killed on drop, with its stdout lines;
//! - [`free_port`] and re-exported [`tempfile`].
//!
//! The test command (`scripts/test.sh`) provides the binaries and the Postgres cluster; a
//! test run without them fails with a message that says how to get them.

mod nats;
mod postgres;
mod process;

pub use nats::NatsServer;
pub use postgres::TestDatabase;
pub use process::{Process, signalbox_binary};
pub use tempfile;

use std::net::{Ipv4Addr, TcpListener};

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

//! The benchmark scenarios, one module each.

pub(crate) mod cluster;
pub(crate) mod custom;
pub(crate) mod fanout;
pub(crate) mod groups;
pub(crate) mod hundred_k;
pub(crate) mod idle;
pub(crate) mod presence;
pub(crate) mod rest;

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt as _;

use crate::Progress;
use crate::client::{self, Tally};

/// Client connections of a run; aborted when dropped.
#[derive(Debug, Default)]
pub(crate) struct Clients(Vec<tokio::task::JoinHandle<()>>);

impl Clients {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn extend(&mut self, mut other: Clients) {
        self.0.append(&mut other.0);
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Opens `count` connections to `server`, 256 at a time; connection `i` uses `path(i)` and
/// source address `source_offset + i`.
pub(crate) async fn connect_many(
    server: SocketAddr,
    count: usize,
    source_offset: usize,
    path: impl Fn(usize) -> String,
    tally: &Arc<Tally>,
    progress: &Progress,
) -> anyhow::Result<Clients> {
    let mut clients = Vec::with_capacity(count);
    let mut attempts = futures_util::stream::iter(0..count)
        .map(|i| {
            let path = path(i);
            let tally = Arc::clone(tally);
            async move { client::connect(server, client::source_address(source_offset + i), &path, tally).await }
        })
        .buffer_unordered(256);
    while let Some(result) = attempts.next().await {
        clients.push(result?);
        if clients.len() % 1000 == 0 {
            progress.say(&format!("{} connections open", clients.len()));
        }
    }
    Ok(Clients(clients))
}

pub(crate) fn per(value: f64, count: f64) -> f64 {
    if count > 0.0 { value / count } else { 0.0 }
}

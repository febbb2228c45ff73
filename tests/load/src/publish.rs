//! Publishing over REST the way a tenant's backend would: keep-alive connections, an app key,
//! and `{"n":SEQ,"t":MICROS,"p":PAD}` as the data so clients can measure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use crate::client::{Tally, now_micros};

/// Publishes to a list of groups, message `n` going to group `n % groups`.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    http: reqwest::Client,
    urls: Arc<[String]>,
    credential: String,
    pad: String,
}

impl Publisher {
    /// `frame_bytes` is the size the client frame should have (about; 100 in the scenarios).
    pub(crate) fn new(base: &str, app: &str, groups: &[String], credential: &str, frame_bytes: usize) -> Self {
        let urls: Vec<String> = groups.iter().map(|g| format!("{base}/v1/apps/{app}/groups/{g}/messages")).collect();
        // {"type":"message","event":"b","data":{"n":12345,"t":1795311568948123,"p":""},"group":"g"} is ~90 bytes.
        let pad = "x".repeat(frame_bytes.saturating_sub(90));
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap_or_default();
        Self { http, urls: urls.into(), credential: credential.to_owned(), pad }
    }

    /// Publishes to every connection of the app instead of groups.
    pub(crate) fn broadcast(base: &str, app: &str, credential: &str, frame_bytes: usize) -> Self {
        let mut publisher = Self::new(base, app, &[], credential, frame_bytes);
        publisher.urls = vec![format!("{base}/v1/apps/{app}/broadcast")].into();
        publisher
    }

    pub(crate) async fn publish(&self, n: u64) -> anyhow::Result<()> {
        let url = &self.urls[(n as usize) % self.urls.len()];
        let body = format!(r#"{{"event":"b","data":{{"n":{n},"t":{},"p":"{}"}}}}"#, now_micros(), self.pad);
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.credential)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("publish {n} got {}", response.status());
        }
        Ok(())
    }
}

/// Waits until message `n` has all its deliveries; false after `patience`.
pub(crate) async fn wait_complete(tally: &Tally, n: u64, expected: u32, patience: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let notified = tally.complete.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if tally.deliveries_of(n) >= expected {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return tally.deliveries_of(n) >= expected;
        }
    }
}

/// Publishes for `duration` keeping at most `window` messages incomplete; returns how many
/// were published. Stops early (with an error) if a message never completes.
pub(crate) async fn windowed(
    publisher: &Publisher,
    tally: &Tally,
    expected: u32,
    window: u64,
    duration: Duration,
    first: u64,
    progress: &crate::Progress,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut n = first;
    let mut requests = FuturesUnordered::new();
    while start.elapsed() < duration {
        if n >= first + window && !wait_complete(tally, n - window, expected, Duration::from_secs(10)).await {
            bail!(
                "message {} never completed ({} of {expected} deliveries)",
                n - window,
                tally.deliveries_of(n - window)
            );
        }
        // Spawned, so every request progresses while we wait for deliveries.
        let publisher = publisher.clone();
        requests.push(tokio::spawn(async move { publisher.publish(n).await }));
        n += 1;
        while requests.len() as u64 >= window {
            if let Some(result) = requests.next().await {
                result??;
            }
        }
        progress.tick(tally, n - first);
    }
    while let Some(result) = requests.next().await {
        result??;
    }
    for m in n.saturating_sub(window)..n {
        if !wait_complete(tally, m, expected, Duration::from_secs(10)).await {
            bail!("message {m} never completed");
        }
    }
    Ok(n - first)
}

/// Publishes at a fixed rate for `duration` without waiting for deliveries; returns how many.
pub(crate) async fn fixed_rate(
    publisher: &Publisher,
    rate: f64,
    duration: Duration,
    first: u64,
    tally: &Tally,
    progress: &crate::Progress,
) -> anyhow::Result<u64> {
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut n = first;
    let mut requests = FuturesUnordered::new();
    while start.elapsed() < duration {
        tokio::select! {
            _ = interval.tick() => {
                let publisher = publisher.clone();
                requests.push(tokio::spawn(async move { publisher.publish(n).await }));
                n += 1;
                progress.tick(tally, n - first);
            }
            Some(result) = requests.next(), if !requests.is_empty() => result??,
        }
    }
    while let Some(result) = requests.next().await {
        result??;
    }
    Ok(n - first)
}

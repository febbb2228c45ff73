//! Scenario 6: 100k connections across several edge processes through NATS, one broadcast to all: how
//! long until the last connection has it. Clients live in worker processes (a process holds
//! at most 20 000 files here), one per edge.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use crate::client::{Tally, now_micros};
use crate::procstat;
use crate::publish::{self, Publisher};
use crate::report::Report;
use crate::servers::{BenchApp, Binaries, Server};
use crate::{Progress, scenario};

#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    #[arg(long)]
    addr: std::net::SocketAddr,
    #[arg(long)]
    token: String,
    #[arg(long)]
    connections: usize,
    #[arg(long)]
    source_offset: usize,
}

/// A worker: opens its connections, says READY, waits for one message on all of them, says DONE.
pub(crate) async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let tally = Tally::new(1);
    let progress = Progress::new();
    let path = format!("/client?access_token={}", args.token);
    let clients =
        scenario::connect_many(args.addr, args.connections, args.source_offset, |_| path.clone(), &tally, &progress)
            .await?;
    tally.set_expected(clients.len() as u32);
    println!("READY {}", clients.len());
    publish::wait_complete(&tally, 0, clients.len() as u32, Duration::from_secs(120)).await;
    println!(
        "DONE {} {} {}",
        tally.deliveries_of(0),
        tally.first_delivery.load(Ordering::SeqCst),
        tally.last_delivery.load(Ordering::SeqCst)
    );
    drop(clients);
    Ok(())
}

pub(crate) async fn run(bins: &Binaries, quick: bool) -> anyhow::Result<Vec<Report>> {
    let (total, edge_count) = if quick { (400, 2) } else { (100_000, 6) };
    let progress = Progress::new();
    progress.say(&format!("{total} connections over {edge_count} edges"));
    let dir = std::env::temp_dir().join(format!("signalbox-bench-100k-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (nats, nats_url) = Server::nats(bins, &dir.join("nats")).await?;
    let api = Server::api(bins, &nats_url, &dir.join("api")).await?;
    let mut edges = Vec::new();
    for i in 0..edge_count {
        edges.push(Server::edge(bins, &nats_url, i).await?);
    }
    let app = BenchApp::create(&api.http_url()).await?;
    let token = app.token(&[]).await?;
    let rss_before: u64 = edges.iter().map(|e| procstat::rss_kib(e.pid())).sum();

    let connecting = Instant::now();
    let mut workers = Vec::new();
    for (i, edge) in edges.iter().enumerate() {
        let share = total / edge_count + usize::from(i < total % edge_count);
        let mut child = Command::new(&bins.load)
            .args(["worker", "--addr", &edge.addr.to_string(), "--token", &token])
            .args(["--connections", &share.to_string(), "--source-offset", &(i * 41).to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a worker")?;
        let lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        workers.push((child, lines));
    }
    let mut open = 0;
    for (_, lines) in &mut workers {
        let line =
            tokio::time::timeout(Duration::from_secs(600), lines.next_line()).await.context("worker connecting")??;
        let Some(count) = line.as_deref().and_then(|l| l.strip_prefix("READY ")) else { bail!("worker said {line:?}") };
        open += count.parse::<usize>()?;
    }
    let connect_seconds = connecting.elapsed().as_secs_f64();
    progress.say(&format!("{open} connections open in {connect_seconds:.1} s; broadcasting"));
    let rss_after: u64 = edges.iter().map(|e| procstat::rss_kib(e.pid())).sum();

    let publisher = Publisher::broadcast(&api.http_url(), &app.id, &app.credential, 100);
    let published_at = now_micros();
    publisher.publish(0).await?;
    let (mut delivered, mut last) = (0u64, 0u64);
    for (_, lines) in &mut workers {
        let line =
            tokio::time::timeout(Duration::from_secs(180), lines.next_line()).await.context("worker result")??;
        let fields: Vec<u64> = line
            .as_deref()
            .and_then(|l| l.strip_prefix("DONE "))
            .unwrap_or_default()
            .split(' ')
            .filter_map(|f| f.parse().ok())
            .collect();
        if let [count, _first, worker_last] = fields[..] {
            delivered += count;
            last = last.max(worker_last);
        }
    }
    let mut report = Report::new(
        if quick { "hundred-k-smoke" } else { "hundred-k" },
        format!("{total} connections on {edge_count} edges through NATS, one broadcast"),
    );
    report.row("connections open", format!("{open} of {total}"));
    report.row("time to open them all", format!("{connect_seconds:.1} s"));
    report.row(
        "edges' RSS per connection",
        format!("{:.2} KiB", scenario::per(rss_after.saturating_sub(rss_before) as f64, open as f64)),
    );
    report.row("deliveries of the broadcast", format!("{delivered}"));
    report.row(
        "time from publish until the last delivery",
        format!("{:.1} ms", last.saturating_sub(published_at) as f64 / 1000.0),
    );
    if delivered != open as u64 {
        anyhow::bail!("the broadcast reached {delivered} of {open} connections");
    }
    drop(workers);
    drop((edges, api, nats));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(vec![report])
}

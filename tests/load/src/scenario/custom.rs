//! `signalbox-load run`: drives a Signalbox that is already running (embedded or a cluster):
//! N connections in groups of a given size, publishing over REST at a fixed rate or flat out
//! (a window of messages in flight), verifying every delivery.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::client::Tally;
use crate::publish::{self, Publisher};
use crate::report::Report;
use crate::servers::BenchApp;
use crate::{Progress, scenario};

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The REST API, such as http://127.0.0.1:8080.
    #[arg(long)]
    api: String,
    /// Where clients connect (an edge or `serve`), such as 127.0.0.1:8080.
    #[arg(long)]
    edge: SocketAddr,
    /// The operator token, to create a tenant, an app and a key for the run.
    #[arg(long, env = "SIGNALBOX_ADMIN_TOKEN")]
    admin_token: String,
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Members per group (the connections are split into groups of this size).
    #[arg(long, default_value_t = 1000)]
    group_size: usize,
    /// Messages per second; 0 publishes flat out with `--window` messages in flight.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    #[arg(long, default_value_t = 16)]
    window: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Size of each client frame, in bytes.
    #[arg(long, default_value_t = 100)]
    frame_bytes: usize,
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<Vec<Report>> {
    let progress = Progress::new();
    let app = BenchApp::create_with_operator(&args.api, &args.admin_token).await?;
    let size = args.group_size.clamp(1, args.connections.max(1));
    let groups: Vec<String> = (0..args.connections.div_ceil(size)).map(|g| format!("load-{g}")).collect();
    let mut tokens = Vec::new();
    for group in &groups {
        tokens.push(app.token(std::slice::from_ref(group)).await?);
    }
    let tally = Tally::new(10_000_000);
    let clients = scenario::connect_many(
        args.edge,
        args.connections,
        0,
        |i| format!("/client?access_token={}", tokens[i / size]),
        &tally,
        &progress,
    )
    .await?;
    // Messages go round-robin over the groups; only full groups are published to, so every
    // message expects the same number of deliveries.
    let full: Vec<String> = groups.iter().take(args.connections / size).cloned().collect();
    anyhow::ensure!(!full.is_empty(), "fewer connections than one group");
    tally.set_expected(size as u32);
    let publisher = Publisher::new(&args.api, &app.id, &full, &app.credential, args.frame_bytes);
    let duration = Duration::from_secs(args.seconds);
    let started = std::time::Instant::now();
    let published = if args.rate > 0.0 {
        let sent = publish::fixed_rate(&publisher, args.rate, duration, 0, &tally, &progress).await?;
        for n in 0..sent {
            publish::wait_complete(&tally, n, size as u32, Duration::from_secs(10)).await;
        }
        sent
    } else {
        publish::windowed(&publisher, &tally, size as u32, args.window, duration, 0, &progress).await?
    };
    let seconds = started.elapsed().as_secs_f64();
    let (lost, duplicated) = tally.loss_and_duplicates(published);
    let mut report = Report::new("run", format!("{} connections in groups of {size}", clients.len()));
    report.row("messages published", format!("{published} ({:.0}/s)", published as f64 / seconds));
    report.row("deliveries per second", format!("{:.0}", tally.delivered.load(Ordering::SeqCst) as f64 / seconds));
    report.row(
        "latency p50 / p99 / p999",
        format!(
            "{} / {} / {} µs",
            tally.latency.quantile(0.5),
            tally.latency.quantile(0.99),
            tally.latency.quantile(0.999)
        ),
    );
    report.row("lost / duplicated deliveries", format!("{lost} / {duplicated}"));
    report.row("clients closed during the run", format!("{}", tally.closes.load(Ordering::SeqCst)));
    Ok(vec![report])
}

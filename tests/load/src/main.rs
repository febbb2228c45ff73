//! `signalbox-load`: the load generator and the benchmark scenarios of `docs/benchmarks.md`.
//!
//! Each scenario starts the servers it measures (release binaries by default), opens its
//! clients, publishes over REST, checks every delivery (count, loss, duplicates), and reports
//! server CPU per delivery from the server's own accounting, memory from the kernel, and
//! end-to-end latency from the publish time carried in each message. `--record` writes the
//! results into `docs/benchmarks.md` with the machine and the commit.

mod baseline;
mod client;
mod histogram;
mod procstat;
mod publish;
mod report;
mod scenario;
mod servers;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::client::Tally;

#[derive(Debug, Parser)]
#[command(name = "signalbox-load", about = "Signalbox load generator and benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The signalbox binary to measure.
    #[arg(long, global = true, default_value = "target/release/signalbox")]
    signalbox: PathBuf,
    /// The nats-server binary (for the cluster scenarios).
    #[arg(long, global = true, default_value = ".cache/nats/bin/nats-server")]
    nats_server: PathBuf,
    /// Small sizes and short runs: the CI smoke run.
    #[arg(long, global = true)]
    quick: bool,
    /// Write the results into docs/benchmarks.md.
    #[arg(long, global = true)]
    record: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// 1. Idle connections on one node: memory and CPU per connection.
    Idle,
    /// 2. One group of 10k members, published to flat out.
    Fanout,
    /// 3. Groups of 10 across all connections.
    Groups,
    /// 4. REST publish rate and latency, with authentication.
    Rest,
    /// 5. The fan-out across 2 edges through NATS, latency at half the maximum rate.
    Cluster,
    /// 6. 100k connections on several edges through NATS, one broadcast to all.
    HundredK,
    /// 7. The fan-out against a minimal tokio-tungstenite broadcast server.
    Baseline,
    /// 8. A join burst into one group with presence events: frames sent, batched.
    Presence,
    /// Every scenario, in order.
    All,
    /// Drive a Signalbox that is already running: N connections, groups, a fixed rate or flat out.
    Run(scenario::custom::RunArgs),
    /// (internal) A client process of the 100k scenario.
    Worker(scenario::hundred_k::WorkerArgs),
    /// (internal) The minimal broadcast server of the baseline.
    BaselineServer,
}

/// A live progress line on stderr.
#[derive(Debug)]
pub(crate) struct Progress {
    started: Instant,
    last: AtomicU64,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Self { started: Instant::now(), last: AtomicU64::new(0) }
    }

    /// Prints at most twice a second.
    pub(crate) fn tick(&self, tally: &Tally, published: u64) {
        let elapsed = self.started.elapsed();
        let tenths = elapsed.as_millis() as u64 / 500;
        if self.last.swap(tenths, Ordering::Relaxed) != tenths {
            let delivered = tally.delivered.load(Ordering::Relaxed);
            eprint!(
                "\r  {:>5.1}s  published {published:>9}  delivered {delivered:>11}  {:>10.0}/s  p99 {:>7} µs   ",
                elapsed.as_secs_f64(),
                delivered as f64 / elapsed.as_secs_f64().max(0.001),
                tally.latency.quantile(0.99)
            );
        }
    }

    pub(crate) fn say(&self, what: &str) {
        eprintln!("\r  {:>5.1}s  {what}{}", self.started.elapsed().as_secs_f64(), " ".repeat(40));
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// How long a scenario measures.
pub(crate) fn measure_for(quick: bool) -> Duration {
    if quick { Duration::from_secs(1) } else { Duration::from_secs(10) }
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".into(), |s| s.trim().to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bins = servers::Binaries {
        signalbox: cli.signalbox.clone(),
        nats_server: cli.nats_server.clone(),
        load: std::env::current_exe()?,
    };
    let quick = cli.quick;
    let reports = match cli.command {
        Command::Worker(args) => return scenario::hundred_k::worker(args).await,
        Command::BaselineServer => return baseline::serve().await,
        Command::Run(args) => scenario::custom::run(args).await?,
        Command::Idle => scenario::idle::run(&bins, quick).await?,
        Command::Fanout => scenario::fanout::run(&bins, quick, false).await?,
        Command::Groups => scenario::groups::run(&bins, quick).await?,
        Command::Rest => scenario::rest::run(&bins, quick).await?,
        Command::Cluster => scenario::cluster::run(&bins, quick).await?,
        Command::HundredK => scenario::hundred_k::run(&bins, quick).await?,
        Command::Baseline => scenario::fanout::run(&bins, quick, true).await?,
        Command::Presence => scenario::presence::run(&bins, quick).await?,
        Command::All => {
            let mut all = Vec::new();
            all.extend(scenario::idle::run(&bins, quick).await?);
            all.extend(scenario::fanout::run(&bins, quick, false).await?);
            all.extend(scenario::groups::run(&bins, quick).await?);
            all.extend(scenario::rest::run(&bins, quick).await?);
            all.extend(scenario::cluster::run(&bins, quick).await?);
            all.extend(scenario::hundred_k::run(&bins, quick).await?);
            all.extend(scenario::fanout::run(&bins, quick, true).await?);
            all.extend(scenario::presence::run(&bins, quick).await?);
            all
        }
    };
    for report in &reports {
        report.print();
    }
    if cli.record {
        let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
        let path = PathBuf::from("docs/benchmarks.md");
        report::record(&path, &reports, &procstat::machine(), &commit(), &format!("signalbox-load {command}"))?;
        eprintln!("recorded in {}", path.display());
    }
    Ok(())
}

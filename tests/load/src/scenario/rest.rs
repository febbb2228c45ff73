//! Scenario 4: REST publish rate and latency, with authentication on every request.

use std::sync::Arc;
use std::time::Instant;

use crate::histogram::Histogram;
use crate::procstat::Sample;
use crate::publish::Publisher;
use crate::report::Report;
use crate::servers::{BenchApp, Binaries, Server};
use crate::{Progress, measure_for, scenario};

pub(crate) async fn run(bins: &Binaries, quick: bool) -> anyhow::Result<Vec<Report>> {
    let concurrency = if quick { 4 } else { 32 };
    let progress = Progress::new();
    progress.say(&format!("REST publishing with {concurrency} concurrent requests"));
    let dir = std::env::temp_dir().join(format!("signalbox-bench-rest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = Server::embedded(bins, &dir).await?;
    let app = BenchApp::create(&server.http_url()).await?;
    let publisher = Publisher::new(&server.http_url(), &app.id, &["nobody-listens".to_owned()], &app.credential, 100);
    let latency = Arc::new(Histogram::default());
    let duration = measure_for(quick);
    let before = Sample::of(server.pid());
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let (publisher, latency) = (publisher.clone(), Arc::clone(&latency));
        workers.push(tokio::spawn(async move {
            let mut n = worker as u64;
            while start.elapsed() < duration {
                let sent = Instant::now();
                publisher.publish(n).await?;
                latency.record(sent.elapsed().as_micros() as u64);
                n += concurrency as u64;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let after = Sample::of(server.pid());
    let requests = latency.count() as f64;
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    let mut report = Report::new(
        if quick { "rest-smoke" } else { "rest" },
        format!("REST publish with authentication, {concurrency} concurrent requests"),
    );
    report.row("requests per second", format!("{:.0}", requests / seconds));
    report.row("latency p50 / p99", format!("{} / {} µs", latency.quantile(0.5), latency.quantile(0.99)));
    report.row(
        "server CPU per request",
        format!("{:.1} µs", scenario::per((after.cpu_ns - before.cpu_ns) as f64 / 1_000.0, requests)),
    );
    report.note("The load generator shares the two cores with the server; its own HTTP client costs as much CPU as the server does.");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(vec![report])
}

//! Scenario 2: one group of 10k members published to flat out — one message at a time ("one
//! by one": each member writes one frame per wake-up) and with a window of messages in flight
//! ("with backlog": queued frames coalesce into one write). Scenario 7 is the same against the
//! baseline server.

use std::sync::atomic::Ordering;

use crate::client::Tally;
use crate::procstat::Sample;
use crate::publish::{self, Publisher};
use crate::report::Report;
use crate::servers::{BenchApp, Binaries, Server};
use crate::{Progress, measure_for, scenario};

pub(crate) async fn run(bins: &Binaries, quick: bool, baseline: bool) -> anyhow::Result<Vec<Report>> {
    let members = if quick { 200 } else { 10_000 };
    let progress = Progress::new();
    progress.say(&format!("fan-out to {members} members{}", if baseline { " (baseline server)" } else { "" }));
    let dir = std::env::temp_dir().join(format!("signalbox-bench-fanout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = if baseline { Server::baseline(bins).await? } else { Server::embedded(bins, &dir).await? };
    let app =
        if baseline { BenchApp::baseline(&server.http_url())? } else { BenchApp::create(&server.http_url()).await? };
    let groups = vec!["fan".to_owned()];
    let token = if baseline { "none".to_owned() } else { app.token(&groups).await? };
    let tally = Tally::new(2_000_000);
    let path = format!("/client?access_token={token}");
    let clients = scenario::connect_many(server.addr, members, 0, |_| path.clone(), &tally, &progress).await?;
    tally.set_expected(members as u32);
    let publisher = Publisher::new(&server.http_url(), &app.id, &groups, &app.credential, 100);

    let mut next = publish::windowed(&publisher, &tally, members as u32, 4, measure_for(true), 0, &progress).await?;
    let (name, title) = match (baseline, quick) {
        (true, true) => ("baseline-smoke", "Baseline: minimal tokio-tungstenite broadcast server (smoke)".to_owned()),
        (true, false) => {
            ("baseline", format!("Baseline: minimal tokio-tungstenite broadcast server, {members} members"))
        }
        (false, true) => ("fanout-smoke", "Fan-out (smoke)".to_owned()),
        (false, false) => ("fanout", format!("Fan-out: one group of {members} members, published to flat out")),
    };
    let mut report = Report::new(name, title);
    for (label, window, target) in [("one by one", 1u64, 3.0), ("with backlog (16 in flight)", 16, 1.0)] {
        tally.latency.reset();
        let delivered_before = tally.delivered.load(Ordering::SeqCst);
        let before = Sample::of(server.pid());
        let published =
            publish::windowed(&publisher, &tally, members as u32, window, measure_for(quick), next, &progress).await?;
        let after = Sample::of(server.pid());
        next += published;
        let deliveries = (tally.delivered.load(Ordering::SeqCst) - delivered_before) as f64;
        let seconds = after.at.duration_since(before.at).as_secs_f64();
        let cpu_per = scenario::per((after.cpu_ns - before.cpu_ns) as f64 / 1_000.0, deliveries);
        report.row(format!("{label}: messages published"), format!("{published}"));
        report.row(format!("{label}: deliveries per second"), format!("{:.0}", deliveries / seconds));
        report.target(format!("{label}: server CPU per delivery"), cpu_per, "µs", target, true);
        report.row(
            format!("{label}: latency p50 / p99 / p999"),
            format!(
                "{} / {} / {} µs",
                tally.latency.quantile(0.5),
                tally.latency.quantile(0.99),
                tally.latency.quantile(0.999)
            ),
        );
    }
    let (lost, duplicated) = tally.loss_and_duplicates(next);
    report.row("lost / duplicated deliveries", format!("{lost} / {duplicated}"));
    report.row("clients closed during the run", format!("{}", tally.closes.load(Ordering::SeqCst)));
    report.row("server RSS at the end", format!("{} KiB", Sample::of(server.pid()).rss_kib));
    if lost + duplicated > 0 {
        anyhow::bail!("{lost} deliveries lost and {duplicated} duplicated");
    }
    drop(clients);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(vec![report])
}

//! Scenario 3: many small groups: every connection in one group of 10; messages go round-robin over
//! the groups, many in flight.

use std::sync::atomic::Ordering;

use crate::client::Tally;
use crate::procstat::Sample;
use crate::publish::{self, Publisher};
use crate::report::Report;
use crate::servers::{BenchApp, Binaries, Server};
use crate::{Progress, measure_for, scenario};

pub(crate) async fn run(bins: &Binaries, quick: bool) -> anyhow::Result<Vec<Report>> {
    let connections = if quick { 200 } else { 10_000 };
    let size = 10;
    let group_count = connections / size;
    let progress = Progress::new();
    progress.say(&format!("{group_count} groups of {size}"));
    let dir = std::env::temp_dir().join(format!("signalbox-bench-groups-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = Server::embedded(bins, &dir).await?;
    let app = BenchApp::create(&server.http_url()).await?;
    let groups: Vec<String> = (0..group_count).map(|g| format!("g{g}")).collect();
    let mut tokens = Vec::with_capacity(group_count);
    for group in &groups {
        tokens.push(app.token(std::slice::from_ref(group)).await?);
    }
    let tally = Tally::new(4_000_000);
    let clients = scenario::connect_many(
        server.addr,
        connections,
        0,
        |i| format!("/client?access_token={}", tokens[i / size]),
        &tally,
        &progress,
    )
    .await?;
    tally.set_expected(size as u32);
    let publisher = Publisher::new(&server.http_url(), &app.id, &groups, &app.credential, 100);
    let window = 64;
    let warm = publish::windowed(&publisher, &tally, size as u32, window, measure_for(true), 0, &progress).await?;
    tally.latency.reset();
    let delivered_before = tally.delivered.load(Ordering::SeqCst);
    let before = Sample::of(server.pid());
    let published =
        publish::windowed(&publisher, &tally, size as u32, window, measure_for(quick), warm, &progress).await?;
    let after = Sample::of(server.pid());
    let deliveries = (tally.delivered.load(Ordering::SeqCst) - delivered_before) as f64;
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    let cpu_us = (after.cpu_ns - before.cpu_ns) as f64 / 1_000.0;
    let mut report = Report::new(
        if quick { "groups-smoke" } else { "groups" },
        format!("Many small groups: {group_count} groups of {size}, {window} messages in flight"),
    );
    report.row("messages published", format!("{published}"));
    report.row("deliveries per second", format!("{:.0}", deliveries / seconds));
    report.row(
        "server CPU per delivery (REST ingestion included)",
        format!("{:.2} µs", scenario::per(cpu_us, deliveries)),
    );
    report.row("server CPU per published message", format!("{:.2} µs", scenario::per(cpu_us, published as f64)));
    report.row(
        "latency p50 / p99 / p999",
        format!(
            "{} / {} / {} µs",
            tally.latency.quantile(0.5),
            tally.latency.quantile(0.99),
            tally.latency.quantile(0.999)
        ),
    );
    let (lost, duplicated) = tally.loss_and_duplicates(warm + published);
    report.row("lost / duplicated deliveries", format!("{lost} / {duplicated}"));
    report.note("Each message reaches 10 connections, so the REST request that publishes it (parsing, authentication, routing) weighs on every delivery; scenario 2 isolates the fan-out itself.");
    if lost + duplicated > 0 {
        anyhow::bail!("{lost} deliveries lost and {duplicated} duplicated");
    }
    drop(clients);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(vec![report])
}

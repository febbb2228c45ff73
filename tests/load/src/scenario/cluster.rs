//! Scenario 5: the fan-out across two edges through NATS — the maximum rate, then end-to-end
//! latency at half of it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::client::Tally;
use crate::procstat::{self, Sample};
use crate::publish::{self, Publisher};
use crate::report::Report;
use crate::servers::{BenchApp, Binaries, Server};
use crate::{Progress, measure_for, scenario};

pub(crate) async fn run(bins: &Binaries, quick: bool) -> anyhow::Result<Vec<Report>> {
    let members = if quick { 200 } else { 10_000 };
    let progress = Progress::new();
    progress.say(&format!("fan-out to {members} members over two edges and NATS"));
    let dir = std::env::temp_dir().join(format!("signalbox-bench-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (nats, nats_url) = Server::nats(bins, &dir.join("nats")).await?;
    let api = Server::api(bins, &nats_url, &dir.join("api")).await?;
    let edges = [Server::edge(bins, &nats_url, 0).await?, Server::edge(bins, &nats_url, 1).await?];
    let app = BenchApp::create(&api.http_url()).await?;
    let groups = vec!["fan".to_owned()];
    let token = app.token(&groups).await?;
    let tally = Tally::new(2_000_000);
    let path = format!("/client?access_token={token}");
    let half = members / 2;
    let mut clients = scenario::connect_many(edges[0].addr, half, 0, |_| path.clone(), &tally, &progress).await?;
    clients.extend(
        scenario::connect_many(edges[1].addr, members - half, half, |_| path.clone(), &tally, &progress).await?,
    );
    tally.set_expected(members as u32);
    let publisher = Publisher::new(&api.http_url(), &app.id, &groups, &app.credential, 100);

    let mut next = publish::windowed(&publisher, &tally, members as u32, 4, measure_for(true), 0, &progress).await?;
    // The latency of a message alone: the floor everything else is compared to.
    let probe = if quick { Duration::from_millis(500) } else { Duration::from_secs(3) };
    progress.say("measuring the latency of a lone message");
    tally.latency.reset();
    for _ in 0..(if quick { 2 } else { 5 }) {
        publisher.publish(next).await?;
        publish::wait_complete(&tally, next, members as u32, Duration::from_secs(10)).await;
        next += 1;
    }
    let alone = (tally.latency.quantile(0.5), tally.latency.quantile(0.99));
    // The maximum *sustainable* rate: the highest fixed rate at which latency does not grow
    // beyond twice that of a lone message plus 20 ms. (A pipelined "flat out" would batch
    // deliveries and overstate what a steady stream can get.)
    let bound = alone.1 * 2 + 20_000;
    let sustainable = |tally: &Tally| tally.latency.quantile(0.99) <= bound;
    let (mut good, mut bad) = (0.0f64, f64::INFINITY);
    let mut rate = 2.0f64;
    for _ in 0..12 {
        progress.say(&format!("probing {rate:.0} messages/s"));
        tally.latency.reset();
        let sent = publish::fixed_rate(&publisher, rate, probe, next, &tally, &progress).await?;
        let mut complete = true;
        for n in next..next + sent {
            complete &= publish::wait_complete(&tally, n, members as u32, Duration::from_secs(10)).await;
        }
        next += sent;
        if complete && sustainable(&tally) {
            good = rate;
        } else {
            bad = rate;
        }
        rate = if bad.is_infinite() { rate * 2.0 } else { (good + bad) / 2.0 };
        if bad.is_finite() && bad - good <= good.max(1.0) * 0.1 {
            break;
        }
    }
    let max_rate = good.max(1.0);
    let rate = max_rate / 2.0;
    progress.say(&format!("publishing at {rate:.0} messages/s (half the maximum)"));
    tally.latency.reset();
    let cpu_before: Vec<Sample> = edges.iter().map(|e| Sample::of(e.pid())).collect();
    let nats_before = procstat::cpu_ns(nats.pid());
    let delivered_before = tally.delivered.load(Ordering::SeqCst);
    let load_before = procstat::cpu_ns(std::process::id());
    let published = publish::fixed_rate(&publisher, rate, measure_for(quick), next, &tally, &progress).await?;
    for n in next..next + published {
        publish::wait_complete(&tally, n, members as u32, Duration::from_secs(10)).await;
    }
    next += published;
    let deliveries = (tally.delivered.load(Ordering::SeqCst) - delivered_before) as f64;
    let edge_cpu: u64 =
        edges.iter().zip(&cpu_before).map(|(e, before)| Sample::of(e.pid()).cpu_ns - before.cpu_ns).sum();
    let nats_cpu = procstat::cpu_ns(nats.pid()) - nats_before;
    let load_cpu = procstat::cpu_ns(std::process::id()) - load_before;

    let mut report = Report::new(
        if quick { "cluster-smoke" } else { "cluster" },
        format!("Fan-out across 2 edges through NATS: {members} members"),
    );
    report.row(
        "maximum sustainable rate (p99 within 2 × alone + 20 ms)",
        format!("{max_rate:.0} messages/s = {:.0} deliveries/s", max_rate * members as f64),
    );
    report.row("a lone message: latency p50 / p99", format!("{} / {} µs", alone.0, alone.1));
    report.row("measured rate (half the maximum)", format!("{rate:.1} messages/s"));
    report.row("latency p50 / p999", format!("{} / {} µs", tally.latency.quantile(0.5), tally.latency.quantile(0.999)));
    report.target("latency p99", tally.latency.quantile(0.99) as f64 / 1000.0, "ms", 20.0, true);
    report.row("edge CPU per delivery", format!("{:.2} µs", scenario::per(edge_cpu as f64 / 1000.0, deliveries)));
    report.row("NATS CPU per message", format!("{:.1} µs", scenario::per(nats_cpu as f64 / 1000.0, published as f64)));
    report.row(
        "load generator CPU per delivery (same two cores)",
        format!("{:.2} µs", scenario::per(load_cpu as f64 / 1000.0, deliveries)),
    );
    let (lost, duplicated) = tally.loss_and_duplicates(next);
    report.row("lost / duplicated deliveries", format!("{lost} / {duplicated}"));
    if lost + duplicated > 0 {
        anyhow::bail!("{lost} deliveries lost and {duplicated} duplicated");
    }
    drop(clients);
    drop((edges, api, nats));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(vec![report])
}

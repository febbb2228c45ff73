//! Scenario 1: idle connections on one node: resident memory and kernel memory per connection, and the
//! CPU an idle connection costs per second (heartbeats).

use std::time::Duration;

use crate::client::Tally;
use crate::procstat::{self, Sample};
use crate::report::Report;
use crate::servers::{BenchApp, Binaries, Server};
use crate::{Progress, scenario};

pub(crate) async fn run(bins: &Binaries, quick: bool) -> anyhow::Result<Vec<Report>> {
    let sizes: &[usize] = if quick { &[200] } else { &[10_000, 19_000] };
    let idle_for = if quick { Duration::from_secs(2) } else { Duration::from_secs(40) };
    let mut reports = Vec::new();
    for &size in sizes {
        let progress = Progress::new();
        progress.say(&format!("idle: {size} connections"));
        let dir = std::env::temp_dir().join(format!("signalbox-bench-idle-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let server = Server::embedded(bins, &dir).await?;
        let app = BenchApp::create(&server.http_url()).await?;
        let token = app.token(&[]).await?;
        let tally = Tally::new(0);
        // Let the server settle before the baseline.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (before, slab_before, buffers_before) =
            (Sample::of(server.pid()), procstat::slab_kib(), procstat::tcp_buffers_kib());
        let path = format!("/client?access_token={token}");
        let clients = scenario::connect_many(server.addr, size, 0, |_| path.clone(), &tally, &progress).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (after, slab_after, buffers_after) =
            (Sample::of(server.pid()), procstat::slab_kib(), procstat::tcp_buffers_kib());
        progress.say(&format!("measuring idle CPU for {} s", idle_for.as_secs()));
        let cpu_start = procstat::cpu_ns(server.pid());
        tokio::time::sleep(idle_for).await;
        let idle_cpu = procstat::cpu_ns(server.pid()) - cpu_start;
        let open = clients.len() as f64;

        let rss = scenario::per(after.rss_kib.saturating_sub(before.rss_kib) as f64, open);
        // Each loopback connection has two sockets (ours and the client's): the server's share is half.
        let kernel = scenario::per(slab_after.saturating_sub(slab_before) as f64, 2.0 * open)
            + scenario::per(buffers_after.saturating_sub(buffers_before) as f64, 2.0 * open);
        let mut report = Report::new(
            if size >= 19_000 { "idle-19k" } else { "idle-10k" },
            format!("Idle: {size} connections on one node"),
        );
        if quick {
            report.scenario = "idle-smoke";
        }
        report.row("connections open", format!("{open}"));
        report.row("server RSS before / after", format!("{} / {} KiB", before.rss_kib, after.rss_kib));
        report.row("server RSS per connection", format!("{rss:.2} KiB"));
        report.row("kernel memory per server socket (slab + buffers)", format!("{kernel:.2} KiB"));
        report.target("memory per idle connection, process + kernel", rss + kernel, "KiB", 8.0, true);
        let per_second = scenario::per(idle_cpu as f64 / 1_000.0, open * idle_for.as_secs_f64());
        report.row("CPU per idle connection per second (heartbeats)", format!("{per_second:.3} µs"));
        report.row("closed during the run", format!("{}", tally.closes.load(std::sync::atomic::Ordering::Relaxed)));
        reports.push(report);
        drop(clients);
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(reports)
}

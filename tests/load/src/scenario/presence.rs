//! Scenario 8: a join burst into one group with presence events on — N clients join at once,
//! and every member hears who joined. Sent one by one that would be N × (N + 1) / 2 frames;
//! batched, each member gets at most one presence frame per interval.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::client::Tally;
use crate::report::Report;
use crate::servers::{self, BenchApp, Binaries, Server};
use crate::{Progress, scenario};

/// A counter from the server's /metrics (0 when absent).
async fn metric(server: &Server, name: &str) -> anyhow::Result<f64> {
    let text = server.metrics().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

pub(crate) async fn run(bins: &Binaries, quick: bool) -> anyhow::Result<Vec<Report>> {
    let members = if quick { 200 } else { 10_000 };
    let progress = Progress::new();
    progress.say(&format!("{members} clients join one group with presence events"));
    let dir = std::env::temp_dir().join(format!("signalbox-bench-presence-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = Server::embedded(bins, &dir).await?;
    let settings = serde_json::json!({"presence": {"events": "members"}});
    let app = BenchApp::create_with_settings(&server.http_url(), servers::ADMIN_TOKEN, settings).await?;
    let token = app.token(&["room".to_owned()]).await?;
    let tally = Tally::new(1);
    let updates_before = metric(&server, "signalbox_presence_updates_published_total").await?;
    let started = Instant::now();
    let clients =
        scenario::connect_many(server.addr, members, 0, |_| format!("/client?access_token={token}"), &tally, &progress)
            .await?;
    let joined_in = started.elapsed();
    // Quiet: no presence frame for a second.
    let mut last = (tally.other_frames.load(Ordering::SeqCst), Instant::now());
    while last.1.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let frames = tally.other_frames.load(Ordering::SeqCst);
        if frames != last.0 {
            last = (frames, Instant::now());
        }
    }
    let settled_in = last.1.duration_since(started);
    let frames = tally.other_frames.load(Ordering::SeqCst) as f64;
    let updates = metric(&server, "signalbox_presence_updates_published_total").await? - updates_before;
    let one_by_one = (members as f64) * (members as f64 + 1.0) / 2.0;
    let presence = app.backend.group_presence(&app.id, "room").await?;
    let mut report = Report::new(
        if quick { "presence-smoke" } else { "presence" },
        format!("Presence events: {members} clients join one group at once"),
    );
    report.row("joins completed in", format!("{:.2} s", joined_in.as_secs_f64()));
    report.row("last presence frame after", format!("{:.2} s", settled_in.as_secs_f64()));
    report.row("presence updates published to the routing plane", format!("{updates:.0}"));
    report.row("presence frames delivered to clients", format!("{frames:.0}"));
    report.row("frames per member", format!("{:.1}", scenario::per(frames, members as f64)));
    report.row("frames if every join were sent to every member", format!("{one_by_one:.0}"));
    report.row("REST presence count afterwards", format!("{}", presence["connections"]));
    report.note("Each node publishes one update per group per 250 ms interval and delivers one frame per member per interval, with at most 100 joins listed (then `truncated`, and clients ask for the list).");
    if frames >= one_by_one {
        anyhow::bail!("{frames} presence frames: not batched");
    }
    if presence["connections"] != members {
        anyhow::bail!("presence counts {} connections, expected {members}", presence["connections"]);
    }
    drop(clients);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(vec![report])
}

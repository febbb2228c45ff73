//! The embedded default's history outlives the process: `signalbox serve` stopped by SIGTERM or
//! killed with `kill -9`, then started again on the same data directory, still holds every
//! acknowledged message, so a client recovering from an old position gets all of them, in
//! order, once — and a client whose position is from a history that is gone is told so,
//! never given a silent gap.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use signalbox_sdk::realtime::{ConnectOptions, Connection, Event, GroupRecovery};
use signalbox_sdk::server::Client;
use signalbox_test_support::tempfile::TempDir;
use signalbox_test_support::{Process, signalbox_binary};
use signalbox_tests::cluster::Cluster;
use signalbox_tests::{DEADLINE, eventually, publish_stored, within};

const ADMIN_TOKEN: &str = "sba_restart_test_operator_token_0123456789";

/// `signalbox serve` as a process on a data directory.
struct Serve {
    process: Process,
    base: String,
}

impl Serve {
    fn start(data_dir: &std::path::Path) -> Self {
        let mut command = Command::new(signalbox_binary());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("SIGNALBOX_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SIGNALBOX_LOG", "warn");
        let process = Process::spawn("serve", command);
        let rest = process.wait_for_line("  REST API", DEADLINE);
        let base = rest.trim().strip_suffix("/v1").expect("the REST API line ends in /v1").to_owned();
        Self { process, base }
    }

    fn ws_url(&self) -> String {
        format!("{}/client", self.base.replacen("http://", "ws://", 1))
    }
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    Term,
    Kill,
}

impl Stop {
    fn stop(self, serve: &mut Serve) {
        match self {
            Self::Term => {
                let status = serve.process.terminate(Duration::from_secs(30));
                assert!(status.is_some_and(|s| s.success()), "SIGTERM ends serve cleanly: {status:?}");
            }
            Self::Kill => serve.process.kill(),
        }
    }
}

/// Connects recovering `group` from `position`; returns the data of every replayed message
/// (with its position) and the recovery outcome.
async fn recover(ws_url: &str, token: &str, group: &str, position: u64) -> (Vec<(u64, Value)>, GroupRecovery) {
    let options = ConnectOptions { recover: BTreeMap::from([(group.to_owned(), position)]) };
    let mut connection = within("connect", Connection::connect_with(ws_url, token, &options)).await.expect("connects");
    let mut replayed = Vec::new();
    let outcome = within("the recovery frame", async {
        loop {
            match connection.next_event().await {
                Some(Event::Message(message)) => replayed.push((message.seq.expect("a position"), message.data)),
                Some(Event::Recovery { mut groups, .. }) => return groups.remove(0),
                Some(Event::Closed { code, reason }) => panic!("closed ({code} {reason}) before recovery"),
                Some(_) => {}
                None => panic!("no recovery frame"),
            }
        }
    })
    .await;
    (replayed, outcome)
}

/// A tenant, an app whose `room-*` groups keep history, and a key; returns the key's
/// credential, the app id and a client token for `room-1`.
async fn app_with_history(serve: &Serve) -> (String, String, String) {
    let operator = Client::new(&serve.base, ADMIN_TOKEN).expect("client");
    let tenant = operator.create_tenant("restart").await.expect("tenant");
    let tenant = operator.with_bearer(&tenant.token);
    let settings = json!({"history": {"groups": ["room-*"], "max_messages": 1000}});
    let app = tenant.create_app("restart", settings).await.expect("app");
    let key = tenant.create_key(&app.id, Some("backend"), None).await.expect("key");
    let backend = tenant.with_bearer(&key.credential);
    let request = signalbox_sdk::server::TokenRequest {
        groups: vec!["room-1".into()],
        ttl_seconds: Some(3600),
        ..Default::default()
    };
    let token = backend.mint_token(&app.id, &request).await.expect("token").token;
    (key.credential, app.id, token)
}

/// The replay expected after a recovery from the 50th of 300 messages numbered 0…299 and one
/// more (300) published after the restart.
fn from_the_50th(positions: &[u64], after_restart: u64) -> Vec<(u64, Value)> {
    positions[50..].iter().copied().chain([after_restart]).zip((50..=300).map(|i| json!(i))).collect()
}

async fn every_acknowledged_message_is_recovered_after(stop: Stop) {
    let dir = TempDir::new().expect("temp dir");
    let mut serve = Serve::start(dir.path());
    let (key, app, token) = app_with_history(&serve).await;
    let backend = Client::new(&serve.base, &key).expect("client");
    let mut positions = Vec::new();
    for i in 0..300 {
        positions.push(publish_stored(&backend, &app, "room-1", json!(i)).await);
    }

    stop.stop(&mut serve);
    let serve = Serve::start(dir.path());
    let backend = Client::new(&serve.base, &key).expect("client");
    let after_restart = publish_stored(&backend, &app, "room-1", json!(300)).await;
    assert!(after_restart > positions[299], "positions go on growing across the restart");

    let (replayed, outcome) = recover(&serve.ws_url(), &token, "room-1", positions[49]).await;
    let expected: Vec<(u64, Value)> =
        positions[50..].iter().copied().chain([after_restart]).zip((50..=300).map(|i| json!(i))).collect();
    assert_eq!(replayed.len(), expected.len(), "every acknowledged message after the 50th, once");
    assert_eq!(replayed, expected, "in order, with their positions");
    assert!(outcome.recovered, "{outcome:?}");
}

#[tokio::test]
async fn history_survives_sigterm() {
    every_acknowledged_message_is_recovered_after(Stop::Term).await;
}

#[tokio::test]
async fn history_survives_kill_9() {
    every_acknowledged_message_is_recovered_after(Stop::Kill).await;
}

/// With its history file gone (a lost disk, say), a restarted server begins a new history: an
/// old position is reported as `reset`, never as recovered, though the new history's first
/// message names no predecessor.
#[tokio::test]
async fn a_position_from_a_lost_history_is_reported_as_reset() {
    let dir = TempDir::new().expect("temp dir");
    let mut serve = Serve::start(dir.path());
    let (key, app, token) = app_with_history(&serve).await;
    let backend = Client::new(&serve.base, &key).expect("client");
    let mut positions = Vec::new();
    for i in 0..10 {
        positions.push(publish_stored(&backend, &app, "room-1", json!(i)).await);
    }
    Stop::Kill.stop(&mut serve);
    for file in ["history.db", "history.db-wal", "history.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(file));
    }
    let serve = Serve::start(dir.path());
    let backend = Client::new(&serve.base, &key).expect("client");
    let new = publish_stored(&backend, &app, "room-1", json!("new")).await;

    let (replayed, outcome) = recover(&serve.ws_url(), &token, "room-1", positions[4]).await;
    assert_eq!(replayed, vec![(new, json!("new"))], "what the new history holds is replayed");
    assert!(!outcome.recovered);
    assert_eq!(outcome.reason.as_deref(), Some("reset"), "{outcome:?}");
}

/// The same promise in a cluster, where history is in JetStream: NATS killed with `kill -9`
/// and started again, one edge killed, and a client recovering on the other still gets every
/// acknowledged message.
#[tokio::test]
async fn a_cluster_recovers_everything_after_nats_and_the_edge_are_killed() {
    let mut cluster = Cluster::start(2).await;
    let app = cluster.app_with(json!({"history": {"groups": ["room-*"], "max_messages": 1000}})).await;
    let token = app.token(None, &["room-1"], &[]).await;
    let mut positions = Vec::new();
    for i in 0..300 {
        positions.push(publish_stored(&app.backend, &app.id, "room-1", json!(i)).await);
    }

    cluster.nats.stop();
    cluster.edges.remove(0).process.kill();
    cluster.nats.start_again();
    cluster.wait_ready().await;
    let after_restart = eventually("a publish once NATS is back", || async {
        let response = app
            .backend
            .send(
                reqwest::Method::POST,
                &["v1", "apps", &app.id, "groups", "room-1", "messages"],
                Some(&json!({"event": "e", "data": 300})),
            )
            .await
            .ok()?;
        // 503 while the api reconnects; a 503 may still have gone out, so only the first
        // acknowledged publish counts and the test waits for NATS before publishing again.
        (response.status().as_u16() == 202).then_some(())?;
        response.json::<Value>().await.ok()?["position"].as_u64()
    })
    .await;

    let (replayed, outcome) = recover(&cluster.edges[0].ws_url(), &token, "room-1", positions[49]).await;
    let mut expected = from_the_50th(&positions, after_restart);
    // A publish answered 503 while NATS was away may have been stored anyway: it is in the
    // history too, just before the acknowledged one, and must be replayed like any other.
    let unacknowledged: Vec<(u64, Value)> =
        replayed.iter().filter(|(seq, _)| *seq > positions[299] && *seq < after_restart).cloned().collect();
    let at = expected.len() - 1;
    expected.splice(at..at, unacknowledged);
    assert_eq!(replayed, expected, "every acknowledged message after the 50th, once, in order");
    assert!(outcome.recovered, "{outcome:?}");
}

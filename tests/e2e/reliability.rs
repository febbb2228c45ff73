//! Nothing lost: fault tests with real processes — an edge killed, two api nodes racing, NATS
//! restarted, an edge drained, a slow client among many, a retried publish on another node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use signalbox_sdk::realtime::{ConnectOptions, Connection, Event};
use signalbox_sdk::reconnecting::{Client, ClientEvent, Options, TokenProvider};
use signalbox_sdk::server::Client as Rest;
use signalbox_tests::cluster::{Cluster, Shape};
use signalbox_tests::{TestApp, eventually, next_message, within};

const HISTORY: &str = r#"{"history": {"groups": ["stream"], "max_messages": 100000, "max_age_seconds": 3600}}"#;

fn settings() -> Value {
    serde_json::from_str(HISTORY).expect("json")
}

fn provider(token: String) -> TokenProvider {
    Arc::new(move || {
        let token = token.clone();
        Box::pin(async move { Ok(token) })
    })
}

/// Publishes `n` to the `stream` group through `rest`, retrying until accepted (the same
/// Idempotency-Key each time, so a retry of a publish that went through is not a second one).
async fn publish_accepted(rest: &Rest, app: &str, n: u64) {
    let body = json!({"event": "n", "data": n});
    for attempt in 0.. {
        let response = rest
            .http_request(reqwest::Method::POST, &["v1", "apps", app, "groups", "stream", "messages"])
            .header("Idempotency-Key", format!("n-{n}"))
            .json(&body)
            .send()
            .await;
        match response {
            Ok(r) if r.status().as_u16() == 202 => return,
            Ok(r) if r.status().as_u16() == 503 || r.status().as_u16() == 409 => {}
            Ok(r) => panic!("publish {n}: {}", r.status()),
            Err(_) => {}
        }
        assert!(attempt < 2_000, "publish {n} never accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads messages from a reconnecting client until it has `count` numbers.
async fn collect(client: &mut Client, count: usize) -> (Vec<u64>, Vec<ClientEvent>) {
    let mut numbers = Vec::new();
    let mut other = Vec::new();
    within("every message", async {
        while numbers.len() < count {
            match client.next_event().await {
                Some(ClientEvent::Message(message)) => numbers.push(message.data.as_u64().expect("number")),
                Some(event) => other.push(event),
                None => break,
            }
        }
    })
    .await;
    (numbers, other)
}

/// A reconnecting client whose first choice is edge `first`.
fn client_on(cluster: &Cluster, first: usize, token: &str) -> Client {
    let mut urls: Vec<String> = cluster.edges.iter().map(|e| e.ws_url()).collect();
    urls.rotate_left(first);
    let mut options = Options::new(urls, provider(token.to_owned()));
    options.min_backoff = Duration::from_millis(20);
    options.max_backoff = Duration::from_millis(500);
    Client::start(options)
}

async fn connected(client: &mut Client) {
    within("connected", async {
        loop {
            if let Some(ClientEvent::Connected { .. }) = client.next_event().await {
                return;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn killing_an_edge_mid_stream_loses_nothing() {
    let mut cluster = Cluster::start(2).await;
    let app = cluster.app_with(settings()).await;
    let token = app.token(None, &["stream"], &[]).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut client = client_on(&cluster, i % 2, &token);
        connected(&mut client).await;
        clients.push(client);
    }
    let total = 300u64;
    let publisher = {
        let (rest, id) = (app.backend.clone(), app.id.clone());
        tokio::spawn(async move {
            for n in 0..total {
                publish_accepted(&rest, &id, n).await;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    // Let a third of the stream through, then kill edge 0 without a goodbye.
    eventually("the stream to be under way", || async {
        let body = app
            .backend
            .send(reqwest::Method::GET, &["v1", "apps", &app.id, "groups", "stream", "history"], None)
            .await
            .ok()?;
        let items = body.json::<Value>().await.ok()?["items"].as_array()?.len();
        (items >= 100).then_some(())
    })
    .await;
    cluster.edges[0].process.kill();
    publisher.await.expect("publisher");
    for client in &mut clients {
        let (numbers, _) = collect(client, total as usize).await;
        assert_eq!(numbers, (0..total).collect::<Vec<_>>(), "every message once, in order");
    }
}

#[tokio::test]
async fn two_api_nodes_racing_and_clients_reconnecting_agree_with_history() {
    let cluster = Cluster::start_shaped(Shape { apis: 2, edges: 2, edge_args: Vec::new(), api_args: Vec::new() }).await;
    let app = cluster.app_with(settings()).await;
    let token = app.token(None, &["stream"], &[]).await;
    let urls = cluster.api_urls();
    let per_node = 150u64;
    let mut publishers = Vec::new();
    for (node, url) in urls.iter().enumerate() {
        let rest = app.backend.with_base(url);
        let id = app.id.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..per_node {
                publish_accepted(&rest, &id, node as u64 * 1000 + i).await;
            }
        }));
    }
    // Two clients, each reconnecting every 20 messages, alternating edges, resuming by position.
    let mut readers = Vec::new();
    for reader in 0..2usize {
        let edges: Vec<String> = cluster.edges.iter().map(|e| e.ws_url()).collect();
        let token = token.clone();
        readers.push(tokio::spawn(async move {
            let mut received: Vec<(u64, u64)> = Vec::new();
            let mut last = 0;
            let mut life = 0;
            while received.len() < 2 * per_node as usize {
                let url = &edges[(reader + life) % edges.len()];
                life += 1;
                let options = ConnectOptions { recover: BTreeMap::from([("stream".to_owned(), last)]) };
                let mut connection =
                    within("connect", Connection::connect_with(url, &token, &options)).await.expect("connect");
                for _ in 0..20 {
                    let message = within("a message", connection.next_message()).await.expect("message");
                    last = message.seq.expect("position");
                    received.push((last, message.data.as_u64().expect("number")));
                    if received.len() == 2 * per_node as usize {
                        break;
                    }
                }
                connection.close();
            }
            received
        }));
    }
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
    // The history, all of it.
    let mut url = app.backend.url(&["v1", "apps", &app.id, "groups", "stream", "history"]);
    url.query_pairs_mut().append_pair("limit", "1000");
    let history: Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(format!("{}.{}", app.key_id, app.secret))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    let stored: Vec<(u64, u64)> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| (i["position"].as_u64().expect("position"), i["data"].as_u64().expect("number")))
        .collect();
    assert_eq!(stored.len(), 2 * per_node as usize, "every publish stored once");
    for node in 0..2u64 {
        let own: Vec<u64> = stored.iter().map(|(_, n)| *n).filter(|n| n / 1000 == node).collect();
        assert_eq!(own, (0..per_node).map(|i| node * 1000 + i).collect::<Vec<_>>(), "per publisher order");
    }
    for reader in readers {
        assert_eq!(reader.await.expect("reader"), stored, "every reader saw exactly the history");
    }
}

#[tokio::test]
async fn restarting_nats_mid_stream_loses_no_accepted_message() {
    let mut cluster = Cluster::start(2).await;
    let app = cluster.app_with(settings()).await;
    let token = app.token(None, &["stream"], &[]).await;
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut client = client_on(&cluster, i % 2, &token);
        connected(&mut client).await;
        clients.push(client);
    }
    let total = 200u64;
    let publisher = {
        let (rest, id) = (app.backend.clone(), app.id.clone());
        tokio::spawn(async move {
            for n in 0..total {
                publish_accepted(&rest, &id, n).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    eventually("the stream to be under way", || async {
        let body = app
            .backend
            .send(reqwest::Method::GET, &["v1", "apps", &app.id, "groups", "stream", "history"], None)
            .await
            .ok()?;
        let items = body.json::<Value>().await.ok()?["items"].as_array()?.len();
        (items >= 50).then_some(())
    })
    .await;
    cluster.nats.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.nats.start_again();
    publisher.await.expect("publisher");
    for client in &mut clients {
        let (numbers, _) = collect(client, total as usize).await;
        assert_eq!(numbers, (0..total).collect::<Vec<_>>(), "every accepted message once, in order");
    }
}

#[tokio::test]
async fn draining_an_edge_under_load_loses_nothing() {
    let mut cluster = Cluster::start_shaped(Shape {
        apis: 1,
        edges: 2,
        edge_args: vec!["--drain-seconds".into(), "1".into()],
        api_args: Vec::new(),
    })
    .await;
    let app = cluster.app_with(settings()).await;
    let token = app.token(None, &["stream"], &[]).await;
    let mut clients = Vec::new();
    for _ in 0..6 {
        let mut client = client_on(&cluster, 0, &token);
        connected(&mut client).await;
        clients.push(client);
    }
    let total = 300u64;
    let publisher = {
        let (rest, id) = (app.backend.clone(), app.id.clone());
        tokio::spawn(async move {
            for n in 0..total {
                publish_accepted(&rest, &id, n).await;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    eventually("the stream to be under way", || async {
        let body = app
            .backend
            .send(reqwest::Method::GET, &["v1", "apps", &app.id, "groups", "stream", "history"], None)
            .await
            .ok()?;
        let items = body.json::<Value>().await.ok()?["items"].as_array()?.len();
        (items >= 80).then_some(())
    })
    .await;
    let edge = &mut cluster.edges[0];
    let ready_url = format!("{}/readyz", edge.http_url());
    edge.process.signal("TERM");
    eventually("the draining edge to fail readiness", || async {
        match reqwest::get(&ready_url).await {
            Ok(r) => (r.status().as_u16() == 503).then_some(()),
            Err(_) => Some(()),
        }
    })
    .await;
    publisher.await.expect("publisher");
    for client in &mut clients {
        let (numbers, events) = collect(client, total as usize).await;
        assert_eq!(numbers, (0..total).collect::<Vec<_>>(), "every message once, in order");
        assert!(
            events.iter().any(|e| matches!(e, ClientEvent::Disconnected { code: 4200, retrying: true, .. })),
            "told to reconnect elsewhere: {events:?}"
        );
        assert!(events.iter().any(|e| matches!(e, ClientEvent::Recovered { recovered: true, .. })), "{events:?}");
    }
}

/// Waits for a connection's close code (1006: it ended without one).
async fn close_code(connection: &mut Connection) -> u16 {
    loop {
        match connection.next_event().await {
            Some(Event::Closed { code, .. }) => return code,
            Some(_) => {}
            None => return 1006,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_cuts_the_drain_short_with_1001() {
    let mut cluster = Cluster::start_shaped(Shape {
        apis: 1,
        edges: 1,
        edge_args: vec!["--drain-seconds".into(), "60".into()],
        api_args: Vec::new(),
    })
    .await;
    let app = cluster.app().await;
    let edge = &mut cluster.edges[0];
    let token = app.token(None, &[], &[]).await;
    let mut a = within("connect", Connection::connect(&edge.ws_url(), &token)).await.expect("connect");
    let mut b = within("connect", Connection::connect(&edge.ws_url(), &token)).await.expect("connect");
    edge.process.signal("TERM");
    // Two clients over 60 s: one is told to go now, the other in 30 s.
    let (first, mut second) = within("the first drained client", async {
        tokio::select! {
            code = close_code(&mut a) => (code, b),
            code = close_code(&mut b) => (code, a),
        }
    })
    .await;
    assert_eq!(first, 4200);
    edge.process.signal("TERM");
    assert_eq!(within("the second close", close_code(&mut second)).await, 1001, "the rest close at once");
    let status = tokio::task::block_in_place(|| edge.process.wait_exit(Duration::from_secs(10)));
    assert!(status.is_some_and(|s| s.success()), "the edge exits cleanly: {status:?}");
}

#[tokio::test]
async fn a_slow_client_is_closed_while_a_thousand_others_keep_receiving() {
    let cluster = Cluster::start_shaped(Shape {
        apis: 1,
        edges: 1,
        edge_args: vec!["--outbox-max-bytes".into(), "262144".into()],
        api_args: Vec::new(),
    })
    .await;
    let app = cluster.app().await;
    let edge = &cluster.edges[0];
    let fast_token = app.token(None, &["fast"], &[]).await;
    let mut fast = Vec::new();
    for _ in 0..1000 {
        fast.push(within("connect", Connection::connect(&edge.ws_url(), &fast_token)).await.expect("connect"));
    }
    // The slow one reads nothing, with a tiny window, in a group of big messages.
    let slow_token = app.token(None, &["big"], &[]).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small window");
    let stream = socket.connect(edge.addr).await.expect("connect");
    let mut slow = signalbox_tests::RawSocket::handshake(stream, edge.addr, &slow_token).await;
    let rss = || procfs_rss(edge.process.pid());
    let before = rss();
    let mut peak = before;
    let big = "z".repeat(60_000);
    for i in 0..600 {
        app.publish_to_group("big", "big", json!({"i": i, "pad": big})).await;
        if i % 10 == 0 {
            app.publish_to_group("fast", "tick", json!(i / 10)).await;
            peak = peak.max(rss());
        }
    }
    assert_eq!(slow.read_close_code().await, Some(4100), "the slow one is told why");
    for connection in &mut fast {
        for i in 0..60 {
            assert_eq!(next_message(connection).await.data, json!(i), "the others got everything, in order");
        }
    }
    // 36 MB were published to the slow client; its queue holds at most 256 KiB.
    let growth_kib = peak.saturating_sub(before);
    assert!(growth_kib < 24 * 1024, "edge memory grew by {growth_kib} KiB");
}

fn procfs_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_publish_repeated_on_another_api_node_is_delivered_once() {
    let cluster = Cluster::start_shaped(Shape { apis: 2, edges: 1, edge_args: Vec::new(), api_args: Vec::new() }).await;
    let app: TestApp = cluster.app_with(settings()).await;
    let mut member = app.connect(None, &["stream", "plain"], &[]).await;
    let urls = cluster.api_urls();
    for group in ["stream", "plain"] {
        let key = format!("retry-{group}");
        let mut answers = Vec::new();
        for url in &urls {
            let response = app
                .backend
                .with_base(url)
                .http_request(reqwest::Method::POST, &["v1", "apps", &app.id, "groups", group, "messages"])
                .header("Idempotency-Key", &key)
                .json(&json!({"event": "once", "data": group}))
                .send()
                .await
                .expect("post");
            assert_eq!(response.status().as_u16(), 202);
            let replayed = response.headers().get("idempotent-replayed").is_some();
            answers.push((replayed, response.json::<Value>().await.expect("json")));
        }
        assert_eq!((answers[0].0, answers[1].0), (false, true), "the second node replays the first's answer");
        assert_eq!(answers[0].1, answers[1].1);
        assert_eq!(next_message(&mut member).await.data, json!(group));
        signalbox_tests::assert_next_is_marker(&app, &mut member).await;
    }
}

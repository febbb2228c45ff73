//! History, recovery and idempotent publishing on one node: nothing lost, nothing twice.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use signalbox_sdk::realtime::{ConnectOptions, Connection, Event, GroupRecovery};
use signalbox_tests::{Signalbox, TestApp, assert_next_is_marker, next_message, within};

fn history_settings(max_messages: u32) -> Value {
    json!({"history": {"groups": ["room-*"], "max_messages": max_messages}})
}

/// Publishes over REST and returns the message's position.
async fn publish(app: &TestApp, group: &str, data: Value) -> u64 {
    signalbox_tests::publish_stored(&app.backend, &app.id, group, data).await
}

async fn recovery_of(connection: &mut Connection) -> (bool, Vec<GroupRecovery>) {
    within("the recovery frame", async {
        loop {
            match connection.next_event().await {
                Some(Event::Recovery { recovered, groups }) => return (recovered, groups),
                Some(Event::Closed { code, .. }) => panic!("closed ({code}) before recovery"),
                Some(_) => {}
                None => panic!("no recovery frame"),
            }
        }
    })
    .await
}

async fn connect_recovering(app: &TestApp, token: &str, positions: &[(&str, u64)]) -> Connection {
    let options =
        ConnectOptions { recover: positions.iter().map(|(g, p)| ((*g).to_owned(), *p)).collect::<BTreeMap<_, _>>() };
    within("connect", Connection::connect_with(&app.ws_url, token, &options)).await.expect("connects")
}

#[tokio::test]
async fn history_groups_store_messages_with_positions() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(history_settings(1000)).await;
    let mut member = app.connect(None, &["room-1", "lobby"], &[]).await;
    let mut positions = Vec::new();
    for i in 0..5 {
        positions.push(publish(&app, "room-1", json!(i)).await);
    }
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    for (i, position) in positions.iter().enumerate() {
        let got = next_message(&mut member).await;
        assert_eq!((got.data, got.seq), (json!(i), Some(*position)), "live deliveries carry their position");
    }
    // A group outside the history patterns: no position.
    app.publish_to_group("lobby", "plain", json!(1)).await;
    assert_eq!(next_message(&mut member).await.seq, None);

    // The history endpoint, paginated.
    let page = |after: u64| {
        let app = app.clone();
        async move {
            let mut url = app.backend.url(&["v1", "apps", &app.id, "groups", "room-1", "history"]);
            url.query_pairs_mut().append_pair("after", &after.to_string()).append_pair("limit", "2");
            reqwest::Client::new()
                .get(url)
                .bearer_auth(format!("{}.{}", app.key_id, app.secret))
                .send()
                .await
                .expect("get")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let body = page(after).await;
        for item in body["items"].as_array().expect("items") {
            seen.push((item["position"].as_u64().expect("position"), item["data"].clone()));
            assert_eq!(item["event"], "e");
        }
        match body["next"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, positions.iter().enumerate().map(|(i, p)| (*p, json!(i))).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_reconnecting_client_gets_exactly_what_it_missed() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(history_settings(1000)).await;
    let token = app.token(Some("ann"), &["room-1"], &[]).await;
    let mut first = within("connect", Connection::connect(&app.ws_url, &token)).await.expect("connect");
    publish(&app, "room-1", json!(0)).await;
    let seen = next_message(&mut first).await.seq.expect("position");
    first.close();
    drop(first);

    let mut missed = Vec::new();
    for i in 1..=3 {
        missed.push(publish(&app, "room-1", json!(i)).await);
    }
    let mut second = connect_recovering(&app, &token, &[("room-1", seen)]).await;
    for (i, position) in missed.iter().enumerate() {
        let got = next_message(&mut second).await;
        assert_eq!((got.data, got.seq), (json!(i + 1), Some(*position)), "the missed ones, in order");
    }
    assert_eq!(
        recovery_of(&mut second).await,
        (true, vec![GroupRecovery { group: "room-1".into(), recovered: true, reason: None, message: None }])
    );
    let live = publish(&app, "room-1", json!(4)).await;
    assert_eq!(next_message(&mut second).await.seq, Some(live), "then live, with nothing twice");
    assert_next_is_marker(&app, &mut second).await;
}

#[tokio::test]
async fn recovery_is_gapless_while_messages_keep_coming() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(history_settings(10_000)).await;
    let token = app.token(Some("bo"), &["room-1"], &[]).await;
    let publisher = {
        let app = app.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                publish(&app, "room-1", json!(i)).await;
            }
        })
    };
    // Reconnect over and over while the stream flows; every life resumes where the last ended.
    let mut received: Vec<i64> = Vec::new();
    let mut last = 0;
    while received.len() < 300 {
        let mut connection = connect_recovering(&app, &token, &[("room-1", last)]).await;
        for _ in 0..25 {
            let Some(message) = within("a message", connection.next_message()).await else { break };
            received.push(message.data.as_i64().expect("number"));
            last = message.seq.expect("position");
            if received.len() == 300 {
                break;
            }
        }
        connection.close();
    }
    publisher.await.expect("publisher");
    assert_eq!(received, (0..300).collect::<Vec<_>>(), "every message once, in order, across 12 reconnects");
}

#[tokio::test]
async fn recovery_beyond_retention_says_so_and_delivers_what_is_kept() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(history_settings(3)).await;
    let token = app.token(None, &["room-1"], &[]).await;
    let first = publish(&app, "room-1", json!(0)).await;
    let mut kept = Vec::new();
    for i in 1..=5 {
        kept.push(publish(&app, "room-1", json!(i)).await);
    }
    let mut connection = connect_recovering(&app, &token, &[("room-1", first)]).await;
    for position in &kept[2..] {
        assert_eq!(next_message(&mut connection).await.seq, Some(*position));
    }
    let (recovered, groups) = recovery_of(&mut connection).await;
    assert!(!recovered);
    assert_eq!(groups[0].reason.as_deref(), Some("expired"), "{groups:?}");

    // From the newest position: nothing to replay, and nothing missed.
    let mut current = connect_recovering(&app, &token, &[("room-1", kept[4])]).await;
    let (recovered, groups) = recovery_of(&mut current).await;
    assert!(recovered, "{groups:?}");
}

#[tokio::test]
async fn recovery_needs_history_and_permission() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(history_settings(100)).await;
    let token = app.token(None, &["lobby"], &["join:room-*"]).await;
    let mut connection = connect_recovering(&app, &token, &[("lobby", 5), ("room-9", 0), ("secret", 1)]).await;
    let (recovered, groups) = recovery_of(&mut connection).await;
    assert!(!recovered);
    let by_group: BTreeMap<_, _> = groups.into_iter().map(|g| (g.group.clone(), g)).collect();
    assert!(!by_group["lobby"].recovered, "a group without history cannot be recovered");
    assert!(by_group["room-9"].recovered, "a joinable empty history recovers");
    assert!(!by_group["secret"].recovered && by_group["secret"].reason.as_deref() == Some("forbidden"));
    let bad = reqwest::get(format!("{}/client?access_token={token}&recover=notjson", signalbox.http_url()))
        .await
        .expect("get");
    assert_eq!(bad.status().as_u16(), 400);
}

#[tokio::test]
async fn join_with_since_replays_and_client_publishes_are_stored() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(history_settings(100)).await;
    let a = publish(&app, "room-2", json!("a")).await;
    let b = publish(&app, "room-2", json!("b")).await;
    let mut client = app.connect(None, &[], &["join:room-*", "publish:room-*"]).await;
    let outcome = within("join", client.join_since("room-2", a)).await.expect("join since");
    assert!(outcome.recovered, "{outcome:?}");
    assert_eq!(next_message(&mut client).await.seq, Some(b), "replayed before the reply");
    let stored = within("publish", client.publish_stored("room-2", "mine", json!("c"))).await.expect("publish");
    let position = stored.expect("a publish to a group with history returns its position");
    assert!(position > b);
    assert_eq!(next_message(&mut client).await.seq, Some(position));
    let again = within("join", client.join_since("room-2", 0)).await.expect_err("already in");
    assert_eq!(again.code(), Some("bad_request"));
}

#[tokio::test]
async fn an_idempotency_key_publishes_once() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(history_settings(100)).await;
    let mut member = app.connect(None, &["room-1", "plain"], &[]).await;
    let credential = format!("{}.{}", app.key_id, app.secret);
    let post = |group: &'static str, key: &'static str, data: Value| {
        let (url, credential) =
            (app.backend.url(&["v1", "apps", &app.id, "groups", group, "messages"]), credential.clone());
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(credential)
                .header("Idempotency-Key", key)
                .json(&json!({"event": "e", "data": data}))
                .send()
                .await
                .expect("post")
        }
    };
    // Keys are scoped to the app: each group gets its own.
    for (group, key) in [("room-1", "order-42"), ("plain", "order-43")] {
        let first = post(group, key, json!(1)).await;
        assert_eq!(first.status().as_u16(), 202);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first: Value = first.json().await.expect("json");
        let repeat = post(group, key, json!(1)).await;
        assert_eq!(repeat.status().as_u16(), 202);
        assert_eq!(repeat.headers()["idempotent-replayed"], "true");
        assert_eq!(repeat.json::<Value>().await.expect("json"), first, "the original answer");
        let other = post(group, key, json!(2)).await;
        assert_eq!(other.status().as_u16(), 422, "the same key for another request");
        assert_eq!(next_message(&mut member).await.data, json!(1));
        assert_next_is_marker(&app, &mut member).await;
    }
    let bad = post("plain", "has space", json!(1)).await;
    assert_eq!(bad.status().as_u16(), 422);
}

#[tokio::test]
async fn the_reconnecting_client_comes_back_by_itself_and_recovers_across_a_restart() {
    use signalbox::embedded::{Embedded, ServeConfig};
    use signalbox_sdk::reconnecting::{Client, ClientEvent, Options, TokenProvider};

    let dir = signalbox_test_support::tempfile::TempDir::new().expect("dir");
    let addr: std::net::SocketAddr =
        format!("127.0.0.1:{}", signalbox_test_support::free_port()).parse().expect("addr");
    let serve = || Embedded::start(ServeConfig::new(addr, dir.path().join("data")));
    let server = serve().await.expect("start");
    let signalbox = Signalbox::attach(server);
    let app = signalbox.app_with(history_settings(1000)).await;
    let token = app.token(Some("cy"), &["room-1"], &[]).await;
    let provider: TokenProvider = std::sync::Arc::new(move || {
        let token = token.clone();
        Box::pin(async move { Ok(token) })
    });
    let mut client = Client::start(Options::new(vec![app.ws_url.clone()], provider));
    let event = within("connected", client.next_event()).await;
    assert!(matches!(event, Some(ClientEvent::Connected { .. })), "{event:?}");
    publish(&app, "room-1", json!(0)).await;
    assert_eq!(within("message", client.next_message()).await.expect("message").data, json!(0));
    assert_eq!(client.positions().len(), 1, "the client tracks its position");

    // The server restarts on the same address: the client is told 1001 and comes back alone.
    signalbox.shutdown().await;
    let event = within("disconnect", client.next_event()).await;
    assert!(matches!(event, Some(ClientEvent::Disconnected { code: 1001, retrying: true, .. })), "{event:?}");
    let restarted = Signalbox::attach(serve().await.expect("restart"));
    // Attempts that meet the old server draining, or nobody, are retried with backoff.
    within("reconnected", async {
        loop {
            match client.next_event().await {
                Some(ClientEvent::Connected { .. }) => return,
                Some(ClientEvent::Disconnected { retrying: true, .. }) => {}
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    // The embedded mode keeps history on disk: the restart cost the client nothing.
    let event = within("recovery", client.next_event()).await;
    assert!(matches!(event, Some(ClientEvent::Recovered { recovered: true, .. })), "{event:?}");
    publish(&app, "room-1", json!(1)).await;
    assert_eq!(within("message", client.next_message()).await.expect("message").data, json!(1));

    // Closed by the backend: a give-up code, so the client stops.
    let id = restarted.server.connection_ids().pop().expect("a connection");
    app.backend.close_connection(&app.id, &id, None).await.expect("close");
    let event = within("disconnect", client.next_event()).await;
    assert!(matches!(event, Some(ClientEvent::Disconnected { code: 4000, retrying: false, .. })), "{event:?}");
}

/// Reads text frames from a raw socket until one is a message; returns its `seq`.
async fn next_raw_message_seq(socket: &mut signalbox_tests::RawSocket) -> u64 {
    within("a message", async {
        loop {
            let (opcode, payload) = socket.read_frame().await.expect("a frame");
            if opcode != 0x1 {
                continue;
            }
            let frame: Value = serde_json::from_slice(&payload).expect("json");
            if frame["type"] == "message" {
                return frame["seq"].as_u64().expect("seq");
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_slow_consumer_closed_with_4100_recovers_everything_on_reconnect() {
    let signalbox = Signalbox::start_with(|config| config.edge.outbox_max_bytes = 256 * 1024).await;
    let app = signalbox.app_with(history_settings(10_000)).await;
    let token = app.token(None, &["room-1"], &[]).await;
    // A client with a tiny receive window that stops reading after its first message.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small window");
    let stream = socket.connect(signalbox.server.addr()).await.expect("connect");
    let mut slow = signalbox_tests::RawSocket::handshake(stream, signalbox.server.addr(), &token).await;
    let first = publish(&app, "room-1", json!({"n": 0})).await;
    assert_eq!(next_raw_message_seq(&mut slow).await, first);
    let pad = "z".repeat(60_000);
    let mut published = Vec::new();
    for n in 1..=200 {
        published.push(publish(&app, "room-1", json!({"n": n, "pad": pad})).await);
    }
    assert_eq!(slow.read_close_code().await, Some(4100), "closed as a slow consumer");
    // Back, from the last message it saw: everything after it, in order, once.
    let mut again = connect_recovering(&app, &token, &[("room-1", first)]).await;
    for (n, position) in published.iter().enumerate() {
        let message = next_message(&mut again).await;
        assert_eq!((message.seq, message.data["n"].as_u64()), (Some(*position), Some(n as u64 + 1)));
    }
    let (recovered, groups) = recovery_of(&mut again).await;
    assert!(recovered, "{groups:?}");
    assert_next_is_marker(&app, &mut again).await;
}

#[tokio::test]
async fn a_message_at_the_size_limit_is_delivered_live_and_recovered_and_one_byte_more_is_refused() {
    // The hard cap, which is also the edge's default queue size: the frame around the payload
    // must not push it over.
    const MAX: usize = 1024 * 1024;
    let signalbox = Signalbox::start().await;
    let app =
        signalbox.app_with(json!({"limits": {"max_message_bytes": MAX}, "history": {"groups": ["room-*"]}})).await;
    let group = "room-big";
    let mut live = app.connect(None, &[group], &[]).await;
    let first = publish(&app, group, json!("small")).await;
    // With its quotes, exactly MAX bytes of JSON: the largest payload the app accepts.
    let at_limit = "x".repeat(MAX - 2);
    let position = publish(&app, group, json!(at_limit)).await;

    assert_eq!(next_message(&mut live).await.seq, Some(first));
    let got = next_message(&mut live).await;
    assert_eq!((got.seq, got.data.as_str().map(str::len)), (Some(position), Some(MAX - 2)), "delivered live");

    // A client that saw only the first recovers the big one from history.
    let token = app.token(None, &[group], &[]).await;
    let mut late = connect_recovering(&app, &token, &[(group, first)]).await;
    let got = next_message(&mut late).await;
    assert_eq!((got.seq, got.data.as_str().map(str::len)), (Some(position), Some(MAX - 2)), "recovered");
    assert!(recovery_of(&mut late).await.0, "recovered without a gap");

    // One byte more is refused at publish, not accepted and then undeliverable.
    let response = app
        .backend
        .send(
            reqwest::Method::POST,
            &["v1", "apps", &app.id, "groups", group, "messages"],
            Some(&json!({"event": "e", "data": "x".repeat(MAX - 1)})),
        )
        .await
        .expect("publish");
    assert_eq!(response.status().as_u16(), 413);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["code"], "message_too_large", "{problem}");

    // Both members are still open and in the group.
    assert_next_is_marker(&app, &mut live).await;
    assert_next_is_marker(&app, &mut late).await;
}

//! Per-app limits, slow consumers and heartbeats: each ends in its documented error or close
//! code, and never affects anyone else.

use std::time::Duration;

use serde_json::json;
use signalbox_tests::{RawSocket, Signalbox, next_message, within};

#[tokio::test]
async fn connection_limit_closes_with_4102() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(json!({"limits": {"max_connections": 2}})).await;
    let _first = app.connect(None, &[], &[]).await;
    let second = app.connect(None, &[], &[]).await;
    let token = app.token(None, &[], &[]).await;
    let refused = within("connect", signalbox_sdk::realtime::Connection::connect(&app.ws_url, &token)).await;
    assert_eq!(refused.expect_err("over the limit").close_code(), Some(4102));
    // A freed slot can be used again.
    second.close();
    signalbox_tests::eventually("the slot to free up", || async {
        signalbox_sdk::realtime::Connection::connect(&app.ws_url, &token).await.ok()
    })
    .await;
    // Other apps are not limited by this one.
    let other = signalbox.app().await;
    for _ in 0..3 {
        other.connect(None, &[], &[]).await;
    }
}

#[tokio::test]
async fn message_size_group_count_and_publish_rate_are_enforced() {
    let signalbox = Signalbox::start().await;
    let app = signalbox
        .app_with(json!({"limits": {
            "max_message_bytes": 1000,
            "max_groups_per_connection": 2,
            "client_publish_rate": 1,
            "client_publish_burst": 5,
        }}))
        .await;
    let client = app.connect(None, &[], &["join:*", "publish:*"]).await;

    let big = within("publish", client.publish("g", "e", json!("x".repeat(2000)))).await.expect_err("too large");
    assert_eq!(big.code(), Some("message_too_large"));

    within("join", client.join("a")).await.expect("first group");
    within("join", client.join("b")).await.expect("second group");
    let third = within("join", client.join("c")).await.expect_err("third group");
    assert_eq!(third.code(), Some("too_many_groups"));
    within("leave", client.leave("a")).await.expect("leave");
    within("join", client.join("c")).await.expect("room again after leaving");

    // REST joins respect the same limit.
    let err = app.backend.add_connection_to_group(&app.id, "d", client.connection_id()).await.expect_err("limit");
    assert_eq!((err.status(), err.code()), (Some(409), Some("too_many_groups")));

    // 1 per second with a burst of 5: 50 publishes in a row cannot all pass (that would
    // take 45 seconds).
    let mut limited = 0;
    for i in 0..50 {
        match within("publish", client.publish("b", "e", json!(i))).await {
            Ok(()) => {}
            Err(err) => {
                assert_eq!(err.code(), Some("rate_limited"));
                limited += 1;
            }
        }
    }
    assert!(limited >= 40, "only {limited} of 50 were rate limited");
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_4100_and_nobody_else_waits() {
    let signalbox = Signalbox::start_with(|config| config.edge.outbox_max_bytes = 64 * 1024).await;
    let app = signalbox.app().await;
    let mut fast = app.connect(None, &["feed"], &[]).await;
    // A client that never reads, with a tiny receive window so its backlog stays on our side.
    let token = app.token(None, &["feed"], &[]).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small window");
    let stream = socket.connect(signalbox.server.addr()).await.expect("connect");
    let mut slow = RawSocket::handshake(stream, signalbox.server.addr(), &token).await;

    // More than the kernel will buffer for one socket (its send buffer grows to
    // net.ipv4.tcp_wmem's maximum, 4 MiB by default), so the backlog reaches our queue.
    let payload = "y".repeat(60_000);
    let count = 200;
    for i in 0..count {
        app.publish_to_group("feed", "tick", json!({"i": i, "pad": payload})).await;
    }
    for i in 0..count {
        assert_eq!(next_message(&mut fast).await.data["i"], i, "the fast client gets everything, in order");
    }
    assert_eq!(slow.read_close_code().await, Some(4100), "the slow one is told why");
}

#[tokio::test]
async fn a_silent_connection_is_closed_with_4101_and_a_live_one_stays() {
    let signalbox = Signalbox::start_with(|config| {
        config.edge.heartbeat_interval = Duration::from_secs(1);
        config.edge.interest_linger = Duration::from_millis(100);
    })
    .await;
    let app = signalbox.app().await;
    let mut live = app.connect(None, &["g"], &[]).await;
    assert_eq!(live.welcome().heartbeat_seconds, 1);
    let before = signalbox.server.interest_count();
    let token = app.token(Some("ghost"), &["haunted"], &[]).await;
    let mut silent = RawSocket::connect(signalbox.server.addr(), &token).await;
    assert_eq!(signalbox.server.interest_count(), before + 2, "the ghost's user and group");
    // Read (pings included) without ever answering.
    assert_eq!(silent.read_close_code().await, Some(4101));
    // By now two heartbeat intervals have passed: the client that answers pings is still here.
    app.publish_to_group("g", "alive", json!(true)).await;
    assert_eq!(next_message(&mut live).await.event, "alive");
    // And the dead peer's state is gone: its connection, its group and user subscriptions.
    signalbox_tests::eventually("the dead peer's state to be cleaned up", || async {
        (signalbox.server.connection_count() == 1 && signalbox.server.interest_count() == before).then_some(())
    })
    .await;
}

/// The operator's caps on what a tenant creates: apps per tenant and live keys per app, each
/// refused with 409 `limit_reached` (problem+json), per tenant and per app, and freed again by
/// deleting an app or revoking a key.
#[tokio::test]
async fn apps_per_tenant_and_live_keys_per_app_are_capped() {
    let signalbox = Signalbox::start_with(|config| {
        config.limits = signalbox_api::AccountLimits { apps_per_tenant: 2, live_keys_per_app: 2 };
    })
    .await;
    let operator = signalbox.operator();
    let token = operator.create_tenant("capped").await.expect("tenant").token;
    let tenant = operator.with_bearer(&token);
    let first = tenant.create_app("one", json!({})).await.expect("first app");
    tenant.create_app("two", json!({})).await.expect("second app");
    let limit_reached = |err: signalbox_sdk::server::Error| match err {
        signalbox_sdk::server::Error::Api { status, problem } => (status, problem.code),
        other => panic!("not an API error: {other}"),
    };
    let refused = tenant.create_app("three", json!({})).await.expect_err("a third app");
    assert_eq!(limit_reached(refused), (409, "limit_reached".to_owned()));
    // Per tenant: another tenant still creates apps.
    let other = operator.create_tenant("other").await.expect("tenant");
    operator.with_bearer(&other.token).create_app("mine", json!({})).await.expect("another tenant's app");
    // Deleting one frees a slot.
    tenant.delete_app(&first.id).await.expect("delete");
    let app = tenant.create_app("three", json!({})).await.expect("a slot was freed");

    let key = tenant.create_key(&app.id, None, None).await.expect("first key");
    tenant.create_key(&app.id, None, None).await.expect("second key");
    let refused = tenant.create_key(&app.id, None, None).await.expect_err("a third live key");
    assert_eq!(limit_reached(refused), (409, "limit_reached".to_owned()));
    tenant.revoke_key(&app.id, &key.key.id).await.expect("revoke");
    tenant.create_key(&app.id, None, None).await.expect("a revoked key does not count");

    // The answer is problem+json with a detail that says what to do.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/apps/{}/keys", signalbox.http_url(), app.id))
        .bearer_auth(&token)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 409);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = response.json().await.expect("json");
    assert_eq!(problem["code"], "limit_reached");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("revoke one")), "{problem}");
}

#[tokio::test]
async fn the_default_caps_are_100_apps_and_10_live_keys() {
    let config = signalbox::embedded::ServeConfig::new("127.0.0.1:0".parse().expect("addr"), "unused".into());
    assert_eq!(config.limits, signalbox_api::AccountLimits { apps_per_tenant: 100, live_keys_per_app: 10 });
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await; // with one key
    for _ in 1..10 {
        app.tenant.create_key(&app.id, None, None).await.expect("up to 10 live keys");
    }
    assert!(app.tenant.create_key(&app.id, None, None).await.is_err(), "the 11th live key is refused");
}

#[tokio::test]
async fn clients_that_never_read_are_dropped_and_their_sockets_released() {
    let signalbox = Signalbox::start_with(|config| {
        config.edge.outbox_max_bytes = 64 * 1024;
        config.edge.heartbeat_interval = Duration::from_secs(1);
    })
    .await;
    let app = signalbox.app().await;
    let addr = signalbox.server.addr();
    let token = app.token(None, &["flood"], &[]).await;
    // Clients that complete the handshake and then never read, with tiny receive windows.
    let mut silent = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..8 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("small window");
        let stream = socket.connect(addr).await.expect("connect");
        ports.push(stream.local_addr().expect("local address").port());
        silent.push(RawSocket::handshake(stream, addr, &token).await);
    }
    assert_eq!(signalbox.server.connection_count(), silent.len());

    // A flood: more than the kernel buffers for a socket, so each backlog reaches its queue.
    let payload = "y".repeat(60_000);
    for i in 0..150 {
        app.publish_to_group("flood", "tick", json!({"i": i, "pad": payload})).await;
    }

    // The server drops every one of them: closing is not enough when the close frame itself
    // cannot be written.
    signalbox_tests::eventually("the server to drop the clients that never read", || async {
        (signalbox.server.connection_count() == 0).then_some(())
    })
    .await;
    // And releases their sockets (and the megabytes of kernel buffer each held).
    signalbox_tests::eventually("the server's sockets to be released", || async {
        (signalbox_tests::server_sockets_to(addr.port(), &ports) == 0).then_some(())
    })
    .await;
    // When a client finally reads, its stream ends.
    for socket in &mut silent {
        within("the stream to end", async {
            use tokio::io::AsyncReadExt as _;
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = socket.stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

//! Cluster mode with real processes: one api and two edges on NATS and Postgres.

use bytes::Bytes;
use serde_json::json;
use signalbox_sdk::server::Message;
use signalbox_tests::cluster::{Cluster, PROPAGATION_BOUND};
use signalbox_tests::metrics::value;
use signalbox_tests::{assert_next_is_marker, closed, eventually, next_message, within};

#[tokio::test]
async fn a_user_on_two_edges_gets_exactly_one_copy_per_connection() {
    let cluster = Cluster::start(2).await;
    let app = cluster.app().await;
    let mut on_a = cluster.on_edge(&app, 0).connect(Some("uma"), &[], &[]).await;
    let mut on_b = cluster.on_edge(&app, 1).connect(Some("uma"), &[], &[]).await;
    let mut also_b = cluster.on_edge(&app, 1).connect(Some("uma"), &[], &[]).await;
    assert_ne!(on_a.connection_id()[..8], on_b.connection_id()[..8], "different nodes");
    for i in 0..20 {
        app.backend.send_to_user(&app.id, "uma", &Message::new("n", json!(i))).await.expect("publish");
    }
    for connection in [&mut on_a, &mut on_b, &mut also_b] {
        for i in 0..20 {
            assert_eq!(next_message(connection).await.data, json!(i), "one copy each, in order");
        }
        assert_next_is_marker(&app, connection).await;
    }
}

#[tokio::test]
async fn a_group_spanning_edges_gets_everything_in_order_with_exclusions() {
    let cluster = Cluster::start(2).await;
    let app = cluster.app().await;
    let perms = ["join:*", "publish:*"];
    let mut a = cluster.on_edge(&app, 0).connect(None, &["room"], &perms).await;
    let mut b = cluster.on_edge(&app, 1).connect(None, &["room"], &perms).await;
    for i in 0..50 {
        app.publish_to_group("room", "tick", json!(i)).await;
    }
    for connection in [&mut a, &mut b] {
        for i in 0..50 {
            assert_eq!(next_message(connection).await.data, json!(i));
        }
    }
    // A client on edge 0 publishes; the member on edge 1 receives.
    within("publish", a.publish("room", "from-a", json!("hi"))).await.expect("publish");
    assert_eq!(next_message(&mut b).await.event, "from-a");
    assert_eq!(next_message(&mut a).await.event, "from-a");
    // Excluding the connection on edge 1, from REST and from a client.
    let excluded = Message::new("not-b", json!(1)).excluding([b.connection_id()]);
    app.backend.send_to_group(&app.id, "room", &excluded).await.expect("publish");
    assert_eq!(next_message(&mut a).await.event, "not-b");
    assert_next_is_marker(&app, &mut b).await;
    within("publish", b.publish_no_echo("room", "quiet", json!(1))).await.expect("publish");
    assert_eq!(next_message(&mut a).await.event, "quiet");
    assert_next_is_marker(&app, &mut b).await;
}

#[tokio::test]
async fn control_reaches_connections_on_any_node() {
    let cluster = Cluster::start(2).await;
    let app = cluster.app().await;
    let mut lone = cluster.on_edge(&app, 1).connect(Some("vic"), &[], &[]).await;
    let lone_id = lone.connection_id().to_owned();

    // Info and membership of a connection on edge 1, through the api.
    let info = app.backend.connection(&app.id, &lone_id).await.expect("info");
    assert_eq!((info.user_id.as_deref(), info.node.as_str()), (Some("vic"), "edge0001"));
    app.backend.add_connection_to_group(&app.id, "g", &lone_id).await.expect("add");
    app.publish_to_group("g", "in-g", json!(1)).await;
    assert_eq!(next_message(&mut lone).await.event, "in-g");

    // A user's group membership reaches connections on both nodes, and later ones.
    let mut w0 = cluster.on_edge(&app, 0).connect(Some("wen"), &[], &[]).await;
    let mut w1 = cluster.on_edge(&app, 1).connect(Some("wen"), &[], &[]).await;
    app.backend.add_user_to_group(&app.id, "team", "wen", None).await.expect("add user");
    for id in [w0.connection_id().to_owned(), w1.connection_id().to_owned()] {
        eventually("the user's connection to join", || async {
            let info = app.backend.connection(&app.id, &id).await.expect("info");
            (info.groups == ["team"]).then_some(())
        })
        .await;
    }
    let mut w_later = cluster.on_edge(&app, 1).connect(Some("wen"), &[], &[]).await;
    app.publish_to_group("team", "standup", json!(1)).await;
    for connection in [&mut w0, &mut w1, &mut w_later] {
        assert_eq!(next_message(connection).await.event, "standup");
    }

    // Closing one connection, then every connection of a user, wherever they are.
    app.backend.close_connection(&app.id, &lone_id, Some("done")).await.expect("close");
    assert_eq!(closed(&mut lone).await, (4000, "done".to_owned()));
    app.backend.close_user_connections(&app.id, "wen", Some("bye")).await.expect("close user");
    for connection in [&mut w0, &mut w1, &mut w_later] {
        assert_eq!(closed(connection).await.0, 4000);
    }
    assert_eq!(app.backend.connection(&app.id, &lone_id).await.expect_err("gone").status(), Some(404));
}

#[tokio::test]
async fn revocation_and_settings_changes_reach_every_edge_within_five_seconds() {
    let cluster = Cluster::start(2).await;
    let app = cluster.app().await;
    let spare = app.tenant.create_key(&app.id, None, None).await.expect("spare key");
    let token = app.token(None, &[], &["publish:*"]).await;
    // Warm both edges' caches with the key, then revoke it.
    let mut open = Vec::new();
    for edge in 0..2 {
        open.push(cluster.on_edge(&app, edge).connect(None, &[], &["publish:*"]).await);
    }
    app.tenant.revoke_key(&app.id, &app.key_id).await.expect("revoke");
    for connection in &mut open {
        let (code, _) = tokio::time::timeout(PROPAGATION_BOUND, closed(connection)).await.expect("within the bound");
        assert_eq!(code, 4403);
    }
    for edge in &cluster.edges {
        let refused = signalbox_sdk::realtime::Connection::connect(&edge.ws_url(), &token).await;
        assert_eq!(refused.expect_err("revoked").close_code(), Some(4403));
    }

    // Settings: a smaller message limit applies to new connections on every edge.
    let spare_app = signalbox_tests::TestApp { backend: app.backend.with_bearer(&spare.credential), ..app.clone() };
    app.tenant.update_app(&app.id, json!({"limits": {"max_message_bytes": 10}})).await.expect("patch");
    for edge in 0..2 {
        let on_edge = cluster.on_edge(&spare_app, edge);
        tokio::time::timeout(PROPAGATION_BOUND, async {
            loop {
                let client = on_edge.connect(None, &[], &["publish:*"]).await;
                match client.publish("g", "e", json!("more than ten bytes")).await {
                    Err(err) if err.code() == Some("message_too_large") => return,
                    _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            }
        })
        .await
        .expect("the new limit within the bound");
    }
}

#[tokio::test]
async fn a_nats_restart_loses_no_subscription_and_publishes_fail_loudly_meanwhile() {
    let mut cluster = Cluster::start(2).await;
    let app = cluster.app().await;
    let mut a = cluster.on_edge(&app, 0).connect(Some("xia"), &["room"], &[]).await;
    let mut b = cluster.on_edge(&app, 1).connect(Some("yan"), &["room"], &[]).await;

    cluster.nats.stop();
    // Nothing is accepted while NATS is down: 503 with Retry-After, never a 2xx.
    let refused = eventually("the api to notice", || async {
        let response = app
            .backend
            .send(
                reqwest::Method::POST,
                &["v1", "apps", &app.id, "groups", "room", "messages"],
                Some(&json!({"event": "e"})),
            )
            .await
            .expect("send");
        (response.status().as_u16() == 503).then_some(response)
    })
    .await;
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.headers()["content-type"], "application/problem+json");
    eventually("every node to report not ready", || async {
        for node in std::iter::once(&cluster.api).chain(&cluster.edges) {
            if node.is_ready().await {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert!(reqwest::get(format!("{}/healthz", cluster.edges[0].http_url())).await.expect("get").status().is_success());

    cluster.nats.start_again();
    cluster.wait_ready().await;
    // The clients never noticed: same connections, every subscription back — group, user,
    // node (connection-targeted) and broadcast.
    eventually("group messages to flow again", || async {
        app.backend.send_to_group(&app.id, "room", &Message::new("probe", json!(null))).await.ok()
    })
    .await;
    for connection in [&mut a, &mut b] {
        // A publish NATS did not confirm (503: the client library had buffered it as the
        // connection dropped) may still go out once it is back: the contract says so.
        let mut got = next_message(connection).await;
        while got.event == "e" {
            got = next_message(connection).await;
        }
        assert_eq!(got.event, "probe");
    }
    app.backend.send_to_user(&app.id, "yan", &Message::new("to-user", json!(1))).await.expect("user");
    assert_eq!(next_message(&mut b).await.event, "to-user");
    app.backend.send_to_connection(&app.id, a.connection_id(), &Message::new("to-conn", json!(1))).await.expect("conn");
    assert_eq!(next_message(&mut a).await.event, "to-conn");
    app.backend.broadcast(&app.id, &Message::new("to-all", json!(1))).await.expect("broadcast");
    assert_eq!(next_message(&mut a).await.event, "to-all");
    assert_eq!(next_message(&mut b).await.event, "to-all");

    // The outage shows in every node's metrics: the connection lost and regained, and on the
    // api the publishes that NATS could not take.
    for node in std::iter::once(&cluster.api).chain(&cluster.edges) {
        let text = node.metrics().await;
        assert!(value(&text, "signalbox_bus_disconnects_total", &[]) >= 1.0, "{text}");
        assert!(value(&text, "signalbox_bus_reconnects_total", &[]) >= 1.0, "{text}");
    }
    let api = cluster.api.metrics().await;
    // Refused outright (`unavailable`), or taken by the client library but not confirmed in time
    // as the connection dropped (`timeout`).
    let refused = ["unavailable", "timeout"]
        .into_iter()
        .map(|kind| value(&api, "signalbox_bus_publish_errors_total", &[("kind", kind)]))
        .sum::<f64>();
    assert!(refused >= 1.0, "{api}");
}

#[tokio::test]
async fn the_api_is_not_ready_without_its_database() {
    let cluster = Cluster::start(1).await;
    let Cluster { db, api, .. } = cluster;
    drop(db);
    eventually("the api to report not ready", || async { (!api.is_ready().await).then_some(()) }).await;
    let healthz = reqwest::get(format!("{}/healthz", api.http_url())).await.expect("get");
    assert!(healthz.status().is_success(), "liveness does not depend on the database");
}

#[tokio::test]
async fn garbage_on_the_bus_is_counted_and_dropped_and_the_edge_carries_on() {
    let cluster = Cluster::start(1).await;
    let app = cluster.app().await;
    let mut client = app.connect(Some("zed"), &["room"], &[]).await;
    let nats = async_nats::connect(cluster.nats.url()).await.expect("raw nats client");
    let group_subject = format!("sb.m.{}._.g.room", app.id);
    let node_subject = format!("sb.n.edge0000.{}", app.id);
    let garbage: [&[u8]; 5] = [b"", &[2, 1, 2, 3], &[1, 0x0a, 0xff, 0xff], b"\x01not protobuf at all \xff\xff", &[1]];
    for bytes in garbage {
        nats.publish(group_subject.clone(), Bytes::copy_from_slice(bytes)).await.expect("publish");
        nats.publish(node_subject.clone(), Bytes::copy_from_slice(bytes)).await.expect("publish");
    }
    // A subject that does not parse, on the node's wildcard.
    nats.publish("sb.n.edge0000.not!an!app", Bytes::from_static(b"\x01")).await.expect("publish");
    nats.flush().await.expect("flush");

    app.publish_to_group("room", "after-garbage", json!(1)).await;
    assert_eq!(next_message(&mut client).await.event, "after-garbage", "the edge carries on");
    let metrics = eventually("the drops to be counted", || async {
        let text = cluster.edges[0].metrics().await;
        text.contains("signalbox_bus_dropped_packets_total").then_some(text)
    })
    .await;
    for kind in ["empty", "unknown_version", "malformed", "bad_subject"] {
        assert!(metrics.contains(&format!("kind=\"{kind}\"")), "{kind} counted:\n{metrics}");
    }
}

#[tokio::test]
async fn hostile_names_route_across_edges_or_are_refused_by_the_rule() {
    let cluster = Cluster::start(2).await;
    let app = cluster.app().await;
    let names = ["a.b", "*", ">", "x.*.>", "with space", "Zürich 🚀", "a/b", "~7E"];
    let mut members = Vec::new();
    for name in names {
        let a = cluster.on_edge(&app, 0).connect(Some(name), &[name], &[]).await;
        let b = cluster.on_edge(&app, 1).connect(Some(name), &[name], &[]).await;
        members.push((name, a, b));
    }
    for (name, _, _) in &members {
        app.publish_to_group(name, "g", json!(name)).await;
        app.backend.send_to_user(&app.id, name, &Message::new("u", json!(name))).await.expect("to user");
    }
    for (name, a, b) in &mut members {
        for connection in [a, b] {
            // Two targets, two subjects: no order between them.
            let mut got = [next_message(connection).await, next_message(connection).await];
            got.sort_by(|x, y| x.event.cmp(&y.event));
            let [group, user] = got;
            assert_eq!((group.event.as_str(), group.group.as_deref(), &group.data), ("g", Some(*name), &json!(name)));
            assert_eq!((user.event.as_str(), user.group.as_deref(), &user.data), ("u", None, &json!(name)));
        }
    }
    let long = "x".repeat(1000);
    let err = app.backend.send_to_group(&app.id, &long, &Message::new("e", json!(1))).await.expect_err("too long");
    assert_eq!((err.status(), err.code()), (Some(422), Some("invalid_name")));
    let err = app.backend.send_to_user(&app.id, &long, &Message::new("e", json!(1))).await.expect_err("too long");
    assert_eq!(err.status(), Some(422));
}

//! Publishing over REST and from clients reaches exactly the right connections.

use serde_json::json;
use signalbox_sdk::server::Message;
use signalbox_tests::{Signalbox, assert_next_is_marker, eventually, next_message, within};

#[tokio::test]
async fn rest_publish_reaches_group_user_connection_and_everyone() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let mut alice = app.connect(Some("alice"), &["room-1"], &[]).await;
    let mut bob = app.connect(Some("bob"), &[], &[]).await;
    assert_eq!(alice.welcome().user_id.as_deref(), Some("alice"));

    app.publish_to_group("room-1", "chat", json!({"text": "to the room"})).await;
    let got = next_message(&mut alice).await;
    assert_eq!(
        (got.event.as_str(), got.group.as_deref(), &got.data),
        ("chat", Some("room-1"), &json!({"text": "to the room"}))
    );

    app.backend.send_to_user(&app.id, "bob", &Message::new("dm", json!("hi bob"))).await.expect("to user");
    let got = next_message(&mut bob).await;
    assert_eq!((got.event.as_str(), got.group, got.data), ("dm", None, json!("hi bob")));

    app.backend
        .send_to_connection(&app.id, alice.connection_id(), &Message::new("direct", json!(1)))
        .await
        .expect("to conn");
    assert_eq!(next_message(&mut alice).await.event, "direct");

    app.backend.broadcast(&app.id, &Message::new("everyone", json!(null))).await.expect("broadcast");
    assert_eq!(next_message(&mut alice).await.event, "everyone");
    assert_eq!(next_message(&mut bob).await.event, "everyone");
    // Bob, outside the room, got nothing else: the broadcast was his next message.
}

#[tokio::test]
async fn a_user_receives_on_every_connection_exactly_once() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let mut phone = app.connect(Some("carol"), &[], &[]).await;
    let mut laptop = app.connect(Some("carol"), &[], &[]).await;
    for i in 0..5 {
        app.backend.send_to_user(&app.id, "carol", &Message::new("n", json!(i))).await.expect("to user");
    }
    for connection in [&mut phone, &mut laptop] {
        for i in 0..5 {
            assert_eq!(next_message(connection).await.data, json!(i), "in order, once each");
        }
        assert_next_is_marker(&app, connection).await;
    }
}

#[tokio::test]
async fn exclusions_skip_the_named_connections() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let mut a = app.connect(None, &["g"], &[]).await;
    let mut b = app.connect(None, &["g"], &[]).await;
    let message = Message::new("e", json!("not for a")).excluding([a.connection_id()]);
    app.backend.send_to_group(&app.id, "g", &message).await.expect("publish");
    assert_eq!(next_message(&mut b).await.data, json!("not for a"));
    assert_next_is_marker(&app, &mut a).await;
}

#[tokio::test]
async fn clients_join_publish_and_leave_where_their_token_permits() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let perms = ["join:room-*", "publish:room-*"];
    let mut alice = app.connect(Some("alice"), &[], &perms).await;
    let mut bob = app.connect(Some("bob"), &[], &perms).await;
    within("join", alice.join("room-7")).await.expect("alice joins");
    within("join", bob.join("room-7")).await.expect("bob joins");
    within("join again", bob.join("room-7")).await.expect("joining twice is fine");

    within("publish", alice.publish("room-7", "chat", json!({"text": "hello"}))).await.expect("alice publishes");
    for connection in [&mut alice, &mut bob] {
        let got = next_message(connection).await;
        assert_eq!(
            (got.event.as_str(), got.group.as_deref(), got.data),
            ("chat", Some("room-7"), json!({"text": "hello"}))
        );
    }

    // noEcho: everyone but the publisher.
    within("publish", alice.publish_no_echo("room-7", "quiet", json!(1))).await.expect("publish");
    assert_eq!(next_message(&mut bob).await.event, "quiet");
    assert_next_is_marker(&app, &mut alice).await;

    within("leave", bob.leave("room-7")).await.expect("bob leaves");
    app.publish_to_group("room-7", "after-leave", json!(2)).await;
    assert_eq!(next_message(&mut alice).await.event, "after-leave");
    assert_next_is_marker(&app, &mut bob).await;

    let denied = within("join", alice.join("lobby")).await.expect_err("no join:lobby permission");
    assert_eq!(denied.code(), Some("forbidden"));
    let denied = within("publish", alice.publish("lobby", "x", json!(0))).await.expect_err("no publish permission");
    assert_eq!(denied.code(), Some("forbidden"));
}

#[tokio::test]
async fn groups_with_any_allowed_name_route_correctly() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let names = ["a.b", "*", ">", "with space", "Zürich 🚀", "slash/inside", "x.*.>", "%2F"];
    let mut clients = Vec::new();
    for name in names {
        clients.push((name, app.connect(None, &[name], &[]).await));
    }
    for (name, _) in &clients {
        app.publish_to_group(name, "e", json!(name)).await;
    }
    for (name, client) in &mut clients {
        let got = next_message(client).await;
        assert_eq!(
            (got.group.as_deref(), got.data),
            (Some(*name), json!(name)),
            "each group gets only its own message"
        );
    }
    let long = "ü".repeat(128);
    let mut long_client = app.connect(None, &[long.as_str()], &[]).await;
    app.publish_to_group(&long, "e", json!("long")).await;
    assert_eq!(next_message(&mut long_client).await.group.as_deref(), Some(long.as_str()));
}

#[tokio::test]
async fn users_added_to_groups_through_rest_get_them_now_and_on_new_connections() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let mut first = app.connect(Some("dave"), &[], &[]).await;
    app.backend.add_user_to_group(&app.id, "news", "dave", None).await.expect("add user");
    // Current connections join as the change reaches their node (asynchronously).
    eventually("the current connection to join", || async {
        let info = app.backend.connection(&app.id, first.connection_id()).await.expect("info");
        (info.groups == ["news"]).then_some(())
    })
    .await;

    let mut second = app.connect(Some("dave"), &[], &[]).await;
    app.publish_to_group("news", "headline", json!("extra")).await;
    assert_eq!(next_message(&mut first).await.event, "headline");
    assert_eq!(next_message(&mut second).await.event, "headline", "a later connection joined too");

    app.backend.remove_user_from_group(&app.id, "news", "dave").await.expect("remove user");
    eventually("the connection to leave", || async {
        let info = app.backend.connection(&app.id, second.connection_id()).await.expect("info");
        info.groups.is_empty().then_some(())
    })
    .await;
    let mut third = app.connect(Some("dave"), &[], &[]).await;
    let info = app.backend.connection(&app.id, third.connection_id()).await.expect("info");
    assert!(info.groups.is_empty(), "not joined after removal");
    assert_next_is_marker(&app, &mut third).await;
}

#[tokio::test]
async fn connections_are_added_to_groups_and_inspected_through_rest() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let mut client = app.connect(Some("erin"), &["a"], &[]).await;
    let id = client.connection_id().to_owned();
    app.backend.add_connection_to_group(&app.id, "b", &id).await.expect("add");
    let info = app.backend.connection(&app.id, &id).await.expect("info");
    let mut groups = info.groups.clone();
    groups.sort();
    assert_eq!(groups, vec!["a", "b"]);
    assert_eq!(
        (info.user_id.as_deref(), info.protocol.as_str(), info.transport.as_str()),
        (Some("erin"), "signalbox.json.v1", "websocket")
    );
    app.publish_to_group("b", "in-b", json!(1)).await;
    assert_eq!(next_message(&mut client).await.event, "in-b");
    app.backend.remove_connection_from_group(&app.id, "b", &id).await.expect("remove");
    assert_eq!(app.backend.connection(&app.id, &id).await.expect("info").groups, vec!["a"]);

    // Unknown connections, on this node or on a node that does not exist.
    let unknown = format!("{}_{}", &id[..id.find('_').expect("node prefix")], "zzzzzzzzzzzzzzzz");
    assert_eq!(app.backend.connection(&app.id, &unknown).await.expect_err("unknown").status(), Some(404));
    assert_eq!(app.backend.connection(&app.id, "nonode0_zzzz").await.expect_err("no node").status(), Some(404));
    assert_eq!(
        app.backend.add_connection_to_group(&app.id, "b", &unknown).await.expect_err("unknown").status(),
        Some(404)
    );
}

//! Presence: who is in a group and whether a user is online, over REST and the client
//! protocol; batched join/leave events; across edges, and after an edge is killed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use signalbox_sdk::realtime::{Connection, Event};
use signalbox_sdk::server::TokenRequest;
use signalbox_tests::cluster::{Cluster, Shape};
use signalbox_tests::webhook::Receiver;
use signalbox_tests::{Signalbox, TestApp, eventually, within};

async fn connect_with_info(app: &TestApp, user: &str, groups: &[&str], info: Value) -> Connection {
    let request = TokenRequest {
        user_id: Some(user.to_owned()),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        permissions: vec!["join:room-*".into()],
        info: Some(info),
        ..TokenRequest::default()
    };
    let token = app.backend.mint_token(&app.id, &request).await.expect("mint").token;
    within("connect", Connection::connect(&app.ws_url, &token)).await.expect("connect")
}

#[tokio::test]
async fn presence_says_who_is_in_a_group_and_who_is_online() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let _phone = connect_with_info(&app, "alice", &["room-1"], json!({"name": "Alice"})).await;
    let _laptop = connect_with_info(&app, "alice", &["room-1"], json!({"name": "Alice"})).await;
    let bob = connect_with_info(&app, "bob", &["room-1", "room-2"], json!({"name": "Bob"})).await;
    let _anonymous = app.connect(None, &["room-1"], &[]).await;
    let _elsewhere = app.connect(Some("carol"), &["room-2"], &[]).await;

    let presence = app.backend.group_presence(&app.id, "room-1").await.expect("presence");
    assert_eq!(
        presence,
        json!({"count": 2, "connections": 4, "members": [
            {"user_id": "alice", "connections": 2, "info": {"name": "Alice"}},
            {"user_id": "bob", "connections": 1, "info": {"name": "Bob"}},
        ]})
    );
    // Paged by user id.
    let mut url = app.backend.url(&["v1", "apps", &app.id, "groups", "room-1", "presence"]);
    url.query_pairs_mut().append_pair("limit", "1");
    let first: Value = reqwest::Client::new()
        .get(url.clone())
        .bearer_auth(format!("{}.{}", app.key_id, app.secret))
        .send()
        .await
        .expect("page")
        .json()
        .await
        .expect("json");
    assert_eq!((first["members"][0]["user_id"].clone(), first["next"].clone()), (json!("alice"), json!("alice")));
    url.query_pairs_mut().append_pair("after", "alice");
    let second: Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(format!("{}.{}", app.key_id, app.secret))
        .send()
        .await
        .expect("page")
        .json()
        .await
        .expect("json");
    assert_eq!(second["members"][0]["user_id"], "bob");
    assert!(second.get("next").is_none(), "the last page");

    assert_eq!(
        app.backend.user_presence(&app.id, "alice").await.expect("user"),
        json!({"online": true, "connections": 2})
    );
    assert_eq!(
        app.backend.user_presence(&app.id, "dave").await.expect("user"),
        json!({"online": false, "connections": 0})
    );

    // A client may ask about groups it may join.
    let asked = within("presence", bob.presence("room-1")).await.expect("presence");
    assert_eq!((asked.count, asked.connections), (2, 4));
    assert_eq!(asked.members[0].info, Some(json!({"name": "Alice"})));
    let err = within("presence", bob.presence("secret")).await.expect_err("may not join it");
    assert_eq!(err.code(), Some("forbidden"));

    // Nobody else's: another app's key is refused, and names are checked.
    let other = signalbox.app().await;
    let err = other.backend.group_presence(&app.id, "room-1").await.expect_err("another app's key");
    assert_eq!(err.status(), Some(403));
    assert_eq!(other.backend.group_presence(&other.id, "room-1").await.expect("empty")["count"], 0);
    let long = "x".repeat(200);
    assert_eq!(app.backend.group_presence(&app.id, &long).await.expect_err("bad name").status(), Some(422));
}

/// Collects presence events until `done` says the state is reached.
async fn watch_presence(watcher: &mut Connection, done: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
    watch_presence_for(watcher, signalbox_tests::DEADLINE, done).await
}

async fn watch_presence_for(
    watcher: &mut Connection,
    deadline: Duration,
    mut done: impl FnMut(&[Event]) -> bool,
) -> Vec<Event> {
    let mut frames = Vec::new();
    let mut others = Vec::new();
    let watched = tokio::time::timeout(deadline, async {
        while !done(&frames) {
            match watcher.next_event().await {
                Some(event @ Event::Presence { .. }) => frames.push(event),
                Some(Event::Closed { code, .. }) => panic!("closed with {code}"),
                Some(other) => others.push(other),
                None => panic!("ended"),
            }
        }
    })
    .await;
    assert!(watched.is_ok(), "timed out waiting for presence events; got {frames:?} and {others:?}");
    frames
}

fn totals(frames: &[Event]) -> (usize, usize, u64) {
    let (mut joined, mut left, mut count) = (0, 0, 0);
    for frame in frames {
        if let Event::Presence { joined: j, left: l, count: c, .. } = frame {
            joined += j.len();
            left += l.len();
            count = *c;
        }
    }
    (joined, left, count)
}

#[tokio::test]
async fn members_hear_who_came_and_went_at_most_once_per_interval() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(json!({"presence": {"events": "members"}})).await;
    let mut watcher = app.connect(Some("watcher"), &["room-1"], &[]).await;
    let frames = watch_presence(&mut watcher, |f| totals(f).0 >= 1).await;
    assert_eq!(totals(&frames), (1, 0, 1), "its own arrival");

    let started = Instant::now();
    let joiners = futures_util::future::join_all((0..60).map(|i| {
        let app = app.clone();
        async move { app.connect(Some(&format!("user-{i}")), &["room-1"], &[]).await }
    }))
    .await;
    let frames = watch_presence(&mut watcher, |f| totals(f).2 == 61).await;
    let elapsed = started.elapsed();
    let (joined, left, count) = totals(&frames);
    assert_eq!((left, count), (0, 61));
    let truncated = frames.iter().any(|f| matches!(f, Event::Presence { truncated: true, .. }));
    assert!(joined == 60 || truncated, "every join listed, or the lists say they were cut: {joined}");
    // Batched: at most one frame per 250 ms interval (plus the two at the edges of the window).
    let intervals = (elapsed.as_millis() / 250) as usize + 2;
    assert!(frames.len() <= intervals, "{} frames in {elapsed:?}", frames.len());
    assert!(frames.len() < 60, "batched, not one frame per join");
    if let Event::Presence { joined, .. } = &frames[0] {
        assert!(joined.iter().all(|c| c.user_id.as_deref().is_some_and(|u| u.starts_with("user-"))));
    }

    for joiner in &joiners[..10] {
        joiner.close();
    }
    let frames = watch_presence(&mut watcher, |f| totals(f).2 == 51).await;
    assert_eq!(totals(&frames).1, 10, "ten left");
}

#[tokio::test]
async fn count_mode_tells_only_the_number() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(json!({"presence": {"events": "count"}})).await;
    let mut watcher = app.connect(None, &["room-1"], &[]).await;
    let mut others = Vec::new();
    for _ in 0..5 {
        others.push(app.connect(None, &["room-1"], &[]).await);
    }
    let frames = watch_presence(&mut watcher, |f| totals(f).2 == 6).await;
    assert!(
        frames
            .iter()
            .all(|f| matches!(f, Event::Presence { joined, left, .. } if joined.is_empty() && left.is_empty()))
    );
    drop(others);
    watch_presence(&mut watcher, |f| totals(f).2 == 1).await;
}

#[tokio::test]
async fn presence_spans_edges_and_forgets_a_killed_edge() {
    let mut cluster = Cluster::start(2).await;
    let app = cluster.app_with(json!({"presence": {"events": "count"}})).await;
    let mut alice = cluster.on_edge(&app, 0).connect(Some("alice"), &["room-1"], &["join:room-*"]).await;
    let _bob = cluster.on_edge(&app, 1).connect(Some("bob"), &["room-1"], &[]).await;
    let _bob_again = cluster.on_edge(&app, 1).connect(Some("bob"), &["room-1"], &[]).await;
    let presence = app.backend.group_presence(&app.id, "room-1").await.expect("presence");
    assert_eq!((presence["count"].clone(), presence["connections"].clone()), (json!(2), json!(3)));
    assert_eq!(app.backend.user_presence(&app.id, "bob").await.expect("user")["connections"], 2);
    let asked = within("presence", alice.presence("room-1")).await.expect("presence");
    assert_eq!(asked.members.iter().map(|m| m.user_id.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
    // Counts add up across edges.
    watch_presence(&mut alice, |f| totals(f).2 == 3).await;

    cluster.edges[1].process.kill();
    // The killed edge's connections are gone from the next answer (its requests find no
    // responder once NATS has noticed the process is gone).
    eventually("bob to be gone", || async {
        let presence = app.backend.group_presence(&app.id, "room-1").await.ok()?;
        (presence["connections"] == 1).then_some(())
    })
    .await;
    assert_eq!(app.backend.user_presence(&app.id, "bob").await.expect("user")["online"], false);
    // Counts forget a silent edge after the peer timeout (10 s), checked every 2 s.
    watch_presence_for(&mut alice, Duration::from_secs(30), |f| totals(f).2 == 1).await;
}

#[tokio::test]
async fn a_lost_edge_owes_its_disconnects_and_they_are_delivered() {
    let mut cluster = Cluster::start_shaped(Shape {
        apis: 1,
        edges: 2,
        api_args: vec!["--webhook-allow".into(), "loopback".into()],
        ..Shape::default()
    })
    .await;
    let app = cluster.app().await;
    let receiver = Receiver::start().await;
    app.tenant.create_webhook(&app.id, &receiver.url(), &["connected", "disconnected"]).await.expect("webhook");
    let on_doomed = cluster.on_edge(&app, 1);
    let mut ids = Vec::new();
    for i in 0..3 {
        let connection = on_doomed.connect(Some(&format!("u{i}")), &["room"], &[]).await;
        ids.push(connection.connection_id().to_owned());
        std::mem::forget(connection);
    }
    let survivor = cluster.on_edge(&app, 0).connect(Some("stays"), &[], &[]).await;
    receiver.wait_for("the connects", 4, |r| r.kind == "signalbox.connected").await;
    cluster.edges[1].process.kill();
    // Reported after the edge has been silent for 30 s: give it a minute.
    let disconnects = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let seen: Vec<_> = receiver.received().into_iter().filter(|r| r.kind == "signalbox.disconnected").collect();
            if seen.len() >= 3 {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the lost edge's disconnects within a minute");
    let mut reported: Vec<&str> = disconnects.iter().filter_map(|r| r.body["connection_id"].as_str()).collect();
    reported.sort_unstable();
    ids.sort_unstable();
    assert_eq!(reported, ids.iter().map(String::as_str).collect::<Vec<_>>(), "exactly the lost edge's connections");
    assert!(disconnects.iter().all(|r| r.body["code"] == 1006 && r.body["groups"] == json!(["room"])));
    assert!(
        !disconnects.iter().any(|r| r.body["connection_id"] == survivor.connection_id()),
        "the survivor is not reported"
    );
}

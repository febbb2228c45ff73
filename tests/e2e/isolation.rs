//! Tenant isolation: a tenant token or app key of tenant A can read, change, publish to or
//! observe nothing of tenant B — on every route.

use reqwest::Method;
use serde_json::json;
use signalbox_sdk::server::Message;
use signalbox_tests::{Signalbox, assert_next_is_marker, next_message};

#[tokio::test]
async fn nothing_crosses_tenants_on_any_route() {
    let signalbox = Signalbox::start().await;
    let a = signalbox.app().await;
    let b = signalbox.app().await;
    let mut b_client = b.connect(Some("victim"), &["room"], &[]).await;
    let b_conn = b_client.connection_id().to_owned();
    let b_key = b.key_id.clone();

    // Every route, with A's tenant token and with A's app key, aimed at B's app.
    let body = json!({"event": "e", "data": "from A"});
    let routes: Vec<(Method, Vec<String>, Option<serde_json::Value>)> = vec![
        (Method::GET, vec!["v1".into(), "apps".into(), b.id.clone()], None),
        (Method::PATCH, vec!["v1".into(), "apps".into(), b.id.clone()], Some(json!({"name": "pwned"}))),
        (Method::DELETE, vec!["v1".into(), "apps".into(), b.id.clone()], None),
        (Method::POST, vec!["v1".into(), "apps".into(), b.id.clone(), "keys".into()], Some(json!({}))),
        (Method::GET, vec!["v1".into(), "apps".into(), b.id.clone(), "keys".into()], None),
        (Method::DELETE, vec!["v1".into(), "apps".into(), b.id.clone(), "keys".into(), b_key.clone()], None),
        (Method::POST, vec!["v1".into(), "apps".into(), b.id.clone(), "tokens".into()], Some(json!({}))),
        (Method::POST, vec!["v1".into(), "apps".into(), b.id.clone(), "broadcast".into()], Some(body.clone())),
        (
            Method::POST,
            vec!["v1".into(), "apps".into(), b.id.clone(), "users".into(), "victim".into(), "messages".into()],
            Some(body.clone()),
        ),
        (
            Method::POST,
            vec!["v1".into(), "apps".into(), b.id.clone(), "groups".into(), "room".into(), "messages".into()],
            Some(body.clone()),
        ),
        (
            Method::POST,
            vec!["v1".into(), "apps".into(), b.id.clone(), "connections".into(), b_conn.clone(), "messages".into()],
            Some(body.clone()),
        ),
        (
            Method::PUT,
            vec![
                "v1".into(),
                "apps".into(),
                b.id.clone(),
                "groups".into(),
                "x".into(),
                "connections".into(),
                b_conn.clone(),
            ],
            None,
        ),
        (
            Method::DELETE,
            vec![
                "v1".into(),
                "apps".into(),
                b.id.clone(),
                "groups".into(),
                "room".into(),
                "connections".into(),
                b_conn.clone(),
            ],
            None,
        ),
        (
            Method::PUT,
            vec![
                "v1".into(),
                "apps".into(),
                b.id.clone(),
                "groups".into(),
                "x".into(),
                "users".into(),
                "victim".into(),
            ],
            None,
        ),
        (
            Method::DELETE,
            vec![
                "v1".into(),
                "apps".into(),
                b.id.clone(),
                "groups".into(),
                "room".into(),
                "users".into(),
                "victim".into(),
            ],
            None,
        ),
        (Method::GET, vec!["v1".into(), "apps".into(), b.id.clone(), "connections".into(), b_conn.clone()], None),
        (Method::DELETE, vec!["v1".into(), "apps".into(), b.id.clone(), "connections".into(), b_conn.clone()], None),
        (
            Method::DELETE,
            vec!["v1".into(), "apps".into(), b.id.clone(), "users".into(), "victim".into(), "connections".into()],
            None,
        ),
    ];
    for client in [&a.tenant, &a.backend] {
        for (method, segments, body) in &routes {
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            let response = client.send(method.clone(), &segments, body.as_ref()).await.expect("send");
            let status = response.status().as_u16();
            assert!(matches!(status, 401 | 403 | 404), "{method} {segments:?} gave {status}");
        }
    }
    // A's listing never shows B's app.
    let listed = a.tenant.list_apps(None, None).await.expect("list");
    assert!(listed.items.iter().all(|app| app.id != b.id));

    // B's world is untouched: still named, keyed, connected, in its room, and it got nothing from A.
    assert_eq!(b.tenant.get_app(&b.id).await.expect("b's app").name, "test app");
    b.backend.send_to_group(&b.id, "room", &Message::new("own", json!("from B"))).await.expect("b's key still works");
    let got = next_message(&mut b_client).await;
    assert_eq!((got.event.as_str(), got.data), ("own", json!("from B")), "nothing from A arrived first");
    let info = b.backend.connection(&b.id, &b_conn).await.expect("still connected");
    assert_eq!(info.groups, vec!["room"]);
    assert_next_is_marker(&b, &mut b_client).await;
}

#[tokio::test]
async fn a_token_for_one_app_cannot_join_another_apps_groups() {
    let signalbox = Signalbox::start().await;
    let a = signalbox.app().await;
    let b = signalbox.app().await;
    let mut in_a = a.connect(None, &["shared-name"], &["join:*", "publish:*"]).await;
    let mut in_b = b.connect(None, &["shared-name"], &[]).await;
    in_a.publish("shared-name", "from-a", json!(1)).await.expect("publish in A");
    assert_eq!(next_message(&mut in_a).await.event, "from-a");
    b.publish_to_group("shared-name", "from-b", json!(2)).await;
    assert_eq!(next_message(&mut in_b).await.event, "from-b", "A's message never reached B's group of the same name");
    assert_next_is_marker(&a, &mut in_a).await;
}

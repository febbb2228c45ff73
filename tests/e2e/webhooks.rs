//! Webhooks against a real HTTP receiver: management and validation, signed CloudEvents,
//! ordered retries, `connect` decisions, client events, secret rotation.

use std::time::Duration;

use serde_json::{Value, json};
use signalbox_core::clock;
use signalbox_sdk::realtime::Connection;
use signalbox_sdk::webhook::verify;
use signalbox_tests::webhook::{Received, Receiver, Reply};
use signalbox_tests::{Signalbox, TestApp, eventually, next_message, within};

/// Creates a webhook for `events`; returns its id and secret.
async fn webhook(app: &TestApp, receiver: &Receiver, events: &[&str]) -> (String, String) {
    let created = app.tenant.create_webhook(&app.id, &receiver.url(), events).await.expect("create webhook");
    (created["id"].as_str().expect("id").to_owned(), created["secret"].as_str().expect("secret").to_owned())
}

fn assert_signed(received: &Received, secret: &str) {
    let header = received.header("signalbox-signature").expect("signed");
    verify(secret.as_bytes(), header, &received.raw, clock::unix_seconds(), 300)
        .unwrap_or_else(|e| panic!("signature of {} does not verify: {e}", received.kind));
}

#[tokio::test]
async fn webhooks_are_managed_and_validated() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let receiver = Receiver::start().await;
    let (id, secret) = webhook(&app, &receiver, &["connected", "disconnected"]).await;
    assert!(secret.starts_with("whsec_"));
    let listed = app.tenant.list_webhooks(&app.id).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0]["events"], json!(["connected", "disconnected"]));
    assert!(listed.items[0].get("secret").is_none(), "the secret is shown once");

    let refused = |body: Value| {
        let tenant = app.tenant.clone();
        let app = app.id.clone();
        async move {
            let response = tenant
                .send(reqwest::Method::POST, &["v1", "apps", &app, "webhooks"], Some(&body))
                .await
                .expect("request");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("problem")["code"].as_str().unwrap_or_default().to_owned())
        }
    };
    let url = receiver.url();
    assert_eq!(refused(json!({"url": url, "events": []})).await, (422, "invalid_field".into()));
    assert_eq!(refused(json!({"url": url, "events": ["shutdown"]})).await.0, 422, "unknown event");
    assert_eq!(
        refused(json!({"url": "ftp://example.com/x", "events": ["event"]})).await,
        (422, "invalid_field".into())
    );
    let metadata = json!({"url": "http://169.254.169.254/latest/meta-data", "events": ["event"]});
    assert_eq!(refused(metadata).await, (422, "invalid_field".into()), "cloud metadata is never a target");
    assert_eq!(refused(json!({"url": "http://u:p@example.com/", "events": ["event"]})).await.0, 422);
    assert_eq!(refused(json!({"url": url, "events": ["event"], "extra": 1})).await.0, 422);

    // Another tenant sees nothing.
    let other = signalbox.app().await;
    let err = other.tenant.update_webhook(&app.id, &id, json!({"events": ["event"]})).await.expect_err("not theirs");
    assert_eq!(err.status(), Some(404));
    let err = app.tenant.delete_webhook(&other.id, &id).await.expect_err("wrong app");
    assert_eq!(err.status(), Some(404));

    // At most 10 per app.
    for _ in 1..10 {
        webhook(&app, &receiver, &["event"]).await;
    }
    assert_eq!(refused(json!({"url": url, "events": ["event"]})).await, (409, "conflict".into()));

    // Rotation: a new secret beside the old one, then only the new one.
    let rotated = app.tenant.update_webhook(&app.id, &id, json!({"rotate_secret": true})).await.expect("rotate");
    let new_secret = rotated["secret"].as_str().expect("new secret");
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["rotating"], true);
    let dropped = app.tenant.update_webhook(&app.id, &id, json!({"drop_previous_secret": true})).await.expect("drop");
    assert_eq!(dropped["rotating"], false);
    assert!(dropped.get("secret").is_none());
    let both = json!({"rotate_secret": true, "drop_previous_secret": true});
    assert_eq!(app.tenant.update_webhook(&app.id, &id, both).await.expect_err("both").status(), Some(422));

    app.tenant.delete_webhook(&app.id, &id).await.expect("delete");
    assert_eq!(app.tenant.delete_webhook(&app.id, &id).await.expect_err("gone").status(), Some(404));
}

#[tokio::test]
async fn connections_are_announced_signed_in_order_per_connection() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let receiver = Receiver::start().await;
    let (_, secret) = webhook(&app, &receiver, &["connected", "disconnected"]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let client = app.connect(Some(&format!("user-{i}")), &["lobby"], &[]).await;
        ids.push(client.connection_id().to_owned());
        client.close();
    }
    let events = receiver.wait_for("connected and disconnected of every connection", 10, |_| true).await;
    for id in &ids {
        let of_this: Vec<&Received> = events.iter().filter(|r| r.body["connection_id"] == id.as_str()).collect();
        let kinds: Vec<&str> = of_this.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["signalbox.connected", "signalbox.disconnected"], "in order for {id}");
        for received in &of_this {
            assert_signed(received, &secret);
            assert_eq!(received.header("ce-specversion"), Some("1.0"));
            assert_eq!(received.header("ce-source"), Some(format!("/apps/{}", app.id).as_str()));
            assert_eq!(received.header("ce-subject"), Some(id.as_str()));
            assert!(received.header("ce-time").is_some_and(|t| t.ends_with('Z')));
            assert_eq!(received.header("content-type"), Some("application/json"));
            assert_eq!(received.body["groups"], json!(["lobby"]));
        }
        assert_eq!(of_this[1].body["code"], 1000);
        assert!(of_this[0].body["user_id"].as_str().is_some_and(|u| u.starts_with("user-")));
    }
    let unique: std::collections::BTreeSet<&str> = events.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(unique.len(), 10, "every event has its own id");
}

#[tokio::test]
async fn failed_deliveries_are_retried_in_order_and_logged() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let receiver = Receiver::start().await;
    receiver.script("signalbox.connected", [Reply::status(500), Reply::status(503)]);
    let (id, secret) = webhook(&app, &receiver, &["connected", "disconnected"]).await;
    let client = app.connect(Some("ana"), &[], &[]).await;
    client.close();
    let seen = receiver.wait_for("three attempts, then the disconnect", 4, |_| true).await;
    let kinds: Vec<&str> = seen.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["signalbox.connected", "signalbox.connected", "signalbox.connected", "signalbox.disconnected"],
        "the disconnect waits until the connect is delivered"
    );
    assert!(seen[..3].iter().all(|r| r.id == seen[0].id), "a retry is the same event");
    for received in &seen {
        assert_signed(received, &secret);
    }
    let log = eventually("the delivery log", || async {
        let log = app.tenant.webhook_deliveries(&app.id, &id).await.ok()?;
        (log["items"].as_array()?.len() >= 4).then_some(log)
    })
    .await;
    let items = log["items"].as_array().expect("items");
    let summary: Vec<(String, String, Value)> = items
        .iter()
        .rev()
        .map(|i| {
            (
                i["event"].as_str().unwrap_or_default().into(),
                i["outcome"].as_str().unwrap_or_default().into(),
                i["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("connected".into(), "failed".into(), json!(500)),
            ("connected".into(), "failed".into(), json!(503)),
            ("connected".into(), "delivered".into(), json!(200)),
            ("disconnected".into(), "delivered".into(), json!(200)),
        ]
    );
    assert_eq!(items.last().expect("oldest")["attempt"], 1);
    assert_eq!(items[1]["attempt"], 3);
}

#[tokio::test]
async fn connect_can_reject_or_decide_who_the_connection_is() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let receiver = Receiver::start().await;
    let (_, secret) = webhook(&app, &receiver, &["connect"]).await;
    receiver.script(
        "signalbox.connect",
        [
            Reply::json(403, json!({"reason": "banned until tomorrow"})),
            Reply::json(
                200,
                json!({"user_id": "bob", "groups": ["vip"], "permissions": ["publish:vip"], "info": {"tier": "gold"}}),
            ),
        ],
    );
    let token = app.token(Some("mallory"), &["lobby"], &[]).await;
    let url = format!("{}?room=42", app.ws_url);
    let refused = within("connect", Connection::connect(&url, &token)).await.expect_err("rejected");
    assert_eq!(refused.close_code(), Some(4003));
    assert!(refused.to_string().contains("banned until tomorrow"), "{refused}");
    let asked = &receiver.wait_for("the connect call", 1, |_| true).await[0];
    assert_signed(asked, &secret);
    assert_eq!(asked.body["user_id"], "mallory");
    assert_eq!(asked.body["groups"], json!(["lobby"]));
    assert_eq!(asked.body["claims"]["sub"], "mallory");
    assert_eq!(asked.body["query"], json!({"room": "42"}), "the query without the token");

    let mut changed = within("connect", Connection::connect(&app.ws_url, &token)).await.expect("accepted");
    assert_eq!(changed.welcome().user_id.as_deref(), Some("bob"));
    app.publish_to_group("vip", "welcome", json!(1)).await;
    assert_eq!(next_message(&mut changed).await.group.as_deref(), Some("vip"));
    within("publish", changed.publish("vip", "hello", json!(2))).await.expect("the webhook's permissions apply");
    let err = within("publish", changed.publish("lobby", "x", json!(3))).await.expect_err("the token's do not");
    assert_eq!(err.code(), Some("forbidden"));
    let presence = within("presence", changed.presence("vip")).await;
    assert_eq!(presence.expect_err("no join permission on vip").code(), Some("forbidden"));
}

#[tokio::test]
async fn a_failing_connect_webhook_follows_the_apps_policy() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(json!({"webhooks": {"connect_timeout_ms": 300}})).await;
    let receiver = Receiver::start().await;
    webhook(&app, &receiver, &["connect"]).await;
    receiver.always("signalbox.connect", Reply::status(200).delayed(Duration::from_secs(3)));
    let token = app.token(Some("ana"), &[], &[]).await;
    let refused = within("connect", Connection::connect(&app.ws_url, &token)).await.expect_err("timed out");
    assert_eq!(refused.close_code(), Some(4103), "retry later: {refused}");
    receiver.always("signalbox.connect", Reply::status(500));
    let refused = within("connect", Connection::connect(&app.ws_url, &token)).await.expect_err("failed");
    assert_eq!(refused.close_code(), Some(4103));
    // The app prefers to let clients in when its webhook is down.
    app.tenant.update_app(&app.id, json!({"webhooks": {"connect_failure": "accept"}})).await.expect("patch");
    let connection =
        eventually("the policy to apply", || async { Connection::connect(&app.ws_url, &token).await.ok() }).await;
    assert_eq!(connection.welcome().user_id.as_deref(), Some("ana"), "as the token says");
}

#[tokio::test]
async fn client_events_are_answered_by_the_webhook() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let client = app.connect(Some("ana"), &[], &[]).await;
    let err = within("event", client.send_event("vote", json!({"choice": 2}))).await.expect_err("no webhook yet");
    assert_eq!(err.code(), Some("no_upstream"));

    let receiver = Receiver::start().await;
    let (_, secret) = webhook(&app, &receiver, &["event"]).await;
    receiver.script(
        "signalbox.event",
        [Reply::json(200, json!({"accepted": true, "tally": [1, 2]})), Reply::status(500), Reply::status(204)],
    );
    // A new connection learns the app's webhooks.
    let client = app.connect(Some("ana"), &[], &[]).await;
    let answer = within("event", client.send_event("vote", json!({"choice": 2}))).await.expect("answered");
    assert_eq!(answer, json!({"accepted": true, "tally": [1, 2]}));
    let asked = &receiver.wait_for("the event call", 1, |_| true).await[0];
    assert_signed(asked, &secret);
    assert_eq!(
        asked.body,
        json!({"connection_id": client.connection_id(), "user_id": "ana", "event": "vote", "data": {"choice": 2}})
    );
    let err = within("event", client.send_event("vote", json!(3))).await.expect_err("the webhook failed");
    assert_eq!(err.code(), Some("upstream_failed"));
    assert_eq!(within("event", client.send_event("vote", json!(4))).await.expect("204"), Value::Null);
    // Over the app's 64 KiB limit, within the frame limit (which would close the connection).
    let big = "x".repeat(66_000);
    let err = within("event", client.send_event("vote", json!(big))).await.expect_err("too big");
    assert_eq!(err.code(), Some("message_too_large"));
}

#[tokio::test]
async fn a_rotation_signs_with_both_secrets_and_the_test_call_reports() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let receiver = Receiver::start().await;
    let (id, old) = webhook(&app, &receiver, &["connected"]).await;
    let rotated = app.tenant.update_webhook(&app.id, &id, json!({"rotate_secret": true})).await.expect("rotate");
    let new = rotated["secret"].as_str().expect("secret").to_owned();
    let tested = app.tenant.test_webhook(&app.id, &id).await.expect("test");
    assert_eq!((tested["delivered"].clone(), tested["status"].clone()), (json!(true), json!(200)));
    let ping = &receiver.wait_for("the ping", 1, |r| r.kind == "signalbox.ping").await[0];
    assert_eq!(ping.header("signalbox-signature").map(|h| h.matches("v1=").count()), Some(2));
    assert_signed(ping, &old);
    assert_signed(ping, &new);
    app.tenant.update_webhook(&app.id, &id, json!({"drop_previous_secret": true})).await.expect("drop");
    app.connect(None, &[], &[]).await;
    let connected = &receiver.wait_for("the connect event", 1, |r| r.kind == "signalbox.connected").await[0];
    assert_signed(connected, &new);
    let header = connected.header("signalbox-signature").expect("signed");
    assert!(verify(old.as_bytes(), header, &connected.raw, clock::unix_seconds(), 300).is_err(), "old secret retired");

    receiver.always("signalbox.ping", Reply::status(418));
    let tested = app.tenant.test_webhook(&app.id, &id).await.expect("test");
    assert_eq!((tested["delivered"].clone(), tested["status"].clone()), (json!(false), json!(418)));
    drop(receiver);
    let tested = app.tenant.test_webhook(&app.id, &id).await.expect("test");
    assert_eq!(tested["delivered"], false);
    assert!(tested["error"].as_str().is_some_and(|e| !e.is_empty()), "{tested}");
}

/// The first fenced block of `language` in `docs/webhooks.md`.
fn documented(language: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/webhooks.md")).expect("doc");
    let start = doc.find(&format!("```{language}\n")).expect("a block") + language.len() + 4;
    doc[start..].split("```").next().expect("closed").to_owned()
}

/// Runs a documented verifier on a request; its output says whether it accepted it.
fn run_verifier(program: &str, args: &[&str], script: String, secret: &str, header: &str, body: &[u8]) -> bool {
    let dir = signalbox_test_support::tempfile::TempDir::new().expect("dir");
    let body_path = dir.path().join("body");
    std::fs::write(&body_path, body).expect("body");
    let output = std::process::Command::new(program)
        .args(args)
        .arg(script)
        .env("SECRET", secret)
        .env("HEADER", header)
        .env("BODY_FILE", &body_path)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{program} failed: {}", String::from_utf8_lossy(&output.stderr));
    match stdout.trim() {
        "true" | "True" => true,
        "false" | "False" => false,
        other => panic!("unexpected output {other:?}"),
    }
}

#[tokio::test]
async fn the_documented_verifiers_accept_real_deliveries_and_nothing_else() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let receiver = Receiver::start().await;
    let (_, secret) = webhook(&app, &receiver, &["connected"]).await;
    app.connect(Some("ana"), &[], &[]).await;
    let delivery = receiver.wait_for("a delivery", 1, |_| true).await.remove(0);
    let header = delivery.header("signalbox-signature").expect("signed").to_owned();
    let mut tampered = delivery.raw.to_vec();
    tampered.extend_from_slice(b" ");
    let js = documented("js")
        + "\nimport { readFileSync } from 'node:fs';\nconsole.log(verifySignalbox(process.env.SECRET, process.env.HEADER, readFileSync(process.env.BODY_FILE)));";
    let python = documented("python")
        + "\nimport os\nprint(verify_signalbox(os.environ['SECRET'].encode(), os.environ['HEADER'], open(os.environ['BODY_FILE'], 'rb').read()))";
    for (program, args, script) in [("node", vec!["--input-type=module", "-e"], js), ("python3", vec!["-c"], python)] {
        assert!(run_verifier(program, &args, script.clone(), &secret, &header, &delivery.raw), "{program}: genuine");
        assert!(!run_verifier(program, &args, script.clone(), &secret, &header, &tampered), "{program}: tampered");
        assert!(
            !run_verifier(program, &args, script.clone(), "whsec_wrong", &header, &delivery.raw),
            "{program}: wrong secret"
        );
        let stale = header.replacen("t=", "t=1", 1);
        assert!(
            !run_verifier(program, &args, script, &secret, &stale, &delivery.raw),
            "{program}: a timestamp far off"
        );
    }
}

#[tokio::test]
async fn a_cluster_api_refuses_webhooks_to_internal_addresses_unless_allowed() {
    let cluster = signalbox_tests::cluster::Cluster::start(1).await;
    let app = cluster.app().await;
    for url in ["http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://[::1]/hook", "http://localhost:9/hook"] {
        let err = app.tenant.create_webhook(&app.id, url, &["connected"]).await.expect_err(url);
        assert_eq!(err.status(), Some(422), "{url}");
    }
    let created = app.tenant.create_webhook(&app.id, "https://93.184.216.34/hook", &["connected"]).await;
    assert!(created.is_ok(), "a public address is fine: {created:?}");
}

#[tokio::test]
async fn two_api_nodes_deliver_each_event_once_in_order_per_connection() {
    let cluster = signalbox_tests::cluster::Cluster::start_shaped(signalbox_tests::cluster::Shape {
        apis: 2,
        edges: 1,
        api_args: vec!["--webhook-allow".into(), "loopback".into()],
        ..Default::default()
    })
    .await;
    let app = cluster.app().await;
    let receiver = Receiver::start().await;
    let (_, secret) = webhook(&app, &receiver, &["connected", "disconnected"]).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let client = app.connect(Some(&format!("u{i}")), &[], &[]).await;
        ids.push(client.connection_id().to_owned());
        client.close();
    }
    let events = receiver.wait_for("every event", 40, |_| true).await;
    let unique: std::collections::BTreeSet<&str> = events.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(unique.len(), 40, "forty distinct events");
    for id in &ids {
        let kinds: Vec<&str> =
            events.iter().filter(|r| r.body["connection_id"] == id.as_str()).map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds[..2], ["signalbox.connected", "signalbox.disconnected"], "{id}");
    }
    assert_signed(&events[0], &secret);
}

#[tokio::test]
async fn a_connect_answer_with_too_many_groups_is_refused_for_good_with_4004() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(json!({"limits": {"max_groups_per_connection": 2}})).await;
    let receiver = Receiver::start().await;
    webhook(&app, &receiver, &["connect"]).await;
    receiver.always("signalbox.connect", Reply::json(200, json!({"groups": ["a", "b", "c"]})));
    let token = app.token(Some("carol"), &["lobby"], &[]).await;
    let refused = within("connect", Connection::connect(&app.ws_url, &token)).await.expect_err("too many groups");
    assert_eq!(refused.close_code(), Some(4004), "{refused}");
    assert_eq!(signalbox.server.connection_count(), 0, "nothing was registered");
}

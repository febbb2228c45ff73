//! What operators run Signalbox by, against real processes: `/metrics` series that move with
//! real traffic on every role, and one trace per REST publish that crosses NATS to the edge.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::json;
use signalbox_sdk::server::Message;
use signalbox_tests::cluster::{Cluster, Shape};
use signalbox_tests::metrics::{samples, value};
use signalbox_tests::webhook::Receiver;
use signalbox_tests::{closed, eventually, next_message};

#[tokio::test]
async fn metrics_on_every_role_move_with_real_traffic() {
    let cluster = Cluster::start_shaped(Shape {
        apis: 1,
        edges: 1,
        api_args: vec!["--webhook-allow".into(), "loopback".into()],
        ..Shape::default()
    })
    .await;
    let app = cluster.app().await;
    let receiver = Receiver::start().await;
    app.tenant.create_webhook(&app.id, &receiver.url(), &["connected"]).await.expect("create webhook");

    let mut client = app.connect(Some("mia"), &["room"], &[]).await;
    const MESSAGES: usize = 5;
    for i in 0..MESSAGES {
        app.publish_to_group("room", "tick", json!(i)).await;
    }
    for i in 0..MESSAGES {
        assert_eq!(next_message(&mut client).await.data, json!(i));
    }
    app.backend.close_connection(&app.id, client.connection_id(), Some("bye")).await.expect("close");
    assert_eq!(closed(&mut client).await.0, 4000);
    receiver.wait_for("the connected webhook", 1, |r| r.kind == "signalbox.connected").await;

    // The api: REST requests by route template (never by id), publishes, webhook deliveries.
    let api = eventually("the api's webhook delivery to be counted", || async {
        let text = cluster.api.metrics().await;
        (value(&text, "signalbox_webhook_deliveries_total", &[("outcome", "delivered")]) >= 1.0).then_some(text)
    })
    .await;
    let publish = [("method", "POST"), ("route", "/v1/apps/{app}/groups/{group}/messages")];
    assert_eq!(
        value(&api, "signalbox_http_requests_total", &[publish[0], publish[1], ("status", "202")]),
        5.0,
        "{api}"
    );
    assert_eq!(value(&api, "signalbox_http_request_duration_seconds_count", &publish), 5.0);
    assert!(
        value(&api, "signalbox_http_request_duration_seconds_bucket", &[publish[0], publish[1], ("le", "+Inf")]) >= 5.0
    );
    assert!(
        samples(&api).iter().all(|s| !s.labels.get("route").is_some_and(|r| r.contains(&app.id))),
        "no route label carries an app id"
    );
    assert_eq!(value(&api, "signalbox_messages_in_total", &[("source", "rest")]), 5.0);
    assert!(value(&api, "signalbox_webhook_duration_seconds_count", &[("call", "event")]) >= 1.0);

    // The edge: connections, connects and disconnects by code, messages out, deliveries,
    // fan-out and delivery-lag histograms, its own HTTP and NATS round trip.
    let edge = eventually("the edge's disconnect to be counted", || async {
        let text = cluster.edges[0].metrics().await;
        (value(&text, "signalbox_disconnects_total", &[("code", "4000")]) == 1.0).then_some(text)
    })
    .await;
    assert_eq!(value(&edge, "signalbox_connects_total", &[]), 1.0, "{edge}");
    assert_eq!(value(&edge, "signalbox_connections", &[]), 0.0, "the connection is gone");
    assert_eq!(value(&edge, "signalbox_messages_out_total", &[]), 5.0);
    assert_eq!(value(&edge, "signalbox_deliveries_total", &[]), 5.0);
    assert_eq!(value(&edge, "signalbox_fanout_duration_seconds_count", &[]), 5.0);
    assert_eq!(value(&edge, "signalbox_delivery_lag_seconds_count", &[]), 5.0);
    assert_eq!(value(&edge, "signalbox_http_requests_total", &[("route", "/client"), ("status", "101")]), 1.0);
    // Neither role serves /metrics on its public port.
    for node in [&cluster.api, &cluster.edges[0]] {
        let public = reqwest::get(format!("{}/metrics", node.http_url())).await.expect("public port");
        assert_eq!(public.status(), 404, "{}", node.http_url());
    }
    // Both roles measure their round trip to NATS (from their first connect on).
    for node in [&cluster.api, &cluster.edges[0]] {
        eventually("the NATS round trip to be measured", || async {
            (value(&node.metrics().await, "signalbox_nats_rtt_seconds", &[]) > 0.0).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn only_listed_apps_get_an_app_label() {
    let mut cluster = Cluster::start(1).await;
    // App ids are generated, so the edge that labels one starts after the app exists.
    let listed = cluster.app().await;
    let other = cluster.app().await;
    let edge = cluster.add_edge(&["--metrics-apps".into(), listed.id.clone()]).await;
    let _a = cluster.on_edge(&listed, edge).connect(None, &[], &[]).await;
    let _b = cluster.on_edge(&listed, edge).connect(None, &[], &[]).await;
    let _c = cluster.on_edge(&other, edge).connect(None, &[], &[]).await;
    let text = eventually("three connections", || async {
        let text = cluster.edges[edge].metrics().await;
        (value(&text, "signalbox_connections", &[]) == 3.0).then_some(text)
    })
    .await;
    assert_eq!(value(&text, "signalbox_app_connections", &[("app", &listed.id)]), 2.0, "{text}");
    assert!(!text.contains(&other.id), "an app not listed never appears as a label");
}

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: HashMap<String, String>,
}

/// A minimal OTLP/HTTP collector: `POST /v1/traces` with a protobuf body, every span kept.
async fn collector() -> (SocketAddr, Arc<Mutex<Vec<Span>>>) {
    async fn receive(State(spans): State<Arc<Mutex<Vec<Span>>>>, body: Bytes) -> &'static str {
        let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
        let mut spans = spans.lock().expect("spans");
        for resource_spans in request.resource_spans {
            let attributes = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
            let service = attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone())
                .map(|v| match v {
                    AnyValue::StringValue(s) => s,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .filter_map(|kv| {
                            let value = match kv.value.as_ref()?.value.as_ref()? {
                                AnyValue::StringValue(s) => s.clone(),
                                AnyValue::IntValue(i) => i.to_string(),
                                other => format!("{other:?}"),
                            };
                            Some((kv.key.clone(), value))
                        })
                        .collect();
                    spans.push(Span {
                        service: service.clone(),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        attributes,
                    });
                }
            }
        }
        ""
    }
    let spans = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new().route("/v1/traces", post(receive)).with_state(Arc::clone(&spans));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_rest_publish_is_one_trace_from_the_api_through_nats_to_the_edge() {
    let (collector, spans) = collector().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}")),
        ("OTEL_TRACES_SAMPLER", "always_on".to_owned()),
        // Export within 100 ms instead of 5 s, so the test does not wait for the batch.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ];
    let env: Vec<_> = env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    let cluster = Cluster::start_with_env(Shape { apis: 1, edges: 1, ..Shape::default() }, &env).await;
    // `kept-*` groups have history: their messages reach the edge through JetStream.
    let app = cluster.app_with(json!({"history": {"groups": ["kept-*"]}})).await;
    let mut client = app.connect(None, &["room", "kept-1"], &[]).await;

    // The tenant's backend sends its own trace context: Signalbox continues it.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = reqwest::Client::new()
        .post(format!("{}/v1/apps/{}/groups/room/messages", cluster.api.http_url(), app.id))
        .bearer_auth(format!("{}.{}", app.key_id, app.secret))
        .header("traceparent", format!("00-{caller_trace}-00f067aa0ba902b7-01"))
        .json(&json!({"event": "traced", "data": 1}))
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 202);
    let message_id = response.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_owned();
    assert_eq!(next_message(&mut client).await.event, "traced");

    let of_message = |spans: &[Span], name: &str| {
        spans.iter().find(|s| s.name == name && s.attributes.get("message_id") == Some(&message_id)).cloned()
    };
    let (publish, deliver, request) = eventually("the api's and the edge's spans to be exported", || async {
        let spans = spans.lock().expect("spans").clone();
        let publish = of_message(&spans, "publish")?;
        let deliver = of_message(&spans, "deliver")?;
        let request = spans.iter().find(|s| s.span_id == publish.parent_span_id).cloned()?;
        Some((publish, deliver, request))
    })
    .await;
    assert_eq!(publish.service, "signalbox-api");
    assert_eq!(deliver.service, "signalbox-edge", "the delivery span comes from the edge process");
    assert_eq!(hex(&deliver.trace_id), hex(&publish.trace_id), "the trace context crossed NATS");
    assert_eq!(deliver.parent_span_id, publish.span_id, "the delivery is a child of the publish");
    assert_eq!(hex(&publish.trace_id), caller_trace, "the caller's trace is continued");
    assert_eq!(request.name, "POST /v1/apps/{app}/groups/{group}/messages", "the server span is the publish's parent");
    assert_eq!(request.attributes.get("http.response.status_code").map(String::as_str), Some("202"));
    assert_eq!(deliver.attributes.get("recipients").map(String::as_str), Some("1"));

    // A group with history: stored by JetStream and republished to the edge, the envelope's
    // bytes unchanged — the trace continues all the same.
    let stored = app.backend.send_to_group(&app.id, "kept-1", &Message::new("kept", json!(2))).await.expect("publish");
    assert!(stored.position.is_some(), "the group keeps history");
    assert_eq!(next_message(&mut client).await.event, "kept");
    let (publish, deliver) = eventually("the spans of the stored message", || async {
        let spans = spans.lock().expect("spans").clone();
        let by_id = |name: &str| {
            spans.iter().find(|s| s.name == name && s.attributes.get("message_id") == Some(&stored.id)).cloned()
        };
        Some((by_id("publish")?, by_id("deliver")?))
    })
    .await;
    assert_eq!(hex(&deliver.trace_id), hex(&publish.trace_id), "the trace crossed JetStream");
    assert_eq!(deliver.parent_span_id, publish.span_id);
}

/// `--log-format json`: one JSON object per line, and the connection's id on the lines that
/// open and close it, so a log query can follow one connection.
#[tokio::test]
async fn json_logs_follow_a_connection_from_open_to_close() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};

    use signalbox_sdk::realtime::Connection;
    use signalbox_sdk::server::{Client, TokenRequest};
    use signalbox_test_support::{Process, signalbox_binary, tempfile};

    let data = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(signalbox_binary());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
        .arg(data.path())
        .env("SIGNALBOX_ADMIN_TOKEN", "sba_json_logs_test_operator_token_0123456789")
        .env("SIGNALBOX_METRICS_LISTEN", "127.0.0.1:0")
        .env("SIGNALBOX_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start signalbox serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, logs) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The banner is on stdout; Process reads it (and kills the child on drop).
    let server = Process::adopt("serve", child);
    let api =
        server.wait_for_line("  REST API   ", signalbox_tests::DEADLINE).trim().trim_end_matches("/v1").to_owned();
    let ws = server.wait_for_line("  WebSocket  ", signalbox_tests::DEADLINE);
    let ws = ws.split('?').next().expect("url").trim().to_owned();

    let operator = Client::new(&api, "sba_json_logs_test_operator_token_0123456789").expect("client");
    let tenant = operator.create_tenant("logs").await.expect("tenant");
    let tenant = operator.with_bearer(&tenant.token);
    let app = tenant.create_app("logs", serde_json::Value::Null).await.expect("app");
    let key = tenant.create_key(&app.id, None, None).await.expect("key");
    let backend = tenant.with_bearer(&key.credential);
    let token = backend.mint_token(&app.id, &TokenRequest::default()).await.expect("token").token;
    let mut client = Connection::connect(&ws, &token).await.expect("connect");
    let connection = client.connection_id().to_owned();
    backend.close_connection(&app.id, &connection, None).await.expect("close");
    assert_eq!(closed(&mut client).await.0, 4000);

    let mut open = None;
    let deadline = std::time::Instant::now() + signalbox_tests::DEADLINE;
    let close = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = logs.recv_timeout(left).expect("the connection's close to be logged");
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert!(event["timestamp"].is_string() && event["level"].is_string(), "{line}");
        if event["connection"] != connection.as_str() {
            continue;
        }
        match event["message"].as_str() {
            Some("connection open") => open = Some(event),
            Some("connection closed") => break event,
            _ => {}
        }
    };
    let open = open.expect("the open was logged before the close");
    assert_eq!(open["app"], app.id.as_str());
    assert_eq!(close["app"], app.id.as_str());
    assert_eq!(close["code"], 4000);
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_not_on_the_public_port() {
    let server = signalbox_tests::Signalbox::start().await;
    let public = reqwest::get(format!("{}/metrics", server.http_url())).await.expect("public port");
    assert_eq!(public.status(), 404);
    assert_eq!(public.headers()["content-type"], "application/problem+json");

    let addr = server.server.metrics_addr().expect("metrics listener");
    let metrics = reqwest::get(format!("http://{addr}/metrics")).await.expect("metrics listener");
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"].to_str().expect("ascii").starts_with("text/plain"));
    // The metrics listener serves nothing else.
    let other = reqwest::get(format!("http://{addr}/healthz")).await.expect("metrics listener");
    assert_eq!(other.status(), 404);
}

//! The SignalR adapter's HTTP transports across a cluster without sticky sessions: a
//! long-polling connection opened on one edge is polled, sent to and ended through another,
//! and REST reaches it by its node-less id. (The real `@microsoft/signalr` client is tested in
//! `tests/signalr`, run by scripts/test.sh.)

use reqwest::StatusCode;
use serde_json::{Value, json};
use signalbox_sdk::server::Message;
use signalbox_tests::cluster::Cluster;
use signalbox_tests::within;

const RS: char = '\u{1e}';

async fn negotiate(edge: &str, token: &str) -> (String, String) {
    let (id, connection_token) = negotiate_hub(edge, "chat", token).await;
    assert!(!id.contains('_'), "a SignalR connection id names no node: {id}");
    (id, connection_token)
}

#[tokio::test]
async fn long_polling_works_through_any_edge() {
    let cluster = Cluster::start(2).await;
    let app = cluster.app().await;
    let token = app.token(Some("lena"), &[], &[]).await;
    let (a, b) = (cluster.edges[0].http_url(), cluster.edges[1].http_url());
    let http = reqwest::Client::new();
    let (id, connection_token) = negotiate(&a, &token).await;
    let url = |edge: &str| format!("{edge}/client/?hub=chat&id={}", urlencode(&connection_token));

    // The first poll opens the connection on edge A.
    let opened = http.get(url(&a)).bearer_auth(&token).send().await.expect("poll");
    assert_eq!(opened.status(), StatusCode::OK);
    // The handshake goes to edge B, which forwards it to A; B's poll gets A's answer.
    let sent = http.post(url(&b)).bearer_auth(&token).body(format!("{{\"protocol\":\"json\",\"version\":1}}{RS}"));
    assert_eq!(sent.send().await.expect("send").status(), StatusCode::OK);
    let answer = http.get(url(&b)).bearer_auth(&token).send().await.expect("poll");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.text().await.expect("body"), format!("{{}}{RS}"));

    // REST reaches the connection by its id, and a poll on B delivers it as an Invocation.
    let waiting = tokio::spawn({
        let (http, url, token) = (http.clone(), url(&b), token.clone());
        async move { http.get(url).bearer_auth(token).send().await.expect("poll").text().await.expect("body") }
    });
    app.backend.send_to_connection(&app.id, &id, &Message::new("hello", json!(["from", "rest"]))).await.expect("send");
    let invocation = within("the poll to deliver", waiting).await.expect("poll task");
    let invocation: Value = serde_json::from_str(invocation.trim_end_matches(RS)).expect("one record");
    assert_eq!(invocation, json!({"type": 1, "target": "hello", "arguments": ["from", "rest"]}));

    // Ended through B; A no longer has it.
    let deleted = http.delete(url(&b)).bearer_auth(&token).send().await.expect("delete");
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    let late = http.post(url(&a)).bearer_auth(&token).body(format!("{{\"type\":6}}{RS}")).send().await.expect("send");
    assert_eq!(late.status(), StatusCode::NOT_FOUND);
    let gone = app.backend.send_to_connection(&app.id, &id, &Message::new("x", json!(1))).await;
    assert!(gone.is_ok(), "publishing to a gone connection is accepted and goes nowhere (at most once)");
}

pub(super) fn urlencode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A SignalR client spoken by hand over a WebSocket (JSON hub protocol): negotiate, connect,
/// handshake.
async fn signalr_socket(
    base: &str,
    hub: &str,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let (_, connection_token) = negotiate_hub(base, hub, token).await;
    let url = format!(
        "{}/client/?hub={hub}&id={}&access_token={token}",
        base.replacen("http", "ws", 1),
        urlencode(&connection_token)
    );
    let (mut socket, _) = within("the WebSocket", tokio_tungstenite::connect_async(url)).await.expect("connects");
    socket.send(WsMessage::text(format!("{{\"protocol\":\"json\",\"version\":1}}{RS}"))).await.expect("handshake");
    let answer = within("the handshake answer", socket.next()).await.expect("open").expect("frame");
    assert_eq!(answer.into_text().expect("text").as_str(), format!("{{}}{RS}"));
    socket
}

async fn negotiate_hub(base: &str, hub: &str, token: &str) -> (String, String) {
    let body = negotiate_with(base, hub, token, "").await;
    (body["connectionId"].as_str().expect("id").to_owned(), body["connectionToken"].as_str().expect("token").to_owned())
}

/// Negotiates (version 1, with `extra` query parameters): the answer.
pub(super) async fn negotiate_with(base: &str, hub: &str, token: &str, extra: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/client/negotiate?hub={hub}&negotiateVersion=1{extra}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("negotiate")
        .json()
        .await
        .expect("json")
}

/// Invokes `target` and returns the Completion.
async fn invoke(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    id: &str,
    target: &str,
) -> Value {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let call = json!({"type": 1, "invocationId": id, "target": target, "arguments": ["hi"]});
    socket.send(WsMessage::text(format!("{call}{RS}"))).await.expect("send");
    within("the completion", async {
        loop {
            let frame = socket.next().await.expect("open").expect("frame");
            let Ok(text) = frame.into_text() else { continue };
            for record in text.split(RS).filter(|r| !r.is_empty()) {
                let message: Value = serde_json::from_str(record).expect("json");
                if message["type"] == 3 && message["invocationId"] == id {
                    return message;
                }
            }
        }
    })
    .await
}

/// The upstream URL's placeholders are filled in the path (where a stored URL spells them
/// `%7Bevent%7D`) and in the query, each encoded where it stands: a hostile method name can
/// neither add a query parameter nor cut off the tenant's `code=`, nor climb the path.
#[tokio::test]
async fn the_upstream_url_template_encodes_the_method_name() {
    use signalbox_tests::Signalbox;
    use signalbox_tests::webhook::{Receiver, Reply};
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let receiver = Receiver::start().await;
    receiver.always("signalbox.event", Reply::json(200, json!("ok")));
    let template =
        format!("http://{}/api/{{hub}}/{{category}}/{{event}}?code=tenant-secret&method={{event}}", receiver.addr);
    app.tenant.create_webhook(&app.id, &template, &["event"]).await.expect("create webhook");
    let token = app.token(Some("mallory"), &[], &[]).await;
    let mut socket = signalr_socket(&signalbox.http_url(), "chat", &token).await;

    let completion = invoke(&mut socket, "1", "send").await;
    assert_eq!(completion["result"], "ok", "{completion}");
    let completion = invoke(&mut socket, "2", "x&code=evil#").await;
    assert_eq!(completion["result"], "ok", "{completion}");
    let completion = invoke(&mut socket, "3", "../../admin?").await;
    assert_eq!(completion["result"], "ok", "{completion}");
    let completion = invoke(&mut socket, "4", "..").await;
    assert!(completion["error"].as_str().is_some_and(|e| e.contains("upstream URL")), "{completion}");

    let targets: Vec<String> = receiver
        .wait_for("three calls", 3, |r| r.kind == "signalbox.event")
        .await
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(
        targets,
        [
            "/api/chat/messages/send?code=tenant-secret&method=send",
            "/api/chat/messages/x%26code%3Devil%23?code=tenant-secret&method=x%26code%3Devil%23",
            "/api/chat/messages/..%2F..%2Fadmin%3F?code=tenant-secret&method=..%2F..%2Fadmin%3F",
        ]
    );
    assert_eq!(receiver.received().len(), 3, "the `..` call went nowhere");
}

/// A SignalR client whose event stream is never read: hyper stops polling the response body
/// once it cannot write, so the stream alone would never see its slow-consumer close. The
/// connection must still end.
#[tokio::test]
async fn an_event_stream_that_is_never_read_is_ended() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let signalbox = signalbox_tests::Signalbox::start_with(|config| {
        config.edge.heartbeat_interval = std::time::Duration::from_secs(1);
    })
    .await;
    let app = signalbox.app().await;
    let addr = signalbox.server.addr();
    let token = app.token(Some("sid"), &[], &[]).await;
    let (id, connection_token) = negotiate(&signalbox.http_url(), &token).await;
    let path = format!("/client/?hub=chat&id={}", urlencode(&connection_token));

    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small window");
    let mut stream = socket.connect(addr).await.expect("connect");
    let client_port = stream.local_addr().expect("local address").port();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        within("the response head", stream.read_exact(&mut byte)).await.expect("read");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    let handshake = reqwest::Client::new()
        .post(format!("{}{path}", signalbox.http_url()))
        .bearer_auth(&token)
        .body(format!("{{\"protocol\":\"json\",\"version\":1}}{RS}"))
        .send()
        .await
        .expect("handshake");
    assert_eq!(handshake.status(), StatusCode::OK);
    signalbox_tests::eventually("the connection to open", || async {
        (signalbox.server.connection_count() == 1).then_some(())
    })
    .await;

    // From now on the stream is never read. The socket itself, with what the kernel holds for
    // it, must be released too (TCP_USER_TIMEOUT at the edge's idle timeout): no write of ours
    // would ever notice a peer that takes nothing.
    flood_until_dropped_and_released(&signalbox, &app, &id, client_port).await;
    drop(stream);
}

/// Floods connection `id` of `app` (whose client reads nothing) over REST; waits until the
/// server has dropped it and holds no socket to the client's `client_port`.
async fn flood_until_dropped_and_released(
    signalbox: &signalbox_tests::Signalbox,
    app: &signalbox_tests::TestApp,
    id: &str,
    client_port: u16,
) {
    let payload = "y".repeat(60_000);
    for i in 0..150 {
        let message = Message::new("tick", json!({"i": i, "pad": payload}));
        app.backend.send_to_connection(&app.id, id, &message).await.expect("publish");
    }
    signalbox_tests::eventually("the server to drop the unread connection", || async {
        (signalbox.server.connection_count() == 0).then_some(())
    })
    .await;
    let server_port = signalbox.server.addr().port();
    signalbox_tests::eventually("the server's socket to be released", || async {
        (signalbox_tests::server_sockets_to(server_port, &[client_port]) == 0).then_some(())
    })
    .await;
}

/// The SignalR WebSocket transport keeps the same promise as the native one: a client that
/// completes its handshake and then never reads is dropped, and its socket released.
#[tokio::test]
async fn a_signalr_websocket_that_is_never_read_is_dropped() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let signalbox = signalbox_tests::Signalbox::start_with(|config| {
        config.edge.heartbeat_interval = std::time::Duration::from_secs(1);
    })
    .await;
    let app = signalbox.app().await;
    let addr = signalbox.server.addr();
    let token = app.token(Some("wes"), &[], &[]).await;
    let (id, connection_token) = negotiate(&signalbox.http_url(), &token).await;

    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small window");
    let mut stream = socket.connect(addr).await.expect("connect");
    let port = stream.local_addr().expect("local address").port();
    let request = format!(
        "GET /client/?hub=chat&id={}&access_token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        urlencode(&connection_token)
    );
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        within("the upgrade", stream.read_exact(&mut byte)).await.expect("read");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let mut client = signalbox_tests::RawSocket { stream };
    let handshake = format!("{{\"protocol\":\"json\",\"version\":1}}{RS}");
    client.write(&signalbox_tests::client_frame(0x1, handshake.as_bytes())).await;
    let (_, answer) = within("the handshake answer", client.read_frame()).await.expect("a frame");
    assert_eq!(answer, format!("{{}}{RS}").as_bytes());

    // From now on nothing is read.
    flood_until_dropped_and_released(&signalbox, &app, &id, port).await;
}

/// A tenant signs connection tokens with its own keys, so it can name any connection id in
/// one: tenant B opening a transport with tenant A's id must not take A's connection over, on
/// any transport. A keeps its connection, and B gets nothing of it.
#[tokio::test]
async fn another_tenant_cannot_take_a_signalr_connection_over_by_its_id() {
    use signalbox_core::signalr::{ConnectionTokenClaims, sign_connection_token};
    use signalbox_core::{AppId, ConnectionId, KeyId};

    let signalbox = signalbox_tests::Signalbox::start().await;
    let (victim, attacker) = (signalbox.app().await, signalbox.app().await);
    let base = signalbox.http_url();
    let http = reqwest::Client::new();
    let token = victim.token(Some("ada"), &[], &[]).await;
    let (id, connection_token) = negotiate(&base, &token).await;
    let url = format!("{base}/client/?hub=chat&id={}", urlencode(&connection_token));
    assert_eq!(http.get(&url).bearer_auth(&token).send().await.expect("poll").status(), StatusCode::OK);
    let handshake = http.post(&url).bearer_auth(&token).body(format!("{{\"protocol\":\"json\",\"version\":1}}{RS}"));
    assert_eq!(handshake.send().await.expect("send").status(), StatusCode::OK);
    assert_eq!(
        http.get(&url).bearer_auth(&token).send().await.expect("poll").text().await.expect("body"),
        format!("{{}}{RS}")
    );

    // The attacker's own key signs a connection token naming the victim's id.
    let claims = ConnectionTokenClaims {
        resumable: false,
        app: AppId::new(&attacker.id).expect("app id"),
        cid: ConnectionId::new(&id).expect("connection id"),
        hub: "chat".into(),
        sub: None,
        iat: signalbox_core::clock::unix_seconds(),
    };
    let forged =
        sign_connection_token(&claims, &KeyId::new(&attacker.key_id).expect("key id"), attacker.secret.as_bytes());
    let attacker_token = attacker.token(None, &[], &[]).await;
    let forged_url = format!("{base}/client/?hub=chat&id={}", urlencode(&forged));
    // Ids are scoped to their app: the attacker opens a connection of its own app that happens
    // to share the id, and nothing of the victim's.
    let long_poll = http.get(&forged_url).bearer_auth(&attacker_token).send().await.expect("poll");
    assert_eq!(long_poll.status(), StatusCode::OK, "the attacker's own connection");
    let events = http.get(&forged_url).bearer_auth(&attacker_token).header("accept", "text/event-stream").send();
    assert_eq!(events.await.expect("events").status(), StatusCode::CONFLICT, "its id is in use in its own app");

    // The victim's connection is still the victim's: its backend reaches it, the attacker's
    // backend does not, and it polls.
    let waiting = tokio::spawn({
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move { http.get(url).bearer_auth(token).send().await.expect("poll").text().await.expect("body") }
    });
    let stolen = Message::new("stolen", json!(["not yours"]));
    attacker.backend.send_to_connection(&attacker.id, &id, &stolen).await.expect("send");
    victim.backend.send_to_connection(&victim.id, &id, &Message::new("still", json!(["yours"]))).await.expect("send");
    let invocation = within("the victim's poll", waiting).await.expect("poll task");
    assert!(invocation.contains("\"still\"") && !invocation.contains("stolen"), "{invocation}");
}

/// A public connection id (presence and the REST API hand them out) is not a credential: an
/// anonymous client of the same app naming another's id, bare, gets nothing.
#[tokio::test]
async fn a_bare_connection_id_opens_nothing_and_reads_nothing() {
    let signalbox = signalbox_tests::Signalbox::start().await;
    let app = signalbox.app().await;
    let base = signalbox.http_url();
    let http = reqwest::Client::new();
    let token = app.token(None, &[], &[]).await;
    let (id, connection_token) = negotiate(&base, &token).await;
    let url = format!("{base}/client/?hub=chat&id={}", urlencode(&connection_token));
    assert_eq!(http.get(&url).bearer_auth(&token).send().await.expect("poll").status(), StatusCode::OK);
    let handshake = http.post(&url).bearer_auth(&token).body(format!("{{\"protocol\":\"json\",\"version\":1}}{RS}"));
    assert_eq!(handshake.send().await.expect("send").status(), StatusCode::OK);

    let stranger = app.token(None, &[], &[]).await;
    let bare = format!("{base}/client/?hub=chat&id={id}");
    assert_eq!(http.get(&bare).bearer_auth(&stranger).send().await.expect("poll").status(), StatusCode::NOT_FOUND);
    let send = http.post(&bare).bearer_auth(&stranger).body(format!("{{\"type\":7}}{RS}")).send();
    assert_eq!(send.await.expect("send").status(), StatusCode::NOT_FOUND);
    assert_eq!(http.delete(&bare).bearer_auth(&stranger).send().await.expect("delete").status(), StatusCode::NOT_FOUND);

    // The owner's connection is untouched: its handshake answer is still waiting for it.
    let answer = http.get(&url).bearer_auth(&token).send().await.expect("poll");
    assert_eq!(answer.text().await.expect("body"), format!("{{}}{RS}"));
}

/// negotiateVersion 0 has no connection token: its `connectionId` is the token, since the
/// client sends it back as `id`.
#[tokio::test]
async fn negotiate_version_0_hands_out_the_secret_as_the_id() {
    let signalbox = signalbox_tests::Signalbox::start().await;
    let app = signalbox.app().await;
    let token = app.token(Some("vic"), &[], &[]).await;
    let body: Value = reqwest::Client::new()
        .post(format!("{}/client/negotiate?hub=chat", signalbox.http_url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("negotiate")
        .json()
        .await
        .expect("json");
    assert_eq!(body["negotiateVersion"], 0);
    assert!(body.get("connectionToken").is_none());
    let id = body["connectionId"].as_str().expect("connectionId");
    assert_eq!(id.split('.').count(), 3, "a signed connection token: {id}");
    let url = format!("{}/client/?hub=chat&id={}", signalbox.http_url(), urlencode(id));
    let opened = reqwest::Client::new().get(url).bearer_auth(&token).send().await.expect("poll");
    assert_eq!(opened.status(), StatusCode::OK);
}

/// A long-polling client may send its handshake before its first poll (ASP.NET Core keeps the
/// connection from negotiate on; Python's `signalrcore` sends first): the send opens it.
#[tokio::test]
async fn a_send_before_the_first_poll_opens_the_connection() {
    let signalbox = signalbox_tests::Signalbox::start().await;
    let app = signalbox.app().await;
    let base = signalbox.http_url();
    let http = reqwest::Client::new();
    let token = app.token(Some("sam"), &[], &[]).await;
    let (_, connection_token) = negotiate(&base, &token).await;
    let url = format!("{base}/client/?hub=chat&id={}", urlencode(&connection_token));
    let handshake = http.post(&url).bearer_auth(&token).body(format!("{{\"protocol\":\"json\",\"version\":0}}{RS}"));
    assert_eq!(handshake.send().await.expect("send").status(), StatusCode::OK);
    // The poll finds the handshake's answer waiting — also when the client repeats `id`.
    let poll = http.get(format!("{url}&id={}", urlencode(&connection_token))).bearer_auth(&token).send();
    assert_eq!(poll.await.expect("poll").text().await.expect("body"), format!("{{}}{RS}"));
}

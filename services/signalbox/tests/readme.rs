//! The README, followed by the letter against the real binary: start `signalbox serve` with no
//! configuration, create a tenant, an app, a key and a token with the README's requests,
//! connect a WebSocket, publish over REST and see it arrive. Then SIGTERM: the client is told
//! 1001 and the process exits cleanly.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use signalbox_test_support::tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const DEADLINE: Duration = Duration::from_secs(20);

struct Server {
    child: Child,
    base: String,
    banner: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `signalbox serve` on a free port and reads its banner up to "Press Ctrl-C".
fn serve(data_dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_signalbox"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("SIGNALBOX_ADMIN_TOKEN")
        // Its own metrics port: other servers may run on this machine.
        .env("SIGNALBOX_METRICS_LISTEN", "127.0.0.1:0")
        .env("SIGNALBOX_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start signalbox serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let done = line.starts_with("Press Ctrl-C");
            if tx.send(line).is_err() || done {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    loop {
        let line = rx.recv_timeout(DEADLINE).expect("the banner within the deadline");
        let done = line.starts_with("Press Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    let rest = banner.iter().find_map(|l| l.trim().strip_prefix("REST API")).expect("REST API line").trim();
    let base = rest.strip_suffix("/v1").expect("URL ends in /v1").to_owned();
    Server { child, base, banner }
}

async fn post(http: &reqwest::Client, url: String, bearer: &str, body: Option<Value>) -> Value {
    let mut request = http.post(url).bearer_auth(bearer);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("json")
}

#[tokio::test]
async fn the_readme_walkthrough_works_against_the_binary() {
    let dir = TempDir::new().expect("temp dir");
    let data_dir = dir.path().join("signalbox-data");
    let server = serve(&data_dir);
    let s = server.base.clone();

    // The token is printed once, and saved privately.
    let admin = std::fs::read_to_string(data_dir.join("admin-token")).expect("admin-token file").trim().to_owned();
    assert!(server.banner.iter().any(|l| l.trim() == admin), "the generated token is printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data_dir.join("admin-token")).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let http = reqwest::Client::new();
    // 1. A tenant and its management token.
    let tenant = post(&http, format!("{s}/v1/tenants"), &admin, Some(json!({"name": "acme"}))).await;
    let tenant = tenant["token"].as_str().expect("token").to_owned();
    // 2. An app and a key.
    let app = post(&http, format!("{s}/v1/apps"), &tenant, Some(json!({"name": "chat"}))).await;
    let app = app["id"].as_str().expect("id").to_owned();
    let key = post(&http, format!("{s}/v1/apps/{app}/keys"), &tenant, None).await;
    let key = key["credential"].as_str().expect("credential").to_owned();
    // 3. A client token.
    let body = json!({"user_id": "alice", "groups": ["room-1"], "permissions": ["join:room-*", "publish:room-*"]});
    let token = post(&http, format!("{s}/v1/apps/{app}/tokens"), &key, Some(body)).await;
    let token = token["token"].as_str().expect("token").to_owned();

    // 4. Connect.
    let ws_url = format!("{}/client?access_token={token}", s.replacen("http://", "ws://", 1));
    let mut request = ws_url.into_client_request().expect("request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", "signalbox.json.v1".parse().expect("header"));
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.expect("connect");
    assert_eq!(response.headers()["sec-websocket-protocol"], "signalbox.json.v1");
    let next_json = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| -> Value {
        loop {
            match tokio::time::timeout(DEADLINE, ws.next()).await.expect("a frame in time") {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("json"),
                Some(Ok(Message::Close(frame))) => return json!({"closed": frame.map(|f| u16::from(f.code))}),
                Some(Ok(_)) => {}
                other => panic!("socket ended: {other:?}"),
            }
        }
    };
    let welcome = next_json(&mut ws).await;
    assert_eq!((welcome["type"].as_str(), welcome["userId"].as_str()), (Some("welcome"), Some("alice")));

    // 5. Publish from the backend, see it arrive.
    let body = json!({"event": "chat", "data": {"text": "hello, room"}});
    let response = http
        .post(format!("{s}/v1/apps/{app}/groups/room-1/messages"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status().as_u16(), 202);
    assert!(response.json::<Value>().await.expect("json")["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
    let message = next_json(&mut ws).await;
    assert_eq!(
        message,
        json!({"type": "message", "event": "chat", "data": {"text": "hello, room"}, "group": "room-1"})
    );

    // The client publishes too, and gets its reply.
    let frame = json!({"type": "publish", "group": "room-1", "event": "chat", "data": "hi", "id": 1});
    ws.send(Message::Text(frame.to_string().into())).await.expect("send");
    let mut seen = [next_json(&mut ws).await, next_json(&mut ws).await];
    seen.sort_by_key(|v| v["type"].as_str().map(str::to_owned));
    assert_eq!(seen[0]["event"], "chat");
    assert_eq!(seen[1], json!({"type": "reply", "id": 1}));

    // 6. History for the rooms: messages carry a `seq`, and a reconnect recovers what it missed.
    let response = http
        .patch(format!("{s}/v1/apps/{app}"))
        .bearer_auth(&tenant)
        .json(&json!({"history": {"groups": ["room-*"]}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status().as_u16(), 200);
    let publish = async |text: &str| -> u64 {
        let body = json!({"event": "chat", "data": {"text": text}});
        let accepted = post(&http, format!("{s}/v1/apps/{app}/groups/room-1/messages"), &key, Some(body)).await;
        accepted["position"].as_u64().expect("a position for a group with history")
    };
    let first = publish("kept").await;
    let message = next_json(&mut ws).await;
    assert_eq!((message["data"]["text"].as_str(), message["seq"].as_u64()), (Some("kept"), Some(first)));
    let missed = [publish("while away 1").await, publish("while away 2").await];
    let mut ws_url = reqwest::Url::parse(&format!("{}/client", s.replacen("http://", "ws://", 1))).expect("url");
    ws_url
        .query_pairs_mut()
        .append_pair("access_token", &token)
        .append_pair("recover", &json!({"room-1": first}).to_string());
    let (mut again, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await.expect("reconnect");
    assert_eq!(next_json(&mut again).await["type"], "welcome");
    for (position, text) in missed.iter().zip(["while away 1", "while away 2"]) {
        let message = next_json(&mut again).await;
        assert_eq!((message["data"]["text"].as_str(), message["seq"].as_u64()), (Some(text), Some(*position)));
    }
    let recovery = next_json(&mut again).await;
    assert_eq!((recovery["type"].as_str(), recovery["recovered"].as_bool()), (Some("recovery"), Some(true)));
    drop(again);
    for _ in missed {
        assert_eq!(next_json(&mut ws).await["type"], "message", "the first connection got them live");
    }

    // SIGTERM: the client hears 1001, the process exits 0.
    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(status.success());
    assert_eq!(next_json(&mut ws).await, json!({"closed": 1001}));
    let mut server = server;
    let exit = tokio::task::spawn_blocking(move || {
        let status = server.child.wait();
        (status, server)
    });
    let (status, _server) = tokio::time::timeout(DEADLINE, exit).await.expect("exit in time").expect("join");
    assert!(status.expect("wait").success(), "clean exit on SIGTERM");
}

#[tokio::test]
async fn a_restart_keeps_the_token_and_does_not_print_it_again() {
    let dir = TempDir::new().expect("temp dir");
    let data_dir = dir.path().join("data");
    let first = serve(&data_dir);
    drop(first);
    let second = serve(&data_dir);
    let admin = std::fs::read_to_string(data_dir.join("admin-token")).expect("token file").trim().to_owned();
    assert!(!second.banner.iter().any(|l| l.contains(&admin)), "not printed on a later start");
    let response = reqwest::Client::new()
        .post(format!("{}/v1/tenants", second.base))
        .bearer_auth(&admin)
        .json(&json!({"name": "still works"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 201);
}

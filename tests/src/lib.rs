//! The harness of the end-to-end tests: a real Signalbox on a free port (in-process for the
//! single-node tests, real processes for [`cluster`]), and a tenant with an app and a key made
//! through its real REST API.

pub mod cluster;
pub mod metrics;
pub mod webhook;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use signalbox::embedded::{Embedded, ServeConfig};
use signalbox_api::TargetPolicy;
use signalbox_sdk::realtime::{Connection, Event, Message};
use signalbox_sdk::server::{Client, TokenRequest};
use signalbox_test_support::tempfile::TempDir;

/// A deadline for something that must happen; never a pass/fail timing.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Waits for `future`, failing the test if it does not complete within [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls `check` until it returns `Some`, failing the test after [`DEADLINE`]: for effects
/// that are applied asynchronously (a user's group change reaching a connection).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// An embedded Signalbox with its own data directory.
#[derive(Debug)]
pub struct Signalbox {
    pub server: Embedded,
    /// Kept until the server is dropped.
    _dir: TempDir,
}

impl Signalbox {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Wraps a server the test started itself (on an address and data dir of its choosing).
    pub fn attach(server: Embedded) -> Self {
        Self { server, _dir: TempDir::new().expect("temp dir") }
    }

    /// Starts with a tweak of the default config (heartbeats, queue limits…).
    pub async fn start_with(tweak: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let mut config = ServeConfig::new(listen, dir.path().join("data"));
        config.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
        // The tests' webhook receivers listen on 127.0.0.1: opted in the way an operator does
        // with `--webhook-allow loopback` (the default refuses it).
        config.webhook_targets = TargetPolicy { loopback: true, ..TargetPolicy::default() };
        tweak(&mut config);
        let server = Embedded::start(config).await.expect("signalbox starts");
        Self { server, _dir: dir }
    }

    pub fn http_url(&self) -> String {
        self.server.http_url()
    }

    /// Shuts the server down the way SIGTERM does.
    pub async fn shutdown(self) {
        self.server.shutdown().await.expect("clean shutdown");
    }

    pub fn ws_url(&self) -> String {
        self.server.ws_url()
    }

    /// `/metrics` as text, from the metrics listener.
    pub async fn metrics(&self) -> String {
        let addr = self.server.metrics_addr().expect("a metrics listener");
        reqwest::get(format!("http://{addr}/metrics")).await.expect("metrics").text().await.expect("text")
    }

    pub fn operator(&self) -> Client {
        Client::new(&self.http_url(), self.server.admin_token()).expect("client")
    }

    /// A new tenant with one app (default settings plus `settings`) and one full-scope key.
    pub async fn app_with(&self, settings: Value) -> TestApp {
        let tenant = self.operator().create_tenant("test tenant").await.expect("create tenant");
        let tenant_client = self.operator().with_bearer(&tenant.token);
        let app = tenant_client.create_app("test app", settings).await.expect("create app");
        let key = tenant_client.create_key(&app.id, Some("test key"), None).await.expect("create key");
        TestApp {
            id: app.id,
            ws_url: self.ws_url(),
            tenant: tenant_client.clone(),
            backend: tenant_client.with_bearer(&key.credential),
            key_id: key.key.id,
            secret: key.secret,
        }
    }

    pub async fn app(&self) -> TestApp {
        self.app_with(Value::Null).await
    }
}

/// A tenant's app as its backend sees it.
#[derive(Debug, Clone)]
pub struct TestApp {
    pub id: String,
    pub ws_url: String,
    /// The tenant's management client.
    pub tenant: Client,
    /// The app key's client (what a tenant backend uses).
    pub backend: Client,
    pub key_id: String,
    pub secret: String,
}

impl TestApp {
    /// A token minted by the REST API.
    pub async fn token(&self, user: Option<&str>, groups: &[&str], permissions: &[&str]) -> String {
        let request = TokenRequest {
            user_id: user.map(str::to_owned),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            ..TokenRequest::default()
        };
        self.backend.mint_token(&self.id, &request).await.expect("mint token").token
    }

    /// A connected client.
    pub async fn connect(&self, user: Option<&str>, groups: &[&str], permissions: &[&str]) -> Connection {
        let token = self.token(user, groups, permissions).await;
        within("connect", Connection::connect(&self.ws_url, &token)).await.expect("connects")
    }

    /// Publishes to a group through REST.
    pub async fn publish_to_group(&self, group: &str, event: &str, data: Value) {
        let message = signalbox_sdk::server::Message::new(event, data);
        self.backend.send_to_group(&self.id, group, &message).await.expect("publish");
    }
}

/// Publishes event `e` with `data` to a group with history over REST; returns the position
/// the 202 acknowledged.
pub async fn publish_stored(backend: &Client, app: &str, group: &str, data: Value) -> u64 {
    let response = backend
        .send(
            reqwest::Method::POST,
            &["v1", "apps", app, "groups", group, "messages"],
            Some(&json!({"event": "e", "data": data})),
        )
        .await
        .expect("publish");
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.expect("json");
    body["position"].as_u64().expect("a group with history answers with a position")
}

/// The next message, within the deadline.
pub async fn next_message(connection: &mut Connection) -> Message {
    within("a message", connection.next_message()).await.expect("connection open")
}

/// The connection's close code and reason, within the deadline (skipping other events).
pub async fn closed(connection: &mut Connection) -> (u16, String) {
    within("the close", async {
        loop {
            match connection.next_event().await {
                Some(Event::Closed { code, reason }) => return (code, reason),
                Some(_) => {}
                None => return (0, String::new()),
            }
        }
    })
    .await
}

/// Proves `connection` got nothing more: sends it a marker through the connection-targeted
/// route and checks that the marker is its next message.
///
/// Call it only once a witness connection in the same target has received the message that
/// must not arrive: fan-out pushes to every member in one pass, so had `connection` been a
/// recipient, that message would already sit in its queue, ahead of the marker.
pub async fn assert_next_is_marker(app: &TestApp, connection: &mut Connection) {
    let marker = signalbox_sdk::server::Message::new("marker", json!({"marker": true}));
    app.backend.send_to_connection(&app.id, connection.connection_id(), &marker).await.expect("marker");
    let next = next_message(connection).await;
    assert_eq!(next.event, "marker", "expected nothing before the marker, got {next:?}");
}

/// A WebSocket spoken by hand over TCP, for what a well-behaved client library will not do:
/// unmasked frames, never reading, never answering pings.
#[derive(Debug)]
pub struct RawSocket {
    pub stream: tokio::net::TcpStream,
}

impl RawSocket {
    /// Upgrades `GET /client?access_token=…` and reads the 101 response.
    pub async fn connect(addr: SocketAddr, token: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("tcp connect");
        Self::handshake(stream, addr, token).await
    }

    /// The upgrade, over a stream the caller connected (to tune its socket first).
    pub async fn handshake(mut stream: tokio::net::TcpStream, addr: SocketAddr, token: &str) -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let request = format!(
            "GET /client?access_token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: signalbox.json.v1\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write handshake");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.expect("read handshake");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        Self { stream }
    }

    /// Reads one server frame: (opcode, payload).
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt as _;
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).await.ok()?;
        let len = match head[1] & 0x7f {
            126 => u64::from(self.stream.read_u16().await.ok()?),
            127 => self.stream.read_u64().await.ok()?,
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).ok()?];
        self.stream.read_exact(&mut payload).await.ok()?;
        Some((head[0] & 0x0f, payload))
    }

    /// Reads frames until a close frame; returns its code (None if the stream just ended).
    pub async fn read_close_code(&mut self) -> Option<u16> {
        within("a close frame", async {
            loop {
                match self.read_frame().await {
                    Some((0x8, payload)) if payload.len() >= 2 => {
                        return Some(u16::from_be_bytes([payload[0], payload[1]]));
                    }
                    Some(_) => {}
                    None => return None,
                }
            }
        })
        .await
    }

    /// Writes bytes as they are.
    pub async fn write(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt as _;
        self.stream.write_all(bytes).await.expect("write");
    }
}

/// The server's own sockets to `client_ports` still open on this machine (Linux: read from
/// `/proc/net/tcp`; elsewhere none are seen). A socket closed with unsent data and no reset
/// would linger here, orphaned, holding its send buffer for minutes.
pub fn server_sockets_to(server_port: u16, client_ports: &[u16]) -> usize {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else { return 0 };
    let port = |field: &str| field.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 2
                && port(fields[1]) == Some(server_port)
                && port(fields[2]).is_some_and(|p| client_ports.contains(&p))
        })
        .count()
}

/// A masked client frame.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | u8::try_from(len).expect("small")),
        len @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&u16::try_from(len).expect("medium").to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

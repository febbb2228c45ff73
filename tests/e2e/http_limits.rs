//! Nobody holds the server hostage: credentials are checked before any body is read, a body
//! has a deadline, and one source address cannot take every connection. Spoken over raw TCP,
//! as a hostile client would.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::json;
use signalbox_tests::{Signalbox, within};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `addr` from the loopback address `source`.
async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source.parse().expect("source"), 0)).expect("bind the source address");
    socket.connect(addr).await.expect("connect")
}

/// Reads until the server closes the connection (within the deadline); returns what came.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    within("the server to close the connection", async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&received).into_owned()
}

/// Reads one response head (through the blank line), within the deadline.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    within("a response head", async {
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
    })
    .await;
    String::from_utf8_lossy(&head).into_owned()
}

/// One complete `GET /healthz`, answered on a connection that stays open (keep-alive).
async fn healthz(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: signalbox\r\n\r\n").await.expect("write");
    let head = read_head(stream).await;
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().expect("length")))
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    within("the body", stream.read_exact(&mut body)).await.expect("body");
    head
}

#[tokio::test]
async fn a_body_that_never_comes_is_cut_off_at_the_body_deadline() {
    let server = Signalbox::start_with(|config| config.http.body_timeout = Duration::from_secs(1)).await;
    let app = server.app().await;
    let mut stream = TcpStream::connect(server.server.addr()).await.expect("connect");
    // A valid key, a promised body, then nothing.
    let head = format!(
        "POST /v1/apps/{}/broadcast HTTP/1.1\r\nHost: signalbox\r\nAuthorization: Bearer {}.{}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        app.id, app.key_id, app.secret
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("body_timeout"), "{answer}");
}

#[tokio::test]
async fn headers_that_never_end_are_cut_off_at_the_header_deadline() {
    let server = Signalbox::start_with(|config| config.http.header_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(server.server.addr()).await.expect("connect");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: signalbox\r\nX-Slow: 1").await.expect("write");
    let answer = read_until_closed(&mut stream).await;
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test]
async fn an_unauthenticated_signalr_send_is_refused_before_its_body_is_read() {
    let server = Signalbox::start().await;
    let mut stream = TcpStream::connect(server.server.addr()).await.expect("connect");
    // No access token, a chunked body that never ends: the answer must not wait for it.
    let head = "POST /client/?hub=chat&id=AAAAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: signalbox\r\n\
                Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"type\":1,\"a\":1}\r\n";
    stream.write_all(head.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test]
async fn an_unauthenticated_rest_publish_is_refused_before_its_body_is_read() {
    let server = Signalbox::start().await;
    let app = server.app().await;
    let mut stream = TcpStream::connect(server.server.addr()).await.expect("connect");
    let head = format!(
        "POST /v1/apps/{}/broadcast HTTP/1.1\r\nHost: signalbox\r\nContent-Type: application/json\r\n\
         Content-Length: 1000000000\r\n\r\n{{\"event\":\"e\",\"data\":[",
        app.id
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test]
async fn one_address_over_its_connection_cap_is_refused_while_others_are_served() {
    const CAP: usize = 4;
    let server = Signalbox::start_with(|config| {
        config.http.max_connections_per_ip = CAP;
        // The held connections stay open for the whole test.
        config.http.header_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = server.server.addr();
    let victim = server.app().await;

    // The greedy source (127.0.0.3) holds its CAP connections, each proven served.
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut stream = connect_from("127.0.0.3", addr).await;
        assert!(healthz(&mut stream).await.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    // One more from it is closed without an answer.
    let mut over = connect_from("127.0.0.3", addr).await;
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nHost: signalbox\r\n\r\n").await;
    let answer = read_until_closed(&mut over).await;
    assert!(answer.is_empty(), "the connection over the cap was served: {answer}");

    // Another tenant, from another address, is served as usual.
    let client = reqwest::Client::builder().local_address(Some("127.0.0.2".parse::<IpAddr>().expect("ip"))).build();
    let response = client
        .expect("client")
        .post(format!("{}/v1/apps/{}/broadcast", server.http_url(), victim.id))
        .bearer_auth(format!("{}.{}", victim.key_id, victim.secret))
        .json(&json!({"event": "still-here", "data": 1}))
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 202);

    // A held connection let go frees a slot for its source.
    drop(held.pop());
    let mut again = signalbox_tests::eventually("a slot for the source again", || async {
        let mut stream = connect_from("127.0.0.3", addr).await;
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: signalbox\r\n\r\n").await;
        let head = read_head(&mut stream).await;
        head.starts_with("HTTP/1.1 200").then_some(stream)
    })
    .await;
    let _ = again.shutdown().await;
}

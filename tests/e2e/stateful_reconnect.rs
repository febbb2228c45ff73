//! SignalR stateful reconnect spoken by hand (JSON hub protocol, version 2) — a second client
//! beside `@microsoft/signalr` (tests/signalr/stateful-reconnect.test.mjs) that checks the
//! wire exactly: a resumed socket starts with the Sequence of the first message not
//! acknowledged, carries no handshake answer, replays what was not acknowledged in order,
//! and drops the copies the client sends again; and it refuses what it must.

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use serde_json::{Value, json};
use signalbox_sdk::server::Message;
use signalbox_tests::{Signalbox, TestApp, within};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::signalr::{negotiate_with, urlencode};

const RS: char = '\u{1e}';

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A hand-made SignalR client: its socket and the records read but not yet taken.
struct Client {
    socket: Socket,
    unread: std::collections::VecDeque<Value>,
}

impl Client {
    async fn send(&mut self, message: Value) {
        self.socket.send(WsMessage::text(format!("{message}{RS}"))).await.expect("send");
    }

    /// The next hub message (the handshake answer included, as `{}`).
    async fn next(&mut self) -> Value {
        within("a message", async {
            loop {
                if let Some(message) = self.unread.pop_front() {
                    return message;
                }
                let frame = self.socket.next().await.expect("open").expect("frame");
                let Ok(text) = frame.into_text() else { continue };
                for record in text.split(RS).filter(|r| !r.is_empty()) {
                    self.unread.push_back(serde_json::from_str(record).expect("a JSON record"));
                }
            }
        })
        .await
    }

    /// The next message that is not a Ping or an Ack.
    async fn next_counted_or_sequence(&mut self) -> Value {
        loop {
            let message = self.next().await;
            if message["type"] != 6 && message["type"] != 8 {
                return message;
            }
        }
    }
}

/// Negotiates with `useStatefulReconnect=true`: the connection id and token.
async fn negotiate(base: &str, token: &str) -> (String, String) {
    let body = negotiate_with(base, "chat", token, "&useStatefulReconnect=true").await;
    assert_eq!(body["useStatefulReconnect"], true, "{body}");
    (body["connectionId"].as_str().expect("id").to_owned(), body["connectionToken"].as_str().expect("token").to_owned())
}

fn socket_url(base: &str, connection_token: &str, token: &str) -> String {
    format!(
        "{}/client/?hub=chat&id={}&access_token={token}",
        base.replacen("http", "ws", 1),
        urlencode(connection_token)
    )
}

async fn connect(url: &str) -> Client {
    let (socket, _) = within("the WebSocket", tokio_tungstenite::connect_async(url)).await.expect("connects");
    Client { socket, unread: std::collections::VecDeque::new() }
}

/// Opens a resumable connection: negotiate, socket, handshake version 2, then a Ping (the
/// client counts from its first message on, as `@microsoft/signalr` does).
async fn open(base: &str, token: &str) -> (String, String, Client) {
    let (id, connection_token) = negotiate(base, token).await;
    let mut client = connect(&socket_url(base, &connection_token, token)).await;
    client.send(json!({"protocol": "json", "version": 2})).await;
    assert_eq!(client.next().await, json!({}), "the handshake answer");
    client.send(json!({"type": 6})).await;
    (id, connection_token, client)
}

async fn send(app: &TestApp, id: &str, n: u64) {
    app.backend.send_to_connection(&app.id, id, &Message::new("m", json!([n]))).await.expect("send");
}

#[tokio::test]
async fn a_resumed_socket_starts_with_the_sequence_and_replays_what_was_not_acknowledged_once() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let base = signalbox.http_url();
    let token = app.token(Some("rita"), &[], &[]).await;
    let (id, connection_token, mut client) = open(&base, &token).await;

    for n in 1..=3 {
        send(&app, &id, n).await;
        let message = client.next_counted_or_sequence().await;
        assert_eq!(message, json!({"type": 1, "target": "m", "arguments": [n]}), "message {n} is counted as {n}");
    }
    // The client has 1 and 2 (an Ack), then calls a method: its Completion (4) shows the Ack
    // was taken, since the server reads in order.
    client.send(json!({"type": 8, "sequenceId": 2})).await;
    client.send(json!({"type": 1, "invocationId": "x", "target": "nothing", "arguments": []})).await;
    let completion = client.next_counted_or_sequence().await;
    assert_eq!((completion["type"].clone(), completion["invocationId"].clone()), (json!(3), json!("x")));

    // The socket drops without a close; a message comes meanwhile (5).
    drop(client);
    send(&app, &id, 4).await;

    // A new socket, no negotiate, no handshake: the Sequence of the first message not
    // acknowledged (3), then 3, the Completion (4) and the new message (5), once each.
    let mut resumed = connect(&socket_url(&base, &connection_token, &token)).await;
    assert_eq!(resumed.next().await, json!({"type": 9, "sequenceId": 3}), "the Sequence comes first");
    assert_eq!(resumed.next_counted_or_sequence().await, json!({"type": 1, "target": "m", "arguments": [3]}));
    assert_eq!(resumed.next_counted_or_sequence().await["invocationId"], "x");
    assert_eq!(resumed.next_counted_or_sequence().await, json!({"type": 1, "target": "m", "arguments": [4]}));

    // The client sends its own unacknowledged call again (a copy: no second Completion), then a
    // new one, which is answered.
    resumed.send(json!({"type": 9, "sequenceId": 1})).await;
    resumed.send(json!({"type": 1, "invocationId": "x", "target": "nothing", "arguments": []})).await;
    resumed.send(json!({"type": 1, "invocationId": "y", "target": "nothing", "arguments": []})).await;
    let next = resumed.next_counted_or_sequence().await;
    assert_eq!(next["invocationId"], "y", "the copy of x made no Completion: {next}");

    // Still the same connection: the backend reaches it by its id, and the `/v1` API finds it.
    send(&app, &id, 5).await;
    assert_eq!(resumed.next_counted_or_sequence().await, json!({"type": 1, "target": "m", "arguments": [5]}));
    let info = app.backend.connection(&app.id, &id).await.expect("the connection, by its id");
    assert_eq!((info.protocol.as_str(), info.transport.as_str()), ("signalr.json.v1", "websocket"));
    assert_eq!(info.user_id.as_deref(), Some("rita"));
}

#[tokio::test]
async fn resumes_are_refused_to_other_users_to_ended_connections_and_to_a_sequence_from_the_future() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let base = signalbox.http_url();
    let token = app.token(Some("ines"), &[], &[]).await;
    let (_, connection_token, client) = open(&base, &token).await;
    drop(client);

    // Another user's token cannot take the connection (parked or not).
    let other = app.token(Some("mallory"), &[], &[]).await;
    let refused = tokio_tungstenite::connect_async(socket_url(&base, &connection_token, &other)).await;
    let status = match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status(),
        other => panic!("another user's resume must be refused, got {other:?}"),
    };
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The owner resumes it; a Sequence beyond what it sent ends the connection with an error.
    let mut resumed = connect(&socket_url(&base, &connection_token, &token)).await;
    assert_eq!(resumed.next().await, json!({"type": 9, "sequenceId": 1}));
    resumed.send(json!({"type": 9, "sequenceId": 50})).await;
    let close = resumed.next_counted_or_sequence().await;
    assert_eq!(close["type"], 7, "{close}");
    assert!(close["error"].as_str().is_some_and(|e| e.contains("Sequence ID 50")), "{close}");
    assert_eq!(close["allowReconnect"], Value::Null, "a protocol violation is not to be retried");

    // A connection the server ends is not resumed.
    let (id2, connection_token2, mut client2) = open(&base, &token).await;
    app.backend.close_connection(&app.id, &id2, Some("bye")).await.expect("close");
    let close = client2.next_counted_or_sequence().await;
    assert_eq!(close["type"], 7, "the backend's close reaches the client: {close}");
    let gone = tokio_tungstenite::connect_async(socket_url(&base, &connection_token2, &token)).await;
    let status = match gone {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status(),
        other => panic!("an ended connection must not be resumed, got {other:?}"),
    };
    assert_eq!(status, StatusCode::NOT_FOUND);
}

//! A realtime client connection over the native protocol (`signalbox.json.v1`).
//!
//! [`Connection::connect`] returns once the server's welcome arrived; requests (`join`,
//! `leave`, `publish`) resolve on the server's reply; everything else the server sends —
//! messages, unsolicited errors, the final close — comes out of [`Connection::next_event`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

/// The subprotocol this client speaks.
pub const SUBPROTOCOL: &str = "signalbox.json.v1";

/// What the server said first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Welcome {
    pub connection_id: String,
    pub user_id: Option<String>,
    pub heartbeat_seconds: u64,
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Message {
    pub event: String,
    #[serde(default)]
    pub data: Value,
    pub group: Option<String>,
    pub seq: Option<u64>,
}

/// An error the server reported.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServerError {
    pub code: String,
    pub message: String,
}

/// What a recovery found for one group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupRecovery {
    pub group: String,
    /// True when every message after the position given was delivered, in order, once.
    pub recovered: bool,
    /// Why not, when not: a stable code (`expired`, `reset`, `no_history`, `forbidden`,
    /// `unavailable`, `closed`; see the protocol's "History and recovery").
    pub reason: Option<String>,
    /// The same in words.
    #[serde(default)]
    pub message: Option<String>,
}

/// Who is in a group (the answer to [`Connection::presence`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Presence {
    /// Users in the group.
    pub count: u64,
    /// Connections in the group, anonymous ones included.
    pub connections: u64,
    pub members: Vec<PresenceMember>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceMember {
    pub user_id: String,
    pub connections: u64,
    #[serde(default)]
    pub info: Option<Value>,
}

/// Someone in a presence event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceChange {
    pub user_id: Option<String>,
    pub connection_id: String,
}

/// Something the server sent that was not a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Message(Message),
    /// Members came and went (`joined`/`left` are empty in count-only mode).
    Presence {
        group: String,
        joined: Vec<PresenceChange>,
        left: Vec<PresenceChange>,
        count: u64,
        truncated: bool,
    },
    /// The replays asked for at connect are done (`recovered` only if every group recovered).
    Recovery {
        recovered: bool,
        groups: Vec<GroupRecovery>,
    },
    /// The node is going away: reconnect now (the close follows).
    Reconnect {
        reason: String,
    },
    /// An error for a request that had no id.
    Error(ServerError),
    Pong,
    /// The connection ended; the last event. 1006 when it ended without a close frame.
    Closed {
        code: u16,
        reason: String,
    },
}

/// Options of a connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Groups to recover, with the last position seen in each (a message's `seq`).
    pub recover: std::collections::BTreeMap<String, u64>,
}

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server refused the upgrade with an HTTP status.
    #[error("upgrade refused with HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    /// The server accepted the upgrade, then closed with this code (a bad token, a limit…).
    #[error("closed by the server ({code}): {reason}")]
    Closed { code: u16, reason: String },
    #[error("websocket error: {0}")]
    Transport(#[from] tungstenite::Error),
    #[error("the server did not start with a welcome: {0}")]
    NoWelcome(String),
}

impl ConnectError {
    /// The close code, when the server closed the connection.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Self::Closed { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("server error {0}")]
    Server(#[from] ServerError),
    #[error("the connection is closed")]
    Closed,
}

impl RequestError {
    /// The server's error code (`forbidden`, `rate_limited`, …), if it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Server(e) => Some(&e.code),
            Self::Closed => None,
        }
    }
}

/// Requests waiting for their reply, by id. A mutex held only to insert or take one entry.
type Replies = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Result<Value, ServerError>>>>>;

/// One client connection.
#[derive(Debug)]
pub struct Connection {
    welcome: Welcome,
    outgoing: mpsc::UnboundedSender<WsMessage>,
    events: mpsc::UnboundedReceiver<Event>,
    replies: Replies,
    next_id: AtomicU64,
}

#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    id: Option<Value>,
    error: Option<ServerError>,
}

impl Connection {
    /// Connects to `ws://HOST:PORT/client` with a client token.
    pub async fn connect(url: &str, token: &str) -> Result<Self, ConnectError> {
        Self::connect_with(url, token, &ConnectOptions::default()).await
    }

    /// Connects, asking to recover groups from the positions in `options`.
    pub async fn connect_with(url: &str, token: &str, options: &ConnectOptions) -> Result<Self, ConnectError> {
        let separator = if url.contains('?') { '&' } else { '?' };
        let mut url = format!("{url}{separator}access_token={token}");
        if !options.recover.is_empty() {
            let recover = serde_json::to_string(&options.recover).unwrap_or_default();
            url.push_str("&recover=");
            url.push_str(&percent_encode(&recover));
        }
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", tungstenite::http::HeaderValue::from_static(SUBPROTOCOL));
        let (mut ws, _response) = match tokio_tungstenite::connect_async(request).await {
            Ok(connected) => connected,
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body =
                    response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
                return Err(ConnectError::Refused { status, body });
            }
            Err(err) => return Err(err.into()),
        };
        let welcome = loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(text))) => {
                    let value: Value =
                        serde_json::from_str(&text).map_err(|e| ConnectError::NoWelcome(e.to_string()))?;
                    if value.get("type").and_then(Value::as_str) != Some("welcome") {
                        return Err(ConnectError::NoWelcome(text.to_string()));
                    }
                    break serde_json::from_value::<Welcome>(value)
                        .map_err(|e| ConnectError::NoWelcome(e.to_string()))?;
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    let (code, reason) =
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                    return Err(ConnectError::Closed { code, reason });
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
                None => return Err(ConnectError::Closed { code: 1006, reason: String::new() }),
            }
        };
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let replies: Replies = Arc::default();
        tokio::spawn(run(ws, outgoing_rx, events_tx, Arc::clone(&replies)));
        Ok(Self { welcome, outgoing, events, replies, next_id: AtomicU64::new(1) })
    }

    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    pub fn connection_id(&self) -> &str {
        &self.welcome.connection_id
    }

    /// Sends a request with an id and waits for its reply.
    pub async fn request(&self, frame: serde_json::Map<String, Value>) -> Result<(), RequestError> {
        self.request_reply(frame).await.map(|_| ())
    }

    /// Sends a request with an id and returns the whole reply frame.
    pub async fn request_reply(&self, mut frame: serde_json::Map<String, Value>) -> Result<Value, RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        frame.insert("id".into(), Value::from(id));
        let (tx, rx) = oneshot::channel();
        self.replies.lock().map_err(|_| RequestError::Closed)?.insert(id, tx);
        self.send_text(&Value::Object(frame).to_string())?;
        rx.await.map_err(|_| RequestError::Closed)?.map_err(RequestError::Server)
    }

    pub async fn join(&self, group: &str) -> Result<(), RequestError> {
        self.request(object(serde_json::json!({"type": "join", "group": group}))).await
    }

    /// Joins a group and first replays what was stored after position `since`.
    pub async fn join_since(&self, group: &str, since: u64) -> Result<GroupRecovery, RequestError> {
        let frame = serde_json::json!({"type": "join", "group": group, "since": since});
        let reply = self.request_reply(object(frame)).await?;
        Ok(GroupRecovery {
            group: group.to_owned(),
            recovered: reply.get("recovered").and_then(Value::as_bool).unwrap_or(false),
            reason: reply.get("reason").and_then(Value::as_str).map(str::to_owned),
            message: reply.get("message").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// Publishes; for a group with history, returns the message's position.
    pub async fn publish_stored(&self, group: &str, event: &str, data: Value) -> Result<Option<u64>, RequestError> {
        let frame = serde_json::json!({"type": "publish", "group": group, "event": event, "data": data});
        let reply = self.request_reply(object(frame)).await?;
        Ok(reply.get("position").and_then(Value::as_u64))
    }

    /// Who is in a group the token may join.
    pub async fn presence(&self, group: &str) -> Result<Presence, RequestError> {
        let reply = self.request_reply(object(serde_json::json!({"type": "presence", "group": group}))).await?;
        serde_json::from_value(reply.get("presence").cloned().unwrap_or_default())
            .map_err(|e| RequestError::Server(ServerError { code: "bad_reply".into(), message: e.to_string() }))
    }

    /// Sends a client event to the app's webhook; returns the webhook's answer.
    pub async fn send_event(&self, event: &str, data: Value) -> Result<Value, RequestError> {
        let reply =
            self.request_reply(object(serde_json::json!({"type": "event", "event": event, "data": data}))).await?;
        Ok(reply.get("data").cloned().unwrap_or_default())
    }

    pub async fn leave(&self, group: &str) -> Result<(), RequestError> {
        self.request(object(serde_json::json!({"type": "leave", "group": group}))).await
    }

    pub async fn publish(&self, group: &str, event: &str, data: Value) -> Result<(), RequestError> {
        self.request(object(serde_json::json!({"type": "publish", "group": group, "event": event, "data": data}))).await
    }

    /// Publishes to a group without receiving the message back.
    pub async fn publish_no_echo(&self, group: &str, event: &str, data: Value) -> Result<(), RequestError> {
        let frame =
            serde_json::json!({"type": "publish", "group": group, "event": event, "data": data, "noEcho": true});
        self.request(object(frame)).await
    }

    /// Sends any text frame as it is (for protocol tests).
    pub fn send_text(&self, text: &str) -> Result<(), RequestError> {
        self.send_frame(WsMessage::Text(text.into()))
    }

    /// Sends any WebSocket frame as it is (for protocol tests).
    pub fn send_frame(&self, frame: WsMessage) -> Result<(), RequestError> {
        self.outgoing.send(frame).map_err(|_| RequestError::Closed)
    }

    /// The next message, error or close. `None` after the close was returned.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Takes the connection's events out, so the connection can be shared for requests while
    /// another task handles what arrives. Afterwards [`next_event`](Self::next_event) returns None.
    pub fn take_events(&mut self) -> mpsc::UnboundedReceiver<Event> {
        let (_, empty) = mpsc::unbounded_channel();
        std::mem::replace(&mut self.events, empty)
    }

    /// The next delivered message, skipping pongs; `None` once closed.
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            match self.next_event().await? {
                Event::Message(message) => return Some(message),
                Event::Closed { .. } => return None,
                Event::Error(_)
                | Event::Pong
                | Event::Recovery { .. }
                | Event::Reconnect { .. }
                | Event::Presence { .. } => {}
            }
        }
    }

    /// Starts a normal close (1000).
    pub fn close(&self) {
        let frame = CloseFrame { code: WsCloseCode::Normal, reason: "".into() };
        let _ = self.outgoing.send(WsMessage::Close(Some(frame)));
    }
}

/// Percent-encodes everything but unreserved characters (for a query parameter).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn object(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The connection's task: writes what the caller sends, routes what the server sends.
async fn run(
    mut ws: Socket,
    mut outgoing: mpsc::UnboundedReceiver<WsMessage>,
    events: mpsc::UnboundedSender<Event>,
    replies: Replies,
) {
    let closed = loop {
        tokio::select! {
            frame = outgoing.recv() => match frame {
                Some(frame) => {
                    if ws.send(frame).await.is_err() {
                        break (1006, String::new());
                    }
                }
                None => {
                    let _ = ws.close(None).await;
                    break (1000, String::new());
                }
            },
            incoming = ws.next() => match incoming {
                Some(Ok(WsMessage::Text(text))) => route(&text, &events, &replies),
                Some(Ok(WsMessage::Close(frame))) => {
                    break frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break (1006, String::new()),
            },
        }
    };
    // Requests still waiting get `Closed`.
    if let Ok(mut replies) = replies.lock() {
        replies.clear();
    }
    let _ = events.send(Event::Closed { code: closed.0, reason: closed.1 });
}

fn route(text: &str, events: &mpsc::UnboundedSender<Event>, replies: &Replies) {
    let Ok(frame) = serde_json::from_str::<Frame>(text) else {
        tracing::warn!(text, "unreadable frame from the server");
        return;
    };
    match frame.kind.as_str() {
        "message" => {
            if let Ok(message) = serde_json::from_str::<Message>(text) {
                let _ = events.send(Event::Message(message));
            }
        }
        "reply" => {
            let waiter = frame.id.as_ref().and_then(Value::as_u64).and_then(|id| replies.lock().ok()?.remove(&id));
            if let Some(waiter) = waiter {
                let reply = match frame.error {
                    Some(error) => Err(error),
                    None => Ok(serde_json::from_str(text).unwrap_or(Value::Null)),
                };
                let _ = waiter.send(reply);
            }
        }
        "recovery" => {
            #[derive(Deserialize)]
            struct Recovery {
                recovered: bool,
                groups: Vec<GroupRecovery>,
            }
            if let Ok(recovery) = serde_json::from_str::<Recovery>(text) {
                let _ = events.send(Event::Recovery { recovered: recovery.recovered, groups: recovery.groups });
            }
        }
        "reconnect" => {
            let reason = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            let _ = events.send(Event::Reconnect { reason });
        }
        "error" => {
            if let Some(error) = frame.error {
                let _ = events.send(Event::Error(error));
            }
        }
        "pong" => {
            let _ = events.send(Event::Pong);
        }
        "presence" => {
            #[derive(Deserialize)]
            struct PresenceFrame {
                group: String,
                #[serde(default)]
                joined: Vec<PresenceChange>,
                #[serde(default)]
                left: Vec<PresenceChange>,
                count: u64,
                #[serde(default)]
                truncated: bool,
            }
            if let Ok(p) = serde_json::from_str::<PresenceFrame>(text) {
                let event = Event::Presence {
                    group: p.group,
                    joined: p.joined,
                    left: p.left,
                    count: p.count,
                    truncated: p.truncated,
                };
                let _ = events.send(event);
            }
        }
        other => tracing::debug!(kind = other, "ignoring a frame type this client does not know"),
    }
}

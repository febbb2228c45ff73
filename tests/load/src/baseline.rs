//! The baseline of scenario 7: the simplest broadcast server one would write with axum's
//! WebSocket support (tokio-tungstenite) — a task per connection, a broadcast channel, one send
//! per message, the message encoded once. It speaks just enough of Signalbox's protocol (a
//! welcome, message frames, the group publish route) for the same load generator to drive it.

use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use tokio::sync::broadcast;

pub(crate) async fn serve() -> anyhow::Result<()> {
    let (messages, _) = broadcast::channel::<Utf8Bytes>(4096);
    let app = Router::new()
        .route("/client", get(upgrade))
        .route("/v1/apps/{app}/groups/{group}/messages", post(publish))
        .with_state(messages);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("baseline listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn upgrade(ws: WebSocketUpgrade, State(messages): State<broadcast::Sender<Utf8Bytes>>) -> Response {
    ws.protocols(["signalbox.json.v1"]).on_upgrade(move |socket| connection(socket, messages.subscribe()))
}

async fn connection(mut socket: WebSocket, mut messages: broadcast::Receiver<Utf8Bytes>) {
    if socket.send(Message::Text(r#"{"type":"welcome","connectionId":"baseline"}"#.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(text) => if socket.send(Message::Text(text)).await.is_err() { return },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

async fn publish(
    Path((_app, group)): Path<(String, String)>,
    State(messages): State<broadcast::Sender<Utf8Bytes>>,
    body: axum::body::Bytes,
) -> StatusCode {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(&body) else { return StatusCode::BAD_REQUEST };
    // Fields in the protocol's order (a serde_json map would sort them).
    let frame = format!(
        r#"{{"type":"message","event":{},"data":{},"group":{}}}"#,
        request["event"],
        request["data"],
        serde_json::Value::String(group)
    );
    let _ = messages.send(frame.into());
    StatusCode::ACCEPTED
}

//! A real HTTP server standing in for a tenant's webhook: it records every request and answers
//! as the test scripted (a status, a body, a delay), per CloudEvents type.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;
use tokio::sync::Notify;

use crate::within;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// `ce-type`, e.g. `signalbox.connected`.
    pub kind: String,
    /// `ce-id`.
    pub id: String,
    /// The request target as it arrived on the request line (path and query, still encoded).
    pub target: String,
    pub headers: HeaderMap,
    /// The raw body, as signed.
    pub raw: Bytes,
    pub body: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self { status, body: String::new(), delay: Duration::ZERO }
    }

    pub fn json(status: u16, body: Value) -> Self {
        Self { status, body: body.to_string(), delay: Duration::ZERO }
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Debug, Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    /// Scripted replies per `ce-type`, used in order; then 200 with an empty body.
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    /// The reply once a type's script is used up.
    default: Mutex<HashMap<String, Reply>>,
}

/// The webhook receiver.
#[derive(Debug)]
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> impl IntoResponse {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let kind = header("ce-type");
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let target = uri.path_and_query().map(ToString::to_string).unwrap_or_default();
    let received = Received { id: header("ce-id"), kind: kind.clone(), target, headers: headers.clone(), raw, body };
    let reply = {
        let scripted = shared.script.lock().expect("lock").get_mut(&kind).and_then(VecDeque::pop_front);
        scripted
            .or_else(|| shared.default.lock().expect("lock").get(&kind).cloned())
            .unwrap_or_else(|| Reply::status(200))
    };
    shared.received.lock().expect("lock").push(received);
    shared.arrived.notify_waiters();
    tokio::time::sleep(reply.delay).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], reply.body)
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new().fallback(receive).with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers the next requests of type `kind` with `replies`, in order.
    pub fn script(&self, kind: &str, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().expect("lock").entry(kind.to_owned()).or_default().extend(replies);
    }

    /// Answers every request of type `kind` (once its script is used up) with `reply`.
    pub fn always(&self, kind: &str, reply: Reply) {
        self.shared.default.lock().expect("lock").insert(kind.to_owned(), reply);
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("lock").clone()
    }

    /// Waits until `count` requests match `which`; returns them in arrival order.
    pub async fn wait_for(&self, what: &str, count: usize, which: impl Fn(&Received) -> bool) -> Vec<Received> {
        within(what, async {
            loop {
                let arrived = self.shared.arrived.notified();
                let matching: Vec<Received> = self.received().into_iter().filter(|r| which(r)).collect();
                if matching.len() >= count {
                    return matching;
                }
                arrived.await;
            }
        })
        .await
    }
}

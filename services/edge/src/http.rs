//! The HTTP server every role runs: HTTP/1.1 with upgrades, `TCP_NODELAY`, graceful shutdown,
//! and the limits that keep one client from holding the server hostage ([`HttpLimits`]):
//!
//! - connections: at most so many in all, and so many per source address (one over the
//!   limit is closed as soon as it is accepted);
//! - deadlines: on the request headers (hyper's), on the request body, and on the whole
//!   request up to its response head — except `GET /client` and `GET /client/`, the
//!   WebSocket, Server-Sent Events and long-polling transports, which have their own bounds
//!   (heartbeats, the long poll's timeout);
//! - unauthenticated requests: at most so many at once per source address. Each request
//!   carries a [`PendingAuth`] in its extensions; the code that checks its credential marks
//!   it authenticated, which frees the slot (handlers check credentials before they read a
//!   body, so a body that never arrives cannot hold a slot without one).
//!
//! Why not `axum::serve`: its auto-detecting builder hides the TCP stream behind a private
//! rewind type after an upgrade, and the WebSocket transport wants the stream itself (to
//! write frames with one vectored write and read with no per-connection buffer).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use signalbox_core::admission::PendingAuth;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use crate::problem::problem;

/// How long shutdown waits for in-flight HTTP requests (not WebSockets: the edge closes those).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The limits of one node's HTTP server (docs/operations.md, "HTTP limits").
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// HTTP connections served at once. An upgraded WebSocket leaves this count (and the
    /// per-address one) when it is handed over: the hub bounds WebSockets with its own limit.
    pub max_connections: usize,
    /// HTTP connections one source address may hold at once; 0: no limit. Behind a proxy or
    /// load balancer every connection comes from it: raise the limit or turn it off there.
    pub max_connections_per_ip: usize,
    /// Requests from one source address not yet authenticated, at once; 0: no limit. More
    /// get `429`.
    pub max_unauthenticated_per_ip: usize,
    /// How long a client may take to send a request's headers (also: how long an idle
    /// keep-alive connection stays open).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, from the end of its headers.
    /// Late: `408` and the connection is closed.
    pub body_timeout: Duration,
    /// How long a request may take until its response head (not the transports' `GET`s).
    /// Late: `503`.
    pub request_timeout: Duration,
    /// How long the kernel may hold data a peer does not take before it drops the connection
    /// (`TCP_USER_TIMEOUT`): a client that stops reading an event stream or a long poll, which
    /// no write of ours ever notices, still frees its socket and kernel buffers. `None`: the
    /// system's default (many minutes). The edge sets it to its idle timeout.
    pub peer_stall_timeout: Option<Duration>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 512,
            max_unauthenticated_per_ip: 64,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            peer_stall_timeout: None,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, within `limits`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let sources = Arc::new(Sources::default());
    let guard = Arc::new(Guard { limits: limits.clone(), sources: Arc::clone(&sources) });
    let router = router.layer(axum::middleware::from_fn_with_state(guard, admit));
    // One permit per open HTTP connection: shutdown waits until every permit is back.
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => permit.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors or a transient error: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(source) = sources.connect(peer.ip(), limits.max_connections_per_ip) else {
            metrics::counter!("signalbox_http_refused_total", "reason" => "connections_per_ip").increment(1);
            tracing::debug!(peer = %peer.ip(), "too many connections from one address: closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        if let Some(timeout) = limits.peer_stall_timeout {
            let _ = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(timeout));
        }
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(error = %err, "http connection ended with an error");
            }
            drop(source);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(());
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await.is_err() {
        tracing::warn!("some HTTP requests were still running at shutdown");
    }
    Ok(())
}

/// What the admission middleware needs.
#[derive(Debug)]
struct Guard {
    limits: HttpLimits,
    sources: Arc<Sources>,
}

/// Marks the request whose extensions these are as authenticated (see [`PendingAuth`]).
pub(crate) fn authenticated(extensions: &http::Extensions) {
    if let Some(pending) = extensions.get::<PendingAuth>() {
        pending.authenticated();
    }
}

/// The middleware in front of every route: the unauthenticated-request cap, the body
/// deadline and the request deadline.
async fn admit(State(guard): State<Arc<Guard>>, mut request: Request, next: Next) -> Response {
    let limits = &guard.limits;
    let pending = match request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) {
        Some(ip) => match guard.sources.begin_request(ip, limits.max_unauthenticated_per_ip) {
            Some(pending) => pending,
            None => {
                metrics::counter!("signalbox_http_refused_total", "reason" => "unauthenticated_per_ip").increment(1);
                let mut response = closing(problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too-many-requests",
                    "too many unauthenticated requests from this address at once; retry shortly",
                ));
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
        },
        // Not served by `serve` (a test driving the router): nothing to count.
        None => PendingAuth::new(|| {}),
    };
    request.extensions_mut().insert(pending.clone());
    let expired = Arc::new(AtomicBool::new(false));
    let transport = is_transport(&request);
    let request = request.map(|body| {
        axum::body::Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(limits.body_timeout)),
            expired: Arc::clone(&expired),
        })
    });
    let response = if transport {
        next.run(request).await
    } else {
        match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                metrics::counter!("signalbox_http_refused_total", "reason" => "request_timeout").increment(1);
                closing(problem(StatusCode::SERVICE_UNAVAILABLE, "request-timeout", "the request took too long"))
            }
        }
    };
    pending.authenticated();
    if expired.load(Ordering::Acquire) {
        metrics::counter!("signalbox_http_refused_total", "reason" => "body_timeout").increment(1);
        return closing(problem(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            "the request body did not arrive in time",
        ));
    }
    response
}

/// `GET /client` and `GET /client/`: the transports, bounded by their own timeouts.
fn is_transport(request: &Request) -> bool {
    request.method() == Method::GET && matches!(request.uri().path(), "/client" | "/client/")
}

/// The connection closes after this response.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once its deadline passed before it ended.
struct DeadlineBody {
    inner: axum::body::Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Tells the middleware that the body timed out (to answer `408`, whatever the handler
    /// made of the failed read).
    expired: Arc<AtomicBool>,
}

/// The error a late body fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimeout;

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.expired.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(BodyTimeout.into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Per source address: its open connections and its unauthenticated requests.
#[derive(Debug, Default)]
struct Sources {
    /// A map behind a `Mutex`: touched once per connection and twice per request, never held
    /// across an await. Entries leave when both counts are zero, so the map holds only the
    /// addresses that are connected.
    counts: Mutex<HashMap<IpAddr, Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    connections: usize,
    unauthenticated: usize,
}

/// A connection counted against its source address, until dropped.
struct SourceSlot {
    sources: Option<Arc<Sources>>,
    ip: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        if let Some(sources) = &self.sources {
            sources.release(self.ip, |c| c.connections -= 1);
        }
    }
}

impl Sources {
    /// Counts a new connection from `ip`; `None` when it already holds `max` (0: no limit).
    fn connect(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<SourceSlot> {
        if max == 0 {
            return Some(SourceSlot { sources: None, ip });
        }
        let mut counts = self.counts.lock();
        let entry = counts.entry(ip).or_default();
        if entry.connections >= max {
            return None;
        }
        entry.connections += 1;
        Some(SourceSlot { sources: Some(Arc::clone(self)), ip })
    }

    /// Counts a new unauthenticated request from `ip`; `None` when it already has `max`.
    fn begin_request(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PendingAuth> {
        if max == 0 {
            return Some(PendingAuth::new(|| {}));
        }
        {
            let mut counts = self.counts.lock();
            let entry = counts.entry(ip).or_default();
            if entry.unauthenticated >= max {
                return None;
            }
            entry.unauthenticated += 1;
        }
        let sources = Arc::clone(self);
        Some(PendingAuth::new(move || sources.release(ip, |c| c.unauthenticated -= 1)))
    }

    fn release(&self, ip: IpAddr, change: impl FnOnce(&mut Counts)) {
        let mut counts = self.counts.lock();
        if let Some(entry) = counts.get_mut(&ip) {
            change(entry);
            if entry.connections == 0 && entry.unauthenticated == 0 {
                counts.remove(&ip);
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.counts.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_per_address_are_capped_and_given_back() {
        let sources = Arc::new(Sources::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let held: Vec<_> = (0..2).map(|_| sources.connect(a, 2).expect("under the cap")).collect();
        assert!(sources.connect(a, 2).is_none(), "a third connection from the same address");
        assert!(sources.connect(b, 2).is_some(), "another address is not affected");
        drop(held);
        assert!(sources.connect(a, 2).is_some());
        assert_eq!(sources.tracked(), 0, "no address is kept once it has nothing open");
    }

    #[test]
    fn unauthenticated_requests_are_capped_until_authenticated() {
        let sources = Arc::new(Sources::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let first = sources.begin_request(ip, 1).expect("under the cap");
        assert!(sources.begin_request(ip, 1).is_none(), "a second unauthenticated request");
        first.authenticated();
        first.authenticated();
        let second = sources.begin_request(ip, 1).expect("the slot came back once authenticated");
        assert!(sources.begin_request(ip, 1).is_none(), "released once, not twice");
        second.authenticated();
        assert_eq!(sources.tracked(), 0);
        assert!(sources.begin_request(ip, 0).is_some(), "0 is no limit");
    }
}

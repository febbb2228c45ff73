//! Server-Sent Events: the response body is the connection's outbox, as events (each frame a
//! `data:` line); the client sends with requests of its own. The connection ends with the
//! stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, header};
use signalbox_core::CloseCode;

use super::{HttpConnection, concat};
use crate::EdgeState;
use crate::outbox::Taken;
use crate::protocol::Outbound;

/// How long an event stream may leave a requested close unseen before its connection is
/// ended without it (see [`watch`]).
const STREAM_CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How often an event stream's connection is checked for such a close.
const STREAM_WATCH_EVERY: Duration = Duration::from_secs(1);

/// The streaming response of a connection on Server-Sent Events.
pub(crate) fn response(edge: Arc<EdgeState>, http: Arc<HttpConnection>) -> Response {
    tokio::spawn(watch(Arc::clone(&edge), Arc::clone(&http)));
    let stream = EventStream { edge, http, started: false, done: false };
    let mut response = axum::body::Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies such as nginx must not buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Ends an event stream's connection whose close the stream cannot see. hyper polls a
/// response body only while it can write, so for a client that reads nothing a slow-consumer
/// or heartbeat close would never reach [`EventStream`], and the connection would stay in the
/// hub (counted, in its groups, never reported disconnected) for as long as the socket lives.
/// If the client reads again later, the stream still sends it the protocol's goodbye.
async fn watch(edge: Arc<EdgeState>, http: Arc<HttpConnection>) {
    let mut closing_since = None;
    loop {
        tokio::time::sleep(STREAM_WATCH_EVERY).await;
        if http.is_finished() {
            return;
        }
        let Some(request) = http.conn.outbox.close_request() else { continue };
        let since = *closing_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() >= STREAM_CLOSE_GRACE {
            tracing::debug!(connection = %http.conn.id, code = request.code.code(), "ending an event stream that is not read");
            http.finish(&edge, request.code, &request.reason);
            return;
        }
    }
}

/// The body of a Server-Sent Events response: what the connection's outbox holds, as
/// `data:` lines. Dropped when the client goes away, which ends the connection.
struct EventStream {
    edge: Arc<EdgeState>,
    http: Arc<HttpConnection>,
    started: bool,
    done: bool,
}

/// Appends one event carrying `payload` (each line of it a `data:` line).
fn push_event(out: &mut BytesMut, payload: &[u8]) {
    for line in payload.split(|&b| b == b'\n' || b == b'\r') {
        out.put_slice(b"data: ");
        out.put_slice(line);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

impl futures_util::Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if !self.started {
            // A comment first: some browsers fire `open` only once something arrived.
            self.started = true;
            return Poll::Ready(Some(Ok(Bytes::from_static(b":\r\n\r\n"))));
        }
        let mut frames = VecDeque::new();
        match self.http.conn.outbox.poll_take(cx, &mut frames) {
            Poll::Ready(Taken::Frames) => {
                let mut out = BytesMut::with_capacity(frames.iter().map(|f| f.len() + 16).sum());
                push_event(&mut out, &concat(frames));
                Poll::Ready(Some(Ok(out.freeze())))
            }
            Poll::Ready(Taken::Close(request)) => {
                self.done = true;
                self.http.finish(&self.edge, request.code, &request.reason);
                let mut out = BytesMut::new();
                if let Some(goodbye) = self.http.conn.format().encode(&Outbound::Close(&request)) {
                    push_event(&mut out, &goodbye);
                }
                Poll::Ready(Some(Ok(out.freeze())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if !self.done {
            self.http.finish(&self.edge, CloseCode::GoingAway, "the client closed the event stream");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_put_every_line_in_a_data_field() {
        let mut out = BytesMut::new();
        push_event(&mut out, b"{\"a\":\n1}\x1e");
        assert_eq!(&out[..], b"data: {\"a\":\r\ndata: 1}\x1e\r\n\r\n");
    }
}

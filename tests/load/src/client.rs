//! Load clients: WebSocket connections spoken by hand over TCP (a handshake, masked frames
//! out, unmasked frames in), so that tens of thousands fit in one process and cost little CPU
//! next to the server they measure.
//!
//! Every message a load publisher sends carries `{"n":SEQ,"t":MICROS,…}` in its data; clients
//! count deliveries per sequence number (loss and duplicates) and record end-to-end latency.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;

use crate::histogram::Histogram;

/// What every client of a run reports into.
#[derive(Debug)]
pub(crate) struct Tally {
    /// Deliveries per sequence number.
    per_message: Vec<AtomicU32>,
    /// How many deliveries make a message complete (its target's size).
    expected: AtomicU32,
    /// Woken whenever a message becomes complete.
    pub(crate) complete: Notify,
    pub(crate) delivered: AtomicU64,
    pub(crate) other_frames: AtomicU64,
    pub(crate) closes: AtomicU64,
    pub(crate) last_close_code: AtomicU32,
    pub(crate) latency: Histogram,
    /// When the first and the last delivery arrived, µs since the Unix epoch.
    pub(crate) first_delivery: AtomicU64,
    pub(crate) last_delivery: AtomicU64,
}

impl Tally {
    pub(crate) fn new(max_messages: usize) -> Arc<Self> {
        Arc::new(Self {
            per_message: (0..max_messages).map(|_| AtomicU32::new(0)).collect(),
            expected: AtomicU32::new(u32::MAX),
            complete: Notify::new(),
            delivered: AtomicU64::new(0),
            other_frames: AtomicU64::new(0),
            closes: AtomicU64::new(0),
            last_close_code: AtomicU32::new(0),
            latency: Histogram::default(),
            first_delivery: AtomicU64::new(u64::MAX),
            last_delivery: AtomicU64::new(0),
        })
    }

    pub(crate) fn set_expected(&self, deliveries_per_message: u32) {
        self.expected.store(deliveries_per_message, Ordering::SeqCst);
    }

    pub(crate) fn deliveries_of(&self, n: u64) -> u32 {
        self.per_message.get(n as usize).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn record(&self, n: u64, published_micros: u64) {
        let now = now_micros();
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.latency.record(now.saturating_sub(published_micros));
        self.first_delivery.fetch_min(now, Ordering::Relaxed);
        self.last_delivery.fetch_max(now, Ordering::Relaxed);
        if let Some(count) = self.per_message.get(n as usize) {
            let deliveries = count.fetch_add(1, Ordering::Relaxed) + 1;
            if deliveries == self.expected.load(Ordering::Relaxed) {
                self.complete.notify_waiters();
            }
        }
    }

    /// (messages with missing deliveries, duplicate deliveries) over the first `published`.
    pub(crate) fn loss_and_duplicates(&self, published: u64) -> (u64, u64) {
        let expected = self.expected.load(Ordering::SeqCst);
        let (mut lost, mut duplicated) = (0, 0);
        for count in self.per_message.iter().take(published as usize) {
            let count = count.load(Ordering::SeqCst);
            if count < expected {
                lost += u64::from(expected - count);
            } else {
                duplicated += u64::from(count - expected);
            }
        }
        (lost, duplicated)
    }
}

pub(crate) fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The `i`-th source address: spread over 127.0.0.2–127.0.0.251 so the ephemeral port range
/// of one address is never the limit.
pub(crate) fn source_address(i: usize) -> IpAddr {
    IpAddr::from([127, 0, 0, 2 + (i % 250) as u8])
}

/// Connects, upgrades and reads the welcome; then serves the connection in a task until the
/// server closes it or the task is aborted.
pub(crate) async fn connect(
    server: SocketAddr,
    source: IpAddr,
    path_and_query: &str,
    tally: Arc<Tally>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let mut stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let key = base64::engine::general_purpose::STANDARD.encode(rand_bytes());
    let request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: signalbox.json.v1\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed during the handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&buf[..head_end]).into_owned()));
    }
    buf.drain(..head_end);
    let mut reader = FrameReader { buf };
    // The first frame must be the welcome (or a close with a code).
    match reader.next(&mut stream).await? {
        Some((0x1, payload)) if payload.starts_with(b"{\"type\":\"welcome\"") => {}
        Some((0x8, payload)) => {
            let code = payload.get(..2).map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
            return Err(std::io::Error::other(format!("closed with {code} at connect")));
        }
        other => return Err(std::io::Error::other(format!("no welcome: {other:?}"))),
    }
    Ok(tokio::spawn(serve(stream, reader, tally)))
}

fn rand_bytes() -> [u8; 16] {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    nanos.to_le_bytes()
}

/// Reads server frames (unmasked) from a buffer refilled from the stream.
struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// The next frame's opcode and payload; None at end of stream.
    async fn next(&mut self, stream: &mut TcpStream) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        loop {
            if let Some((opcode, start, len)) = parse(&self.buf) {
                let payload = self.buf[start..start + len].to_vec();
                self.buf.drain(..start + len);
                return Ok(Some((opcode, payload)));
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// (opcode, payload start, payload length) of a complete frame at the start of `buf`.
fn parse(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, start) = match b1 & 0x7f {
        126 => (usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])), 4),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(bytes)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    (buf.len() >= start + len).then_some((b0 & 0x0f, start, len))
}

/// A masked client frame.
pub(crate) fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x80 | opcode];
    if payload.len() < 126 {
        frame.push(0x80 | payload.len() as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Finds the integer after `key` (such as `"n":`) in a JSON text.
fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits]).ok()?.parse().ok()
}

async fn serve(mut stream: TcpStream, mut reader: FrameReader, tally: Arc<Tally>) {
    loop {
        match reader.next(&mut stream).await {
            Ok(Some((0x1, payload))) => match (number_after(&payload, b"\"n\":"), number_after(&payload, b"\"t\":")) {
                (Some(n), Some(t)) if payload.starts_with(b"{\"type\":\"message\"") => tally.record(n, t),
                _ => {
                    tally.other_frames.fetch_add(1, Ordering::Relaxed);
                }
            },
            Ok(Some((0x9, payload))) => {
                if stream.write_all(&client_frame(0xA, &payload)).await.is_err() {
                    break;
                }
            }
            Ok(Some((0x8, payload))) => {
                let code = payload.get(..2).map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                tally.last_close_code.store(u32::from(code), Ordering::Relaxed);
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    tally.closes.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_numbers_in_message_frames() {
        let frame = br#"{"type":"message","event":"b","data":{"n":42,"t":1795311568948123,"p":"xx"},"group":"g"}"#;
        assert_eq!(number_after(frame, b"\"n\":"), Some(42));
        assert_eq!(number_after(frame, b"\"t\":"), Some(1_795_311_568_948_123));
        assert_eq!(number_after(b"{}", b"\"n\":"), None);
    }

    #[test]
    fn parses_server_frames() {
        assert_eq!(parse(&[0x81, 2, b'h', b'i']), Some((1, 2, 2)));
        assert_eq!(parse(&[0x81, 2, b'h']), None);
        let mut long = vec![0x81, 126, 0, 200];
        long.extend(vec![b'x'; 200]);
        assert_eq!(parse(&long), Some((1, 4, 200)));
    }
}

//! RFC 6455 framing, server side.
//!
//! Outbound frames are encoded once into shared `Bytes` (a server frame is unmasked and we
//! negotiate no extensions, so one message's frame is byte-for-byte the same for every
//! recipient). Inbound frames are parsed strictly: clients must mask, reserved bits must be
//! zero, control frames must be short and final, text must be UTF-8, and nothing may exceed
//! the size limit. Each violation has its close code.

use bytes::{BufMut, Bytes, BytesMut};
use signalbox_core::CloseCode;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
const FIN: u8 = 0x80;

/// Largest header a server frame needs (2 + 8 bytes of length).
pub(crate) const MAX_HEADER_LEN: usize = 10;

/// A ping with no payload, shared by every heartbeat.
pub(crate) static PING: Bytes = Bytes::from_static(&[FIN | OP_PING, 0]);

/// Why the peer's frames are refused; each maps to a close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("frame or message exceeds {0} bytes")]
    TooBig(usize),
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
}

impl FrameError {
    pub(crate) fn close_code(&self) -> CloseCode {
        match self {
            Self::Protocol(_) => CloseCode::ProtocolError,
            Self::TooBig(_) => CloseCode::MessageTooBig,
            Self::InvalidUtf8 => CloseCode::InvalidPayload,
        }
    }
}

/// One complete inbound message or control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inbound {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// The peer's close: its code and reason, if it sent any.
    Close(Option<(u16, String)>),
}

/// Encodes a final, unmasked server frame around `payload`.
fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(MAX_HEADER_LEN + payload.len());
    buf.put_u8(FIN | opcode);
    match payload.len() {
        len @ 0..=125 => buf.put_u8(len as u8),
        len @ 126..=0xFFFF => {
            buf.put_u8(126);
            buf.put_u16(len as u16);
        }
        len => {
            buf.put_u8(127);
            buf.put_u64(len as u64);
        }
    }
    buf.put_slice(payload);
    buf.freeze()
}

pub(crate) fn text_frame(payload: &[u8]) -> Bytes {
    encode(OP_TEXT, payload)
}

pub(crate) fn binary_frame(payload: &[u8]) -> Bytes {
    encode(OP_BINARY, payload)
}

pub(crate) fn pong_frame(payload: &[u8]) -> Bytes {
    encode(OP_PONG, payload)
}

/// A close frame; the reason is cut at a character boundary to fit the 125-byte limit.
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OP_CLOSE, &payload)
}

/// Incremental parser of the frames of one connection. Holds no memory while idle: bytes
/// are kept only for an incomplete frame or a fragmented message in progress.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    /// The start of a frame whose remaining bytes have not arrived yet.
    partial: Vec<u8>,
    /// Payload of a fragmented message being assembled, and whether it is text.
    message: Vec<u8>,
    message_is_text: Option<bool>,
}

struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

/// Parses a header, or `Ok(None)` if more bytes are needed.
fn parse_header(buf: &[u8], max_payload: usize) -> Result<Option<Header>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameError::Protocol("reserved bits set without a negotiated extension"));
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let fin = b0 & FIN != 0;
    let opcode = b0 & 0x0F;
    if !matches!(opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
        return Err(FrameError::Protocol("unknown opcode"));
    }
    let is_control = opcode & 0x8 != 0;
    let (payload_len, mut header_len) = match b1 & 0x7F {
        126 => {
            let Some(bytes) = buf.get(2..4) else { return Ok(None) };
            (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else { return Ok(None) };
            let mut raw = [0u8; 8];
            raw.copy_from_slice(bytes);
            let len = u64::from_be_bytes(raw);
            if len >> 63 != 0 {
                return Err(FrameError::Protocol("64-bit length with the high bit set"));
            }
            (len, 10)
        }
        len => (u64::from(len), 2),
    };
    if is_control && (!fin || payload_len > 125) {
        return Err(FrameError::Protocol("control frames must be final and at most 125 bytes"));
    }
    let payload_len = usize::try_from(payload_len).map_err(|_| FrameError::TooBig(max_payload))?;
    if payload_len > max_payload {
        return Err(FrameError::TooBig(max_payload));
    }
    let Some(mask) = buf.get(header_len..header_len + 4) else { return Ok(None) };
    let mask = [mask[0], mask[1], mask[2], mask[3]];
    header_len += 4;
    Ok(Some(Header { fin, opcode, mask, header_len, payload_len }))
}

/// Unmasks `data` in place (8 bytes at a time where it can).
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

impl Reader {
    /// Feeds bytes read from the socket; appends every completed message or control frame
    /// to `out`. `max_message` bounds a frame and an assembled message alike.
    pub(crate) fn feed(&mut self, data: &[u8], max_message: usize, out: &mut Vec<Inbound>) -> Result<(), FrameError> {
        if self.partial.is_empty() {
            let consumed = self.parse_frames(data, max_message, out)?;
            self.partial.extend_from_slice(&data[consumed..]);
        } else {
            let mut buffered = std::mem::take(&mut self.partial);
            buffered.extend_from_slice(data);
            let consumed = self.parse_frames(&buffered, max_message, out)?;
            buffered.drain(..consumed);
            self.partial = buffered;
        }
        if self.partial.is_empty() && self.partial.capacity() > 0 {
            // Idle connections hold no buffer.
            self.partial = Vec::new();
        }
        Ok(())
    }

    /// Parses whole frames from `buf`; returns how many bytes they used.
    fn parse_frames(&mut self, buf: &[u8], max_message: usize, out: &mut Vec<Inbound>) -> Result<usize, FrameError> {
        let mut pos = 0;
        while let Some(header) = parse_header(&buf[pos..], max_message)? {
            let start = pos + header.header_len;
            let Some(raw) = buf.get(start..start + header.payload_len) else { break };
            let mut payload = raw.to_vec();
            unmask(&mut payload, header.mask);
            pos = start + header.payload_len;
            self.frame(header.fin, header.opcode, payload, max_message, out)?;
        }
        Ok(pos)
    }

    fn frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: Vec<u8>,
        max_message: usize,
        out: &mut Vec<Inbound>,
    ) -> Result<(), FrameError> {
        match opcode {
            OP_PING => out.push(Inbound::Ping(Bytes::from(payload))),
            OP_PONG => out.push(Inbound::Pong),
            OP_CLOSE => out.push(Inbound::Close(parse_close(&payload)?)),
            OP_TEXT | OP_BINARY => {
                if self.message_is_text.is_some() {
                    return Err(FrameError::Protocol("new message before the previous one finished"));
                }
                let is_text = opcode == OP_TEXT;
                if fin {
                    out.push(complete(is_text, payload)?);
                } else {
                    self.message = payload;
                    self.message_is_text = Some(is_text);
                }
            }
            _ => {
                let Some(is_text) = self.message_is_text else {
                    return Err(FrameError::Protocol("continuation frame without a message"));
                };
                if self.message.len() + payload.len() > max_message {
                    return Err(FrameError::TooBig(max_message));
                }
                self.message.extend_from_slice(&payload);
                if fin {
                    self.message_is_text = None;
                    out.push(complete(is_text, std::mem::take(&mut self.message))?);
                }
            }
        }
        Ok(())
    }
}

fn complete(is_text: bool, payload: Vec<u8>) -> Result<Inbound, FrameError> {
    if is_text {
        std::str::from_utf8(&payload).map_err(|_| FrameError::InvalidUtf8)?;
        Ok(Inbound::Text(Bytes::from(payload)))
    } else {
        Ok(Inbound::Binary(Bytes::from(payload)))
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("close frame with a one-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !valid_close_code(code) {
                return Err(FrameError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser would send it.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![if fin { FIN | opcode } else { opcode }];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len @ 126..=0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
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

    fn feed_all(reader: &mut Reader, bytes: &[u8]) -> Result<Vec<Inbound>, FrameError> {
        let mut out = Vec::new();
        reader.feed(bytes, 1 << 20, &mut out)?;
        Ok(out)
    }

    #[test]
    fn parses_frames_split_at_every_byte() {
        let mut stream = client_frame(true, OP_TEXT, b"hello");
        stream.extend(client_frame(true, OP_PING, b"p"));
        stream.extend(client_frame(true, OP_TEXT, &vec![b'x'; 70_000]));
        for split in [1, 2, 3, 7, 100, stream.len()] {
            let mut reader = Reader::default();
            let mut out = Vec::new();
            for chunk in stream.chunks(split) {
                reader.feed(chunk, 1 << 20, &mut out).expect("valid");
            }
            assert_eq!(out.len(), 3, "split {split}");
            assert_eq!(out[0], Inbound::Text(Bytes::from_static(b"hello")));
            assert_eq!(out[1], Inbound::Ping(Bytes::from_static(b"p")));
            assert!(matches!(&out[2], Inbound::Text(t) if t.len() == 70_000));
            assert_eq!(reader.partial.capacity(), 0, "no buffer held when idle");
        }
    }

    #[test]
    fn assembles_fragments_with_interleaved_control_frames() {
        let mut stream = client_frame(false, OP_TEXT, b"he");
        stream.extend(client_frame(true, OP_PING, b""));
        stream.extend(client_frame(false, OP_CONTINUATION, b"ll"));
        stream.extend(client_frame(true, OP_CONTINUATION, b"o"));
        let out = feed_all(&mut Reader::default(), &stream).expect("valid");
        assert_eq!(out, vec![Inbound::Ping(Bytes::new()), Inbound::Text(Bytes::from_static(b"hello"))]);
    }

    #[test]
    fn refuses_protocol_violations() {
        let unmasked = [FIN | OP_TEXT, 1, b'x'];
        let cases: Vec<(Vec<u8>, CloseCode)> = vec![
            (unmasked.to_vec(), CloseCode::ProtocolError),
            (
                {
                    let mut f = client_frame(true, OP_TEXT, b"x");
                    f[0] |= 0x40;
                    f
                },
                CloseCode::ProtocolError,
            ),
            (client_frame(true, 0x3, b""), CloseCode::ProtocolError),
            (client_frame(false, OP_PING, b""), CloseCode::ProtocolError),
            (client_frame(true, OP_PING, &[0; 126]), CloseCode::ProtocolError),
            (client_frame(true, OP_CONTINUATION, b"x"), CloseCode::ProtocolError),
            (
                {
                    let mut f = client_frame(false, OP_TEXT, b"a");
                    f.extend(client_frame(true, OP_TEXT, b"b"));
                    f
                },
                CloseCode::ProtocolError,
            ),
            (client_frame(true, OP_TEXT, &[0xff, 0xfe]), CloseCode::InvalidPayload),
            (client_frame(true, OP_CLOSE, &[3]), CloseCode::ProtocolError),
            (client_frame(true, OP_CLOSE, &1005u16.to_be_bytes()), CloseCode::ProtocolError),
            (client_frame(true, OP_CLOSE, &[0x03, 0xe8, 0xff]), CloseCode::InvalidPayload),
        ];
        for (bytes, code) in cases {
            let err = feed_all(&mut Reader::default(), &bytes).expect_err("must be refused");
            assert_eq!(err.close_code(), code, "{err}");
        }
    }

    #[test]
    fn enforces_the_size_limit_before_buffering() {
        let mut reader = Reader::default();
        let mut out = Vec::new();
        // Only the header of a 10 MB frame: refused at once, nothing buffered.
        let header = [FIN | OP_TEXT, 0x80 | 127, 0, 0, 0, 0, 0, 0x98, 0x96, 0x80];
        assert_eq!(reader.feed(&header, 65_536, &mut out), Err(FrameError::TooBig(65_536)));
        // Fragments that add up past the limit.
        let mut stream = client_frame(false, OP_TEXT, &[b'a'; 40_000]);
        stream.extend(client_frame(true, OP_CONTINUATION, &[b'a'; 40_000]));
        assert_eq!(Reader::default().feed(&stream, 65_536, &mut out), Err(FrameError::TooBig(65_536)));
        let huge_len = [FIN | OP_TEXT, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(Reader::default().feed(&huge_len, 65_536, &mut out), Err(FrameError::Protocol(_))));
    }

    #[test]
    fn close_frames() {
        let out = feed_all(&mut Reader::default(), &client_frame(true, OP_CLOSE, &[0x03, 0xe8, b'b', b'y', b'e']))
            .expect("valid");
        assert_eq!(out, vec![Inbound::Close(Some((1000, "bye".into())))]);
        let out = feed_all(&mut Reader::default(), &client_frame(true, OP_CLOSE, b"")).expect("valid");
        assert_eq!(out, vec![Inbound::Close(None)]);
        let long = "é".repeat(100);
        let frame = close_frame(4100, &long);
        assert!(frame.len() <= 2 + 125);
        assert!(std::str::from_utf8(&frame[4..]).is_ok(), "cut at a char boundary");
    }

    #[test]
    fn server_frames_have_minimal_headers() {
        assert_eq!(&text_frame(b"hi")[..], &[0x81, 2, b'h', b'i']);
        assert_eq!(&text_frame(&[b'x'; 200])[..4], &[0x81, 126, 0, 200]);
        assert_eq!(&text_frame(&vec![b'x'; 70_000])[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(&PING[..], &[0x89, 0]);
    }
}

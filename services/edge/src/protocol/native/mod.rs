//! The native protocol, `signalbox.json.v1` (docs/protocol.md): its codec, and its entry
//! `GET /client`.

mod codec;
mod connect;

pub(crate) use codec::{Native, encode_presence};
pub(crate) use connect::upgrade;

//! End-to-end tests of a real Signalbox over real sockets.

mod cluster;
mod history;
mod http_limits;
mod isolation;
mod json_limits;
mod lifecycle;
mod limits;
mod messaging;
mod observability;
mod openapi_doc;
mod presence;
mod protocol_errors;
mod reliability;
mod rest_errors;
mod restart;
mod signalr;
mod stateful_reconnect;
mod tokens;
mod webhooks;

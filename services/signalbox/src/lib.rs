//! The one Signalbox binary, as a library so tests can start any role in-process.
//!
//! # Layout
//! - [`embedded`]: `signalbox serve` — api, edge, SQLite and the in-process bus on one port,
//!   with no configuration;
//! - [`cluster`]: `signalbox api` and `signalbox edge` against Postgres and NATS;
//! - `health`: `/healthz`, `/readyz`, `/metrics`, shared by every role;
//! - `http_metrics`: request counts, durations and server spans for every role's HTTP;
//! - [`telemetry`]: logs, the metrics recorder, OpenTelemetry traces;
//! - [`cli`]: the command line (every flag also reads a `SIGNALBOX_*` variable).

pub mod cli;
pub mod cluster;
pub mod embedded;
mod health;
mod http_metrics;
pub mod telemetry;

/// The fewest characters an operator token may have. The token grants everything, so it must
/// not be guessable: `openssl rand -hex 32` gives 64, the generated one has 44.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// Refuses an operator token shorter than [`MIN_ADMIN_TOKEN_CHARS`]; `from` says where it came
/// from (for the message).
pub fn check_admin_token(token: &str, from: &str) -> anyhow::Result<()> {
    let length = token.chars().count();
    if length < MIN_ADMIN_TOKEN_CHARS {
        anyhow::bail!(
            "the operator token from {from} has {length} characters; at least {MIN_ADMIN_TOKEN_CHARS} are required \
             (make one with `openssl rand -hex 32`)"
        );
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = interrupt => tracing::info!("SIGINT received: shutting down"),
            () = terminate => tracing::info!("SIGTERM received: shutting down"),
        }
    }
}

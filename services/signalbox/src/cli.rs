//! The command line. Every flag also reads a `SIGNALBOX_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use signalbox_api::{AccountLimits, TargetPolicy};
use signalbox_core::{AppId, NodeId};
use signalbox_edge::EdgeConfig;
use signalbox_edge::http::HttpLimits;
use signalbox_proto::Subjects;

use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "signalbox", version, about = "Signalbox: a serverless realtime platform")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, global = true, env = "SIGNALBOX_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process, with SQLite and no configuration (the default way to start).
    Serve(ServeArgs),
    /// Run the REST API of a cluster (Postgres + NATS).
    Api(ApiArgs),
    /// Run an edge node of a cluster (NATS; no database).
    Edge(EdgeArgs),
    /// Apply the database schema migrations.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct EdgeTuning {
    /// Seconds between server pings; a connection silent for two intervals is closed.
    #[arg(long, env = "SIGNALBOX_HEARTBEAT_SECONDS", default_value_t = 20)]
    pub heartbeat_seconds: u64,
    /// Client connections this node accepts in total.
    #[arg(long, env = "SIGNALBOX_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,
    /// Bytes a connection may have queued before it is closed as a slow consumer.
    #[arg(long, env = "SIGNALBOX_OUTBOX_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub outbox_max_bytes: usize,
    /// Apps (comma-separated ids, at most 50) whose connection count is also exported with
    /// an `app` label; every other app is counted only in the totals.
    #[arg(long, env = "SIGNALBOX_METRICS_APPS", value_delimiter = ',', value_parser = parse_app_id)]
    pub metrics_apps: Vec<AppId>,
}

/// Labelled apps are an explicit short list: each is one more series on every edge.
const MAX_METRICS_APPS: usize = 50;

fn parse_app_id(raw: &str) -> Result<AppId, String> {
    AppId::new(raw.trim()).map_err(|e| e.to_string())
}

impl EdgeTuning {
    pub fn apply(&self, config: &mut EdgeConfig) -> anyhow::Result<()> {
        if self.metrics_apps.len() > MAX_METRICS_APPS {
            anyhow::bail!("--metrics-apps lists {} apps; at most {MAX_METRICS_APPS}", self.metrics_apps.len());
        }
        config.heartbeat_interval = Duration::from_secs(self.heartbeat_seconds.max(1));
        config.max_connections = self.max_connections;
        config.outbox_max_bytes = self.outbox_max_bytes;
        config.metrics_apps = self.metrics_apps.clone();
        Ok(())
    }
}

/// The HTTP server's limits and the metrics listener, for every role (docs/operations.md,
/// "HTTP limits").
#[derive(Debug, Args)]
pub struct HttpTuning {
    /// Where `/metrics` (Prometheus text) is served. Never on the public port: give
    /// `0.0.0.0:9090` only where the network keeps it private (a pod's metrics port).
    #[arg(long, env = "SIGNALBOX_METRICS_LISTEN", default_value = "127.0.0.1:9090")]
    pub metrics_listen: SocketAddr,
    /// HTTP connections served at once (a WebSocket leaves the count once upgraded).
    #[arg(long, env = "SIGNALBOX_MAX_HTTP_CONNECTIONS", default_value_t = 4096)]
    pub max_http_connections: usize,
    /// HTTP connections one source address may hold at once (0: no limit; behind a proxy,
    /// every connection comes from the proxy).
    #[arg(long, env = "SIGNALBOX_MAX_CONNECTIONS_PER_IP", default_value_t = 512)]
    pub max_connections_per_ip: usize,
    /// Requests one source address may have in flight before they are authenticated (0: no
    /// limit); more get 429.
    #[arg(long, env = "SIGNALBOX_MAX_UNAUTHENTICATED_PER_IP", default_value_t = 64)]
    pub max_unauthenticated_per_ip: usize,
    /// Seconds a client may take to send a request's headers (and an idle keep-alive
    /// connection stays open).
    #[arg(long, env = "SIGNALBOX_HEADER_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_seconds: u64,
    /// Seconds a client may take to send a request's body; late: 408, connection closed.
    #[arg(long, env = "SIGNALBOX_BODY_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_seconds: u64,
    /// Seconds a request may take until its response starts (not WebSockets, event streams
    /// and long polls, which have their own bounds); late: 503.
    #[arg(long, env = "SIGNALBOX_REQUEST_TIMEOUT_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_seconds: u64,
}

impl HttpTuning {
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            max_connections: self.max_http_connections.max(1),
            max_connections_per_ip: self.max_connections_per_ip,
            max_unauthenticated_per_ip: self.max_unauthenticated_per_ip,
            header_timeout: Duration::from_secs(self.header_timeout_seconds),
            body_timeout: Duration::from_secs(self.body_timeout_seconds),
            request_timeout: Duration::from_secs(self.request_timeout_seconds),
            // Set by the roles that hold client connections, from their idle timeout.
            peer_stall_timeout: None,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SIGNALBOX_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the database, the operator token and the master key live.
    #[arg(long, env = "SIGNALBOX_DATA_DIR", default_value = "./signalbox-data")]
    pub data_dir: PathBuf,
    /// The operator token (default: generated on first start and saved in the data dir).
    #[arg(long, env = "SIGNALBOX_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The master key, base64 of 32 bytes (default: generated and saved in the data dir).
    #[arg(long, env = "SIGNALBOX_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Address ranges webhooks may reach besides public ones: `loopback`, `private`,
    /// `link-local` (comma-separated), or `none`. To call a webhook on this machine while
    /// developing, pass `--webhook-allow loopback`. Cloud metadata services need `link-local`.
    #[arg(long, env = "SIGNALBOX_WEBHOOK_ALLOW", default_value = "none", value_parser = parse_target_policy)]
    pub webhook_allow: TargetPolicy,
    #[command(flatten)]
    pub limits: TenantLimits,
    #[command(flatten)]
    pub edge: EdgeTuning,
    #[command(flatten)]
    pub http: HttpTuning,
}

/// What one tenant may create (the api's limits; reaching one answers 409 `limit_reached`).
#[derive(Debug, Args)]
pub struct TenantLimits {
    /// Apps one tenant may have.
    #[arg(long, env = "SIGNALBOX_MAX_APPS_PER_TENANT", default_value_t = AccountLimits::default().apps_per_tenant)]
    pub max_apps_per_tenant: u32,
    /// Keys one app may have that are not revoked.
    #[arg(long, env = "SIGNALBOX_MAX_KEYS_PER_APP", default_value_t = AccountLimits::default().live_keys_per_app)]
    pub max_keys_per_app: u32,
}

impl TenantLimits {
    pub fn limits(&self) -> AccountLimits {
        AccountLimits { apps_per_tenant: self.max_apps_per_tenant, live_keys_per_app: self.max_keys_per_app }
    }
}

/// Parses `--webhook-allow`.
fn parse_target_policy(raw: &str) -> Result<TargetPolicy, String> {
    let mut policy = TargetPolicy::default();
    for range in raw.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        match range {
            "loopback" => policy.loopback = true,
            "private" => policy.private = true,
            "link-local" => policy.link_local = true,
            "none" => {}
            other => return Err(format!("unknown range {other:?} (loopback, private, link-local, none)")),
        }
    }
    Ok(policy)
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    #[arg(long, env = "SIGNALBOX_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE
    #[arg(long, env = "SIGNALBOX_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// One or more NATS URLs, comma-separated.
    #[arg(long, env = "SIGNALBOX_NATS_URL")]
    pub nats_url: String,
    /// The operator token.
    #[arg(long, env = "SIGNALBOX_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// The master key, base64 of 32 bytes (`openssl rand -base64 32`).
    #[arg(long, env = "SIGNALBOX_MASTER_KEY", hide_env_values = true)]
    pub master_key: String,
    /// The root of every NATS subject (to share a NATS cluster between deployments).
    #[arg(long, env = "SIGNALBOX_SUBJECT_PREFIX", default_value = "sb")]
    pub subject_prefix: String,
    /// Replicas of the JetStream streams this node creates: 1, or 3 on a 3-node NATS cluster.
    #[arg(long, env = "SIGNALBOX_NATS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_replicas: u8,
    /// Address ranges webhooks may reach besides public ones: `loopback`, `private`,
    /// `link-local` (comma-separated), or `none`. Cloud metadata services need `link-local`.
    #[arg(long, env = "SIGNALBOX_WEBHOOK_ALLOW", default_value = "none", value_parser = parse_target_policy)]
    pub webhook_allow: TargetPolicy,
    #[command(flatten)]
    pub limits: TenantLimits,
    #[command(flatten)]
    pub http: HttpTuning,
}

#[derive(Debug, Args)]
pub struct EdgeArgs {
    #[arg(long, env = "SIGNALBOX_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    #[arg(long, env = "SIGNALBOX_NATS_URL")]
    pub nats_url: String,
    /// This node's id (default: random per start).
    #[arg(long, env = "SIGNALBOX_NODE_ID")]
    pub node_id: Option<String>,
    #[arg(long, env = "SIGNALBOX_SUBJECT_PREFIX", default_value = "sb")]
    pub subject_prefix: String,
    /// Replicas of the JetStream streams this node creates: 1, or 3 on a 3-node NATS cluster.
    #[arg(long, env = "SIGNALBOX_NATS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_replicas: u8,
    /// On SIGTERM, how long to spread the clients' reconnects over (the paced drain).
    #[arg(long, env = "SIGNALBOX_DRAIN_SECONDS", default_value_t = 10)]
    pub drain_seconds: u64,
    #[command(flatten)]
    pub edge: EdgeTuning,
    #[command(flatten)]
    pub http: HttpTuning,
}

impl EdgeArgs {
    pub fn edge_config(&self) -> anyhow::Result<EdgeConfig> {
        let node = match &self.node_id {
            Some(id) => NodeId::new(id).map_err(|e| anyhow::anyhow!("invalid --node-id: {e}"))?,
            None => NodeId::generate(),
        };
        if node.as_str().contains('_') {
            anyhow::bail!("invalid --node-id: it must not contain '_'");
        }
        let mut config = EdgeConfig::new(node, Subjects::new(&self.subject_prefix));
        self.edge.apply(&mut config)?;
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// postgres://… or sqlite:PATH
    #[arg(long, env = "SIGNALBOX_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

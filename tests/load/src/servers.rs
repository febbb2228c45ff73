//! The servers a scenario measures, started as child processes (killed on drop), and the
//! tenant, app, key and tokens it needs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;
use signalbox_sdk::server::{Client, TokenRequest};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Where the binaries are.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) signalbox: PathBuf,
    pub(crate) nats_server: PathBuf,
    /// This tool, for the baseline server and client workers.
    pub(crate) load: PathBuf,
}

/// A child process and the address it serves.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    /// Where a signalbox process serves `/metrics` (its own listener).
    pub(crate) metrics_addr: Option<SocketAddr>,
    child: Child,
}

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    pub(crate) fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts `command` and waits for a stdout line containing `marker` followed by an
    /// `http://ADDR` URL.
    async fn spawn(name: &str, mut command: Command, marker: &str) -> anyhow::Result<Self> {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
        let mut child = command.spawn().with_context(|| format!("cannot start {name}"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split_once(marker).map(|(_, rest)| rest) {
                    let url = rest.trim().trim_start_matches("http://");
                    let addr = url.split('/').next().unwrap_or_default();
                    return Ok::<_, anyhow::Error>(addr.parse::<SocketAddr>()?);
                }
            }
            bail!("{name} exited before it was ready")
        })
        .await
        .with_context(|| format!("{name} did not start in time"))??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { addr, metrics_addr: None, child })
    }

    /// A signalbox command's metrics on a free port of its own, and no per-address limits:
    /// a benchmark opens every connection from one address.
    fn signalbox(bins: &Binaries) -> anyhow::Result<(Command, SocketAddr)> {
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut command = Command::new(&bins.signalbox);
        command
            .env("SIGNALBOX_METRICS_LISTEN", metrics.to_string())
            .env("SIGNALBOX_MAX_CONNECTIONS_PER_IP", "0")
            .env("SIGNALBOX_MAX_UNAUTHENTICATED_PER_IP", "0");
        Ok((command, metrics))
    }

    /// `/metrics` as text.
    pub(crate) async fn metrics(&self) -> anyhow::Result<String> {
        let addr = self.metrics_addr.context("this server has no metrics listener")?;
        Ok(reqwest::get(format!("http://{addr}/metrics")).await?.text().await?)
    }

    /// `signalbox serve` on a free port with its own data directory.
    pub(crate) async fn embedded(bins: &Binaries, data_dir: &Path) -> anyhow::Result<Self> {
        let (mut command, metrics) = Self::signalbox(bins)?;
        command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir).env("SIGNALBOX_LOG", "warn");
        command.env("SIGNALBOX_ADMIN_TOKEN", ADMIN_TOKEN).env("SIGNALBOX_MAX_CONNECTIONS", "200000");
        let server = Self::spawn("signalbox serve", command, "REST API").await?;
        Ok(Self { metrics_addr: Some(metrics), ..server })
    }

    /// A nats-server on a free port.
    pub(crate) async fn nats(bins: &Binaries, store: &Path) -> anyhow::Result<(Self, String)> {
        let port = free_port()?;
        let monitor = free_port()?;
        let mut command = Command::new(&bins.nats_server);
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-m", &monitor.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().context("cannot start nats-server")?;
        let url = format!("nats://127.0.0.1:{port}");
        let health = format!("http://127.0.0.1:{monitor}/healthz?js-enabled-only=true");
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if reqwest::get(&health).await.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .context("nats-server did not become healthy")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Ok((Self { addr, metrics_addr: None, child }, url))
    }

    /// `signalbox migrate` then `signalbox api` on SQLite (benchmarks need no Postgres).
    pub(crate) async fn api(bins: &Binaries, nats_url: &str, data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let database = format!("sqlite:{}", data_dir.join("api.db").display());
        let status = Command::new(&bins.signalbox)
            .args(["migrate", "--database-url", &database])
            .stdout(Stdio::null())
            .status()
            .await?;
        if !status.success() {
            bail!("signalbox migrate failed");
        }
        let (mut command, metrics) = Self::signalbox(bins)?;
        command
            .args(["api", "--listen", "127.0.0.1:0", "--database-url", &database, "--nats-url", nats_url])
            .env("SIGNALBOX_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SIGNALBOX_MASTER_KEY", MASTER_KEY)
            .env("SIGNALBOX_LOG", "warn");
        let server = Self::spawn("signalbox api", command, "listening on").await?;
        Ok(Self { metrics_addr: Some(metrics), ..server })
    }

    pub(crate) async fn edge(bins: &Binaries, nats_url: &str, index: usize) -> anyhow::Result<Self> {
        let (mut command, metrics) = Self::signalbox(bins)?;
        command
            .args(["edge", "--listen", "127.0.0.1:0", "--nats-url", nats_url, "--node-id", &format!("bench{index:03}")])
            .env("SIGNALBOX_MAX_CONNECTIONS", "200000")
            .env("SIGNALBOX_LOG", "warn");
        let server = Self::spawn(&format!("signalbox edge {index}"), command, "listening on").await?;
        Ok(Self { metrics_addr: Some(metrics), ..server })
    }

    /// The minimal tokio-tungstenite broadcast server of the baseline scenario.
    pub(crate) async fn baseline(bins: &Binaries) -> anyhow::Result<Self> {
        let mut command = Command::new(&bins.load);
        command.arg("baseline-server");
        Self::spawn("baseline server", command, "listening on").await
    }
}

pub(crate) const ADMIN_TOKEN: &str = "sba_benchmark_operator_token_0000000000";
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A tenant's app with a key, as a benchmark sees it.
#[derive(Debug, Clone)]
pub(crate) struct BenchApp {
    pub(crate) id: String,
    pub(crate) backend: Client,
    pub(crate) credential: String,
}

impl BenchApp {
    /// Creates a tenant, an app without limits in the way, and a key.
    pub(crate) async fn create(api: &str) -> anyhow::Result<Self> {
        Self::create_with_operator(api, ADMIN_TOKEN).await
    }

    pub(crate) async fn create_with_operator(api: &str, operator_token: &str) -> anyhow::Result<Self> {
        Self::create_with_settings(api, operator_token, json!({})).await
    }

    /// Like [`create`](Self::create), with more settings (`{"presence": …}`).
    pub(crate) async fn create_with_settings(
        api: &str,
        operator_token: &str,
        extra: serde_json::Value,
    ) -> anyhow::Result<Self> {
        let operator = Client::new(api, operator_token)?;
        let tenant = operator.create_tenant("bench").await?;
        let tenant = operator.with_bearer(&tenant.token);
        let mut settings = json!({"limits": {"max_connections": 1_000_000, "client_publish_rate": 10_000, "client_publish_burst": 10_000}});
        if let (Some(settings), serde_json::Value::Object(extra)) = (settings.as_object_mut(), extra) {
            settings.extend(extra);
        }
        let app = tenant.create_app("bench", settings).await?;
        let key = tenant.create_key(&app.id, None, None).await?;
        Ok(Self { id: app.id, backend: tenant.with_bearer(&key.credential), credential: key.credential })
    }

    /// A day-long token that joins `groups` at connect.
    pub(crate) async fn token(&self, groups: &[String]) -> anyhow::Result<String> {
        let request = TokenRequest { groups: groups.to_vec(), ttl_seconds: Some(86_400), ..TokenRequest::default() };
        Ok(self.backend.mint_token(&self.id, &request).await?.token)
    }

    /// The baseline server takes any token and app.
    pub(crate) fn baseline(base: &str) -> anyhow::Result<Self> {
        Ok(Self { id: "app_baseline".into(), backend: Client::new(base, "none")?, credential: "none".into() })
    }
}

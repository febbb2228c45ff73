//! `signalbox serve`: everything in one process on one port — the api, an edge, SQLite and
//! the in-process bus — with no configuration. The operator token and the master key are
//! generated into the data directory on first start (mode 0600) unless given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use signalbox_api::{Api, ApiConfig, MasterKey, Plane, TargetPolicy};
use signalbox_bus::{Bus, EventQueue, Journal, LocalBus, LocalEventQueue, LocalIdempotency, LocalJournal};
use signalbox_core::{NodeId, ids};
use signalbox_edge::http::HttpLimits;
use signalbox_edge::{Edge, EdgeConfig};
use signalbox_proto::Subjects;
use signalbox_store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::health;

/// How long shutdown waits for WebSocket clients to finish their close handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What `serve` needs; everything has a default.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The operator token; generated and saved in the data dir when absent.
    pub admin_token: Option<String>,
    /// The master key (base64, 32 bytes); generated and saved in the data dir when absent.
    pub master_key: Option<String>,
    /// The edge's tuning (heartbeats, queues, limits).
    pub edge: EdgeConfig,
    /// Where webhooks may be sent (by default this machine and private networks too: this is
    /// for local development).
    pub webhook_targets: TargetPolicy,
    /// The HTTP server's connection caps and deadlines.
    pub http: HttpLimits,
    /// Where `/metrics` is served (never on `listen`); `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
}

impl ServeConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        let edge = EdgeConfig::new(NodeId::generate(), Subjects::default());
        Self {
            listen,
            data_dir,
            admin_token: None,
            master_key: None,
            edge,
            webhook_targets: TargetPolicy::development(),
            http: HttpLimits::default(),
            metrics_listen: None,
        }
    }
}

/// A running embedded Signalbox.
#[derive(Debug)]
pub struct Embedded {
    addr: SocketAddr,
    admin_token: String,
    admin_token_generated: bool,
    data_dir: PathBuf,
    edge: Arc<Edge>,
    metrics: Option<health::MetricsListener>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    bus_task: JoinHandle<()>,
    dispatcher: Vec<JoinHandle<()>>,
    store: Store,
}

/// Reads a secret from `path`, or generates one with `generate` and saves it (mode 0600).
/// Returns the secret and whether it was generated now.
fn load_or_create(path: &Path, generate: impl FnOnce() -> String) -> anyhow::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(existing) => Ok((existing.trim().to_owned(), false)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let secret = generate();
            write_private(path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
            Ok((secret, true))
        }
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")
}

impl Embedded {
    /// Opens the data dir and the database, starts the api and the edge, and serves.
    pub async fn start(config: ServeConfig) -> anyhow::Result<Self> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict {}", data_dir.display()))?;
        }
        let (admin_token, admin_token_generated) = match config.admin_token.filter(|t| !t.trim().is_empty()) {
            Some(token) => (token, false),
            None => load_or_create(&data_dir.join("admin-token"), || format!("sba_{}", ids::random_token(40)))?,
        };
        let master_key = match config.master_key {
            Some(key) => key,
            None => load_or_create(&data_dir.join("master.key"), MasterKey::generate_base64)?.0,
        };
        let master_key = MasterKey::from_base64(&master_key).context("invalid master key")?;

        let database = data_dir.join("signalbox.db");
        let store =
            Store::connect(&format!("sqlite:{}", database.display())).await.context("cannot open the database")?;
        store.migrate().await.context("cannot migrate the database")?;

        let local = LocalBus::new();
        let subjects = config.edge.subjects.clone();
        let journal: Arc<dyn Journal> = Arc::new(LocalJournal::new(local.clone(), subjects.clone()));
        let bus: Arc<dyn Bus> = Arc::new(local);
        let events: Arc<dyn EventQueue> = Arc::new(LocalEventQueue::new());
        let plane = Plane {
            bus: Arc::clone(&bus),
            journal: Arc::clone(&journal),
            idempotency: Arc::new(LocalIdempotency::new()),
            events: Arc::clone(&events),
        };
        let mut api_config = ApiConfig::new(subjects, admin_token.clone(), master_key);
        api_config.webhook_targets = config.webhook_targets;
        let api = Api::new(api_config, store.clone(), plane);
        let bus_task = api.serve_bus().await.context("cannot start the api's bus service")?;
        let dispatcher = api.start_dispatcher();
        let edge = Arc::new(Edge::start(config.edge, bus, journal, events).await.context("cannot start the edge")?);

        let readiness = {
            let (api, edge) = (api.clone(), Arc::clone(&edge));
            Arc::new(move || {
                let (api, edge) = (api.clone(), Arc::clone(&edge));
                Box::pin(async move {
                    if !edge.is_ready() {
                        return Err("the edge is draining".to_owned());
                    }
                    if !api.is_ready().await {
                        return Err("the database does not answer".to_owned());
                    }
                    Ok(())
                }) as std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
            })
        };
        let router = api
            .router()
            .merge(edge.router())
            .merge(health::router(readiness))
            .fallback(signalbox_api::error::not_found)
            .method_not_allowed_fallback(signalbox_api::error::method_not_allowed)
            .layer(axum::middleware::from_fn(crate::http_metrics::track));

        let listener =
            TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let metrics = health::start_metrics(config.metrics_listen).await?;
        let server = tokio::spawn(signalbox_edge::http::serve(listener, router, config.http, async {
            let _ = stopped.await;
        }));
        tracing::info!(%addr, data_dir = %data_dir.display(), "signalbox serving (embedded)");
        Ok(Self {
            addr,
            admin_token,
            admin_token_generated,
            data_dir,
            edge,
            metrics,
            stop: Some(stop),
            server,
            bus_task,
            dispatcher,
            store,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`, for REST and docs.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://HOST:PORT/client`, for clients.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/client", self.addr)
    }

    /// Where `/metrics` is served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(health::MetricsListener::addr)
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Whether the operator token was generated by this start (so it should be shown).
    pub fn admin_token_generated(&self) -> bool {
        self.admin_token_generated
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Client connections open right now.
    pub fn connection_count(&self) -> usize {
        self.edge.connection_count()
    }

    /// The ids of the connections open right now.
    pub fn connection_ids(&self) -> Vec<String> {
        self.edge.connection_ids()
    }

    /// Subscriptions the edge holds (including ones lingering after their last member left).
    pub fn interest_count(&self) -> usize {
        self.edge.interest_count()
    }

    /// Closes every client connection (1001), stops serving and closes the database.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.edge.shutdown(SHUTDOWN_GRACE).await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.server).await.context("server task failed")?.context("server failed")?;
        if let Some(metrics) = self.metrics.take() {
            metrics.stop().await?;
        }
        self.bus_task.abort();
        for task in &self.dispatcher {
            task.abort();
        }
        self.store.close().await;
        Ok(())
    }
}

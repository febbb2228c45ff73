//! The cluster roles: `signalbox api` (REST against Postgres, answering edges over NATS) and
//! `signalbox edge` (client connections, no database), each on its own port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use signalbox_api::{AccountLimits, Api, ApiConfig, MasterKey, Plane, TargetPolicy};
use signalbox_bus::{Bus, EventQueue, Journal, NatsBus, NatsConfig, NatsEventQueue, NatsIdempotency, NatsJournal};
use signalbox_edge::http::HttpLimits;
use signalbox_edge::{Edge, EdgeConfig};
use signalbox_proto::Subjects;
use signalbox_store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::health::{self, MetricsListener, ReadinessCheck};

const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How a role serves HTTP: its public address, the limits there, and where `/metrics` is.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub limits: HttpLimits,
    /// Where `/metrics` is served (never on `listen`); `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
}

impl HttpConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self { listen, limits: HttpLimits::default(), metrics_listen: None }
    }
}

/// A role serving HTTP until shut down.
#[derive(Debug)]
struct Serving {
    addr: SocketAddr,
    metrics: Option<MetricsListener>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Serving {
    async fn start(http: HttpConfig, router: axum::Router) -> anyhow::Result<Self> {
        let listen = http.listen;
        let router = router
            .fallback(signalbox_api::error::not_found)
            .method_not_allowed_fallback(signalbox_api::error::method_not_allowed)
            .layer(axum::middleware::from_fn(crate::http_metrics::track));
        let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let metrics = health::start_metrics(http.metrics_listen).await?;
        let server = tokio::spawn(signalbox_edge::http::serve(listener, router, http.limits, async {
            let _ = stopped.await;
        }));
        Ok(Self { addr, metrics, stop: Some(stop), server })
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.server).await.context("server task failed")?.context("server failed")?;
        if let Some(metrics) = self.metrics.take() {
            metrics.stop().await?;
        }
        Ok(())
    }
}

fn readiness<F, Fut>(check: F) -> ReadinessCheck
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move || Box::pin(check()))
}

/// How `signalbox api` runs.
#[derive(Debug, Clone)]
pub struct ApiRoleConfig {
    pub http: HttpConfig,
    pub database_url: String,
    pub nats_url: String,
    /// Replicas of the JetStream resources this node creates.
    pub nats_replicas: usize,
    pub admin_token: String,
    pub master_key: String,
    pub subjects: Subjects,
    /// Where webhooks may be sent besides public addresses.
    pub webhook_targets: TargetPolicy,
    pub limits: AccountLimits,
}

/// A running api node.
#[derive(Debug)]
pub struct ApiRole {
    serving: Serving,
    bus_task: JoinHandle<()>,
    dispatcher: Vec<JoinHandle<()>>,
    store: Store,
}

impl ApiRole {
    pub async fn start(config: ApiRoleConfig) -> anyhow::Result<Self> {
        crate::check_admin_token(&config.admin_token, "--admin-token / SIGNALBOX_ADMIN_TOKEN")?;
        let master_key = MasterKey::from_base64(&config.master_key).context("invalid master key")?;
        let store = Store::connect(&config.database_url).await.context("cannot connect to the database")?;
        signalbox_api::verify_master_key(&store, &master_key).await?;
        let mut nats_config = NatsConfig::new(&config.nats_url, "signalbox-api");
        nats_config.replicas = config.nats_replicas;
        let nats = NatsBus::connect(&nats_config).await?;
        let plane = Plane {
            journal: Arc::new(NatsJournal::new(&nats, config.subjects.clone())),
            idempotency: Arc::new(NatsIdempotency::new(&nats, &config.subjects.resource_prefix())),
            events: Arc::new(NatsEventQueue::new(&nats, config.subjects.clone())),
            bus: Arc::new(nats),
        };
        let mut api_config = ApiConfig::new(config.subjects, config.admin_token, master_key);
        api_config.webhook_targets = config.webhook_targets;
        api_config.limits = config.limits;
        let api = Api::new(api_config, store.clone(), plane);
        let bus_task = api.serve_bus().await.context("cannot subscribe to edge requests")?;
        let dispatcher = api.start_dispatcher();
        let ready = {
            let api = api.clone();
            readiness(move || {
                let api = api.clone();
                async move { if api.is_ready().await { Ok(()) } else { Err("NATS or the database is unreachable".into()) } }
            })
        };
        let serving = Serving::start(config.http, api.router().merge(health::router(ready))).await?;
        tracing::info!(addr = %serving.addr, "signalbox api serving");
        Ok(Self { serving, bus_task, dispatcher, store })
    }

    pub fn addr(&self) -> SocketAddr {
        self.serving.addr
    }

    /// Where `/metrics` is served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.serving.metrics.as_ref().map(MetricsListener::addr)
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.serving.stop().await?;
        self.bus_task.abort();
        for task in &self.dispatcher {
            task.abort();
        }
        self.store.close().await;
        Ok(())
    }
}

/// How `signalbox edge` runs.
#[derive(Debug, Clone)]
pub struct EdgeRoleConfig {
    pub http: HttpConfig,
    pub nats_url: String,
    /// Replicas of the JetStream resources this node creates.
    pub nats_replicas: usize,
    pub edge: EdgeConfig,
}

/// A running edge node.
#[derive(Debug)]
pub struct EdgeRole {
    serving: Serving,
    edge: Arc<Edge>,
}

impl EdgeRole {
    pub async fn start(mut config: EdgeRoleConfig) -> anyhow::Result<Self> {
        let name = format!("signalbox-edge-{}", config.edge.node);
        // A peer that takes nothing for an idle timeout is gone, whatever the transport.
        config.http.limits.peer_stall_timeout.get_or_insert(config.edge.idle_timeout());
        let mut nats_config = NatsConfig::new(&config.nats_url, name);
        nats_config.replicas = config.nats_replicas;
        let nats = NatsBus::connect(&nats_config).await?;
        let journal: Arc<dyn Journal> = Arc::new(NatsJournal::new(&nats, config.edge.subjects.clone()));
        let events: Arc<dyn EventQueue> = Arc::new(NatsEventQueue::new(&nats, config.edge.subjects.clone()));
        let bus: Arc<dyn Bus> = Arc::new(nats);
        let edge = Arc::new(Edge::start(config.edge, bus, journal, events).await.context("cannot start the edge")?);
        let ready = {
            let edge = Arc::clone(&edge);
            readiness(move || {
                let ready = edge.is_ready();
                async move { if ready { Ok(()) } else { Err("NATS is unreachable or the edge is draining".into()) } }
            })
        };
        let serving = Serving::start(config.http, edge.router().merge(health::router(ready))).await?;
        tracing::info!(addr = %serving.addr, "signalbox edge serving");
        Ok(Self { serving, edge })
    }

    pub fn addr(&self) -> SocketAddr {
        self.serving.addr
    }

    /// Where `/metrics` is served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.serving.metrics.as_ref().map(MetricsListener::addr)
    }

    /// Drains (clients told to reconnect elsewhere, paced over `period`), then stops; another
    /// signal during the drain closes the remaining clients at once (1001).
    pub async fn shutdown(self, period: Duration) -> anyhow::Result<()> {
        tokio::select! {
            () = self.edge.drain(period, SHUTDOWN_GRACE) => {}
            () = crate::shutdown_signal() => {
                tracing::info!("second signal: closing the remaining connections now");
                self.edge.shutdown(SHUTDOWN_GRACE).await;
            }
        }
        self.serving.stop().await
    }
}

/// `signalbox migrate`: applies the schema migrations of the database's backend.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let store = Store::connect(database_url).await.context("cannot connect to the database")?;
    store.migrate().await.context("migration failed")?;
    store.close().await;
    Ok(())
}

//! A real cluster for tests: a `nats-server`, a Postgres database, `signalbox migrate`, one
//! `signalbox api` and N `signalbox edge` processes, each on its own free port.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use signalbox_sdk::server::Client;
use signalbox_test_support::{NatsServer, Process, TestDatabase, signalbox_binary};

use crate::{DEADLINE, TestApp, eventually};

/// A base64 32-byte master key, fixed for tests.
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const ADMIN_TOKEN: &str = "sba_cluster_test_operator_token_0123456789";

/// One `signalbox` process and where it listens.
#[derive(Debug)]
pub struct Node {
    pub process: Process,
    pub addr: SocketAddr,
    /// Where its `/metrics` is (a listener of its own).
    pub metrics_addr: SocketAddr,
}

impl Node {
    fn start(role: &str, name: &str, args: &[String], env: &[(String, String)]) -> Self {
        let mut command = Command::new(signalbox_binary());
        command.envs(env.iter().map(|(k, v)| (k, v)));
        // SIGNALBOX_TEST_NODE_LOG=debug shows what the nodes do when a test needs explaining.
        let log = std::env::var("SIGNALBOX_TEST_NODE_LOG").unwrap_or_else(|_| "warn".into());
        command.arg(role).args(args).args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]);
        command.env("SIGNALBOX_LOG", log);
        let process = Process::spawn(name, command);
        let parse = |rest: String| -> SocketAddr {
            let addr = rest.trim().trim_end_matches("/metrics");
            addr.parse().unwrap_or_else(|e| panic!("{name}: bad address {rest:?}: {e}"))
        };
        // The metrics line comes first.
        let metrics_addr = parse(process.wait_for_line(&format!("signalbox {role} metrics on http://"), DEADLINE));
        let addr = parse(process.wait_for_line(&format!("signalbox {role} listening on http://"), DEADLINE));
        Self { process, addr, metrics_addr }
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/client", self.addr)
    }

    /// GET /readyz: true on 200.
    pub async fn is_ready(&self) -> bool {
        match reqwest::get(format!("{}/readyz", self.http_url())).await {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    }

    /// The node's /metrics (from its metrics listener), as text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr);
        reqwest::get(url).await.expect("metrics").text().await.expect("text")
    }
}

#[derive(Debug)]
pub struct Cluster {
    pub nats: NatsServer,
    pub db: TestDatabase,
    /// The first api node.
    pub api: Node,
    /// More api nodes, when asked for.
    pub more_apis: Vec<Node>,
    pub edges: Vec<Node>,
}

/// The shape of a test cluster.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub apis: usize,
    pub edges: usize,
    /// Extra flags for every edge (`--drain-seconds 2`, …).
    pub edge_args: Vec<String>,
    /// Extra flags for every api node (`--webhook-allow loopback`, …).
    pub api_args: Vec<String>,
}

impl Cluster {
    /// Starts NATS, migrates a fresh database, starts the api and `edges` edges, and waits
    /// until every node is ready.
    pub async fn start(edges: usize) -> Self {
        Self::start_shaped(Shape { apis: 1, edges, ..Shape::default() }).await
    }

    pub async fn start_shaped(shape: Shape) -> Self {
        Self::start_with_env(shape, &[]).await
    }

    /// Like [`Cluster::start_shaped`], with extra environment variables for every api and
    /// edge process (`OTEL_*`, …).
    pub async fn start_with_env(shape: Shape, env: &[(String, String)]) -> Self {
        let nats = NatsServer::start();
        let db = TestDatabase::create().await;
        let status = Command::new(signalbox_binary())
            .args(["migrate", "--database-url", &db.url()])
            .env("SIGNALBOX_LOG", "warn")
            .status()
            .expect("run signalbox migrate");
        assert!(status.success(), "signalbox migrate failed");
        let mut api_args = vec![
            "--database-url".into(),
            db.url(),
            "--nats-url".into(),
            nats.url(),
            "--admin-token".into(),
            ADMIN_TOKEN.into(),
            "--master-key".into(),
            MASTER_KEY.into(),
        ];
        api_args.extend(shape.api_args.iter().cloned());
        let api = Node::start("api", "api", &api_args, env);
        let more_apis =
            (1..shape.apis.max(1)).map(|i| Node::start("api", &format!("api {i}"), &api_args, env)).collect();
        let edges = (0..shape.edges).map(|i| Self::start_edge(&nats, i, &shape.edge_args, env)).collect();
        let cluster = Self { nats, db, api, more_apis, edges };
        cluster.wait_ready().await;
        cluster
    }

    fn start_edge(nats: &NatsServer, index: usize, extra: &[String], env: &[(String, String)]) -> Node {
        let node_id = format!("edge{index:04}");
        let mut args = vec![
            "--nats-url".into(),
            nats.url(),
            "--node-id".into(),
            node_id,
            "--heartbeat-seconds".into(),
            "5".into(),
        ];
        args.extend_from_slice(extra);
        Node::start("edge", &format!("edge {index}"), &args, env)
    }

    /// Starts one more edge with extra flags, waits until it is ready, returns its index.
    pub async fn add_edge(&mut self, extra: &[String]) -> usize {
        let index = self.edges.len();
        self.edges.push(Self::start_edge(&self.nats, index, extra, &[]));
        self.wait_ready().await;
        index
    }

    /// Every api node's REST URL.
    pub fn api_urls(&self) -> Vec<String> {
        std::iter::once(&self.api).chain(&self.more_apis).map(Node::http_url).collect()
    }

    /// Waits until every api and every edge answer /readyz with 200.
    pub async fn wait_ready(&self) {
        eventually("every node to be ready", || async {
            for node in std::iter::once(&self.api).chain(&self.more_apis).chain(&self.edges) {
                if !node.is_ready().await {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }

    pub fn operator(&self) -> Client {
        Client::new(&self.api.http_url(), ADMIN_TOKEN).expect("client")
    }

    /// A new tenant with an app and a key; its clients connect to edge 0 unless told otherwise.
    pub async fn app_with(&self, settings: Value) -> TestApp {
        let tenant = self.operator().create_tenant("cluster tenant").await.expect("create tenant");
        let tenant_client = self.operator().with_bearer(&tenant.token);
        let app = tenant_client.create_app("cluster app", settings).await.expect("create app");
        let key = tenant_client.create_key(&app.id, None, None).await.expect("create key");
        TestApp {
            id: app.id,
            ws_url: self.edges[0].ws_url(),
            tenant: tenant_client.clone(),
            backend: tenant_client.with_bearer(&key.credential),
            key_id: key.key.id,
            secret: key.secret,
        }
    }

    pub async fn app(&self) -> TestApp {
        self.app_with(Value::Null).await
    }

    /// The same app, with clients connecting to edge `index`.
    pub fn on_edge(&self, app: &TestApp, index: usize) -> TestApp {
        TestApp { ws_url: self.edges[index].ws_url(), ..app.clone() }
    }
}

/// How long a config change may take to reach every edge (the documented bound).
pub const PROPAGATION_BOUND: Duration = Duration::from_secs(5);

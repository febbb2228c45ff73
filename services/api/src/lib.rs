//! Signalbox's api: the REST API (management and data plane) with its OpenAPI document,
//! and the answers edges ask for over the routing plane (keys, settings, user groups).
//!
//! # Layout
//! - [`Api`] (this file): construction, the router, readiness, control requests to edges;
//! - `routes`: one module per REST resource, each handler with its OpenAPI description;
//! - `auth`: operator, tenant and app-key extractors;
//! - `error`: the one place errors become problem+json (and the middleware that logs them);
//! - `cache`: keys and apps cached for the data plane, invalidated by announcements;
//! - `crypto`: the master key (sealed key secrets) and token hashing;
//! - `bus_serve`: answering edges, and hearing other api nodes' announcements and edges'
//!   heartbeats;
//! - `nodes`: the live edges, from their heartbeats; `presence`: asking them who is where;
//! - [`webhooks`]: the app's upstream — blocking calls, the dispatcher, signing, targets.
//!
//! The api never imports the edge: they meet through `signalbox-proto` and the Bus.

mod auth;
mod bus_serve;
mod cache;
pub mod crypto;
pub mod error;
mod idempotency;
mod nodes;
mod presence;
mod routes;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use signalbox_bus::{Bus, BusError, EventQueue, Idempotency, Journal, QueueGroup};
use signalbox_core::{AppId, ConnectionId, ErrorCode, Scope, UserId};
use signalbox_proto::Subjects;
use signalbox_proto::wire::{
    self, Body, ConfigChange, ConfigChangeKind, ConnectionInfo, Control, ControlOp, ControlReply, ControlStatus,
};
use signalbox_store::Store;
use tokio::task::JoinHandle;
use utoipa_swagger_ui::SwaggerUi;

use cache::Cache;
pub use crypto::{MasterKey, MasterKeyCheckError, verify_master_key};
use error::ApiError;
use nodes::Nodes;
use webhooks::client::WebhookClient;
pub use webhooks::targets::TargetPolicy;

/// The queue group api nodes answer edge requests in: each request goes to one api node.
const API_QUEUE: &str = "signalbox-api";
/// Largest request body: a message at the 1 MiB cap plus its JSON envelope.
const MAX_BODY_BYTES: usize = 1024 * 1024 + 16 * 1024;

/// How the api runs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub subjects: Subjects,
    /// The platform operator's token.
    pub admin_token: String,
    pub master_key: MasterKey,
    /// Timeout of requests to edges (connection info, joins, closes).
    pub request_timeout: Duration,
    /// How long keys and apps stay cached without an announcement.
    pub cache_ttl: Duration,
    /// Which addresses webhooks may be sent to.
    pub webhook_targets: TargetPolicy,
    /// How many apps and keys a tenant may have.
    pub limits: AccountLimits,
}

/// How much a tenant may create: the operator's settings (`--max-apps-per-tenant`,
/// `--max-keys-per-app`). Reaching one answers 409 `limit_reached`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountLimits {
    /// Apps one tenant may have.
    pub apps_per_tenant: u32,
    /// Keys one app may have that are not revoked (two are live during a rotation).
    pub live_keys_per_app: u32,
}

impl Default for AccountLimits {
    fn default() -> Self {
        Self { apps_per_tenant: 100, live_keys_per_app: 10 }
    }
}

impl ApiConfig {
    pub fn new(subjects: Subjects, admin_token: String, master_key: MasterKey) -> Self {
        Self {
            subjects,
            admin_token,
            master_key,
            request_timeout: Duration::from_secs(5),
            cache_ttl: Duration::from_secs(30),
            webhook_targets: TargetPolicy::default(),
            limits: AccountLimits::default(),
        }
    }
}

/// What handlers share.
#[derive(Debug)]
pub(crate) struct ApiState {
    pub(crate) store: Store,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) idempotency: Arc<dyn Idempotency>,
    pub(crate) subjects: Subjects,
    pub(crate) admin_token: String,
    pub(crate) master_key: MasterKey,
    pub(crate) request_timeout: Duration,
    pub(crate) cache: Cache,
    pub(crate) events: Arc<dyn EventQueue>,
    pub(crate) nodes: Nodes,
    pub(crate) webhook_client: WebhookClient,
    pub(crate) limits: AccountLimits,
    /// Woken when deliveries were queued on this node.
    pub(crate) deliveries_waiting: tokio::sync::Notify,
}

/// The api of one node.
#[derive(Debug, Clone)]
pub struct Api {
    state: Arc<ApiState>,
}

/// The routing plane as the api uses it: live routing, group history, idempotency, and the
/// queue of connection events for webhooks.
#[derive(Debug, Clone)]
pub struct Plane {
    pub bus: Arc<dyn Bus>,
    pub journal: Arc<dyn Journal>,
    pub idempotency: Arc<dyn Idempotency>,
    pub events: Arc<dyn EventQueue>,
}

impl Api {
    pub fn new(config: ApiConfig, store: Store, plane: Plane) -> Self {
        let state = ApiState {
            store,
            nodes: Nodes::new(plane.bus.epoch()),
            bus: plane.bus,
            journal: plane.journal,
            idempotency: plane.idempotency,
            subjects: config.subjects,
            admin_token: config.admin_token,
            master_key: config.master_key,
            request_timeout: config.request_timeout,
            cache: Cache::new(config.cache_ttl),
            events: plane.events,
            webhook_client: WebhookClient::new(config.webhook_targets),
            limits: config.limits,
            deliveries_waiting: tokio::sync::Notify::new(),
        };
        Self { state: Arc::new(state) }
    }

    /// The REST API, `/openapi.json` and `/docs`. Unknown routes get a problem+json 404.
    pub fn router(&self) -> Router {
        let (router, openapi) = routes::router().split_for_parts();
        let openapi = routes::openapi::complete(openapi);
        router
            .merge(routes::signalr::router())
            .merge(routes::pusher::router())
            .with_state(Arc::clone(&self.state))
            .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi))
            .method_not_allowed_fallback(error::method_not_allowed)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(axum::middleware::from_fn(error::log_errors))
    }

    /// The OpenAPI document (also served at `/openapi.json`).
    pub fn openapi() -> utoipa::openapi::OpenApi {
        routes::openapi::complete(routes::router().split_for_parts().1)
    }

    /// Starts answering edges over the bus; returns the task doing it.
    pub async fn serve_bus(&self) -> Result<JoinHandle<()>, BusError> {
        let bus = &self.state.bus;
        let subjects = &self.state.subjects;
        let (interest, inbox) = bus.open_inbox();
        interest.subscribe(subjects.api_pattern(), Some(QueueGroup::new(API_QUEUE))).await?;
        interest.subscribe(subjects.config_pattern(), None).await?;
        interest.subscribe(subjects.heartbeat_pattern(), None).await?;
        // Learn the edges now rather than at their next heartbeat (as soon as the bus is up).
        let (roll_bus, roll_call) = (Arc::clone(bus), subjects.roll_call());
        tokio::spawn(async move {
            for _ in 0..1200 {
                if roll_bus.is_connected() && roll_bus.publish(roll_call.clone(), bytes::Bytes::new()).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tracing::warn!("could not call the roll of edges; waiting for their heartbeats");
        });
        let state = Arc::clone(&self.state);
        Ok(tokio::spawn(async move {
            // The interest lives as long as the task: dropping it would end the subscriptions.
            let _interest = interest;
            bus_serve::run(state, inbox).await;
        }))
    }

    /// Starts the webhook dispatcher: ingesting connection events (one api node at a time),
    /// delivering them (every api node), reporting lost edges' disconnects.
    pub fn start_dispatcher(&self) -> Vec<JoinHandle<()>> {
        webhooks::dispatcher::start(Arc::clone(&self.state))
    }

    /// Ready: the store answers and the routing plane is connected.
    pub async fn is_ready(&self) -> bool {
        self.state.bus.is_connected() && self.state.store.ping().await.is_ok()
    }
}

impl ApiState {
    /// Tells every edge and api node that something they cache changed. A failure is logged,
    /// not returned: the change is stored, and caches expire on their own.
    pub(crate) async fn announce(&self, app: &AppId, kind: ConfigChangeKind) {
        let change = ConfigChange { app: app.to_string(), kind: Some(kind) };
        if let Err(err) = self.bus.publish(self.subjects.config(app), wire::encode(Body::ConfigChange(change))).await {
            tracing::warn!(app = %app, error = %err, "could not announce a config change; caches will expire");
        }
    }

    /// Sends a control operation to the node holding `connection` and waits for its answer.
    /// Returns the connection's info for queries.
    pub(crate) async fn control_connection(
        &self,
        scope: &Scope,
        connection: &ConnectionId,
        op: ControlOp,
    ) -> Result<Option<ConnectionInfo>, ApiError> {
        let app = &scope.app;
        let control = Control {
            app: app.to_string(),
            hub: scope.hub.to_string(),
            connection: connection.to_string(),
            user: String::new(),
            op: Some(op),
        };
        let subject = self.connection_subject(app, connection);
        let reply = match self.bus.request(subject, wire::encode(Body::Control(control)), self.request_timeout).await {
            Ok(reply) => reply,
            // No node answers for this id: it is gone, and so is the connection.
            Err(BusError::NoResponders) => return Err(ApiError::NotFound("connection")),
            Err(err) => return Err(ApiError::Unavailable(err)),
        };
        let Ok(Body::ControlReply(ControlReply { status, info, error_code, error_message, .. })) = wire::decode(reply)
        else {
            return Err(ApiError::Internal("an edge sent an unreadable reply"));
        };
        match ControlStatus::try_from(status) {
            Ok(ControlStatus::Done) => Ok(info),
            Ok(ControlStatus::NotFound) => Err(ApiError::NotFound("connection")),
            Ok(ControlStatus::Refused) if error_code == ErrorCode::TooManyGroups.as_str() => {
                Err(ApiError::Refused { code: ErrorCode::TooManyGroups, detail: error_message })
            }
            Ok(ControlStatus::Refused) if error_code == ErrorCode::Unavailable.as_str() => {
                Err(ApiError::Unavailable(BusError::Unavailable))
            }
            _ => Err(ApiError::Internal("an edge refused a control operation")),
        }
    }

    /// Where a connection is reached: its node's subject, or (SignalR connections, whose ids
    /// name no node) the connection's own subject.
    pub(crate) fn connection_subject(&self, app: &AppId, connection: &ConnectionId) -> signalbox_proto::Subject {
        match connection.node() {
            Some(node) => self.subjects.node(&node, app),
            None => self.subjects.connection(app, connection),
        }
    }

    /// Sends a control operation to every connection of a user, on every node.
    pub(crate) async fn control_user(&self, scope: &Scope, user: &UserId, op: ControlOp) -> Result<(), ApiError> {
        let control = Control {
            app: scope.app.to_string(),
            hub: scope.hub.to_string(),
            connection: String::new(),
            user: user.to_string(),
            op: Some(op),
        };
        self.bus.publish(self.subjects.user(scope, user), wire::encode(Body::Control(control))).await?;
        Ok(())
    }
}

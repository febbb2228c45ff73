//! The REST API, for a tenant's backend (app key or tenant token) or an operator.
//!
//! Every call returns the API's JSON as typed values; every failure is an [`Error`], with
//! the problem+json the API sent when it sent one.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error.
    #[error("{status}: {}", problem.detail)]
    Api { status: u16, problem: Problem },
    /// No answer: connection refused, timeout, …
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("invalid base URL: {0}")]
    BaseUrl(String),
}

impl Error {
    /// The HTTP status, if the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem's machine-readable code, if the API answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { problem, .. } => Some(&problem.code),
            _ => None,
        }
    }
}

/// An RFC 9457 problem from the API.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Problem {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub code: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CreatedTenant {
    pub id: String,
    pub name: String,
    /// The tenant's management token (shown once).
    pub token: String,
    pub created_at: i64,
}

/// An app; its settings are the remaining fields (`limits`, …).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct App {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(flatten)]
    pub settings: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Key {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: Key,
    /// Signs client tokens. Shown once.
    pub secret: String,
    /// `{id}.{secret}`: the REST bearer credential.
    pub credential: String,
}

/// One page of a list.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A client token request.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TokenRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct MintedToken {
    pub token: String,
    pub expires_at: u64,
    pub key_id: String,
}

/// A message to publish.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Message {
    pub event: String,
    pub data: Value,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Sent as `Idempotency-Key`: retrying with the same key publishes once.
    #[serde(skip)]
    pub idempotency_key: Option<String>,
}

impl Message {
    pub fn new(event: impl Into<String>, data: Value) -> Self {
        Self { event: event.into(), data, exclude: Vec::new(), idempotency_key: None }
    }

    /// Publishes once per key, however often it is retried (on any api node, for 10 minutes).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Does not deliver to these connections.
    pub fn excluding(mut self, connections: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.exclude.extend(connections.into_iter().map(Into::into));
        self
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Accepted {
    /// The message id.
    pub id: String,
    /// For a group with history: the message's position.
    pub position: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub id: String,
    pub user_id: Option<String>,
    pub groups: Vec<String>,
    pub protocol: String,
    pub transport: String,
    pub node: String,
    pub connected_at: u64,
}

/// A REST client with one credential (operator token, tenant token or app key).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    bearer: String,
}

impl Client {
    /// `base_url` is where Signalbox listens (`http://127.0.0.1:8080`).
    pub fn new(base_url: &str, bearer: impl Into<String>) -> Result<Self, Error> {
        let base = Url::parse(base_url).map_err(|e| Error::BaseUrl(e.to_string()))?;
        if base.cannot_be_a_base() {
            return Err(Error::BaseUrl(format!("{base_url} cannot be a base URL")));
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Self { http, base, bearer: bearer.into() })
    }

    /// The same client with another credential.
    pub fn with_bearer(&self, bearer: impl Into<String>) -> Self {
        Self { http: self.http.clone(), base: self.base.clone(), bearer: bearer.into() }
    }

    /// The same credential against another address (another api node). Panics on an invalid URL.
    pub fn with_base(&self, base_url: &str) -> Self {
        let base = Url::parse(base_url).unwrap_or_else(|e| panic!("invalid base URL {base_url}: {e}"));
        Self { http: self.http.clone(), base, bearer: self.bearer.clone() }
    }

    /// A request with this client's credential, for calls this client has no method for.
    pub fn http_request(&self, method: Method, segments: &[&str]) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(segments)).bearer_auth(&self.bearer)
    }

    /// `segments` are percent-encoded one by one, so names may hold `/`, spaces or anything.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends a request and returns the raw response, for calls this client has no method for.
    pub async fn send(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<reqwest::Response, Error> {
        let mut request = self.http.request(method, self.url(segments)).bearer_auth(&self.bearer);
        if let Some(body) = body {
            request = request.json(body);
        }
        Ok(request.send().await?)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<T, Error> {
        let response = check(self.send(method, segments, body).await?).await?;
        Ok(response.json().await?)
    }

    async fn call_empty(&self, method: Method, segments: &[&str], body: Option<&Value>) -> Result<(), Error> {
        check(self.send(method, segments, body).await?).await?;
        Ok(())
    }

    // Operator -----------------------------------------------------------------------

    pub async fn create_tenant(&self, name: &str) -> Result<CreatedTenant, Error> {
        self.call(Method::POST, &["v1", "tenants"], Some(&serde_json::json!({"name": name}))).await
    }

    // Tenant -------------------------------------------------------------------------

    /// Creates an app; `settings` is an object of settings (`{"limits": {…}}`) or `null`.
    pub async fn create_app(&self, name: &str, settings: Value) -> Result<App, Error> {
        let mut body = match settings {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        body.insert("name".into(), Value::String(name.into()));
        self.call(Method::POST, &["v1", "apps"], Some(&Value::Object(body))).await
    }

    pub async fn list_apps(&self, limit: Option<u32>, cursor: Option<&str>) -> Result<Page<App>, Error> {
        let mut url = self.url(&["v1", "apps"]);
        page_query(&mut url, limit, cursor);
        let response = self.http.get(url).bearer_auth(&self.bearer).send().await?;
        Ok(check(response).await?.json().await?)
    }

    pub async fn get_app(&self, app: &str) -> Result<App, Error> {
        self.call(Method::GET, &["v1", "apps", app], None).await
    }

    /// A JSON merge patch of the app's name and settings.
    pub async fn update_app(&self, app: &str, patch: Value) -> Result<App, Error> {
        self.call(Method::PATCH, &["v1", "apps", app], Some(&patch)).await
    }

    pub async fn delete_app(&self, app: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, &["v1", "apps", app], None).await
    }

    /// Creates a key; `scopes` None means every scope.
    pub async fn create_key(
        &self,
        app: &str,
        name: Option<&str>,
        scopes: Option<&[&str]>,
    ) -> Result<CreatedKey, Error> {
        let body = serde_json::json!({"name": name, "scopes": scopes});
        self.call(Method::POST, &["v1", "apps", app, "keys"], Some(&body)).await
    }

    pub async fn list_keys(&self, app: &str, limit: Option<u32>, cursor: Option<&str>) -> Result<Page<Key>, Error> {
        let mut url = self.url(&["v1", "apps", app, "keys"]);
        page_query(&mut url, limit, cursor);
        let response = self.http.get(url).bearer_auth(&self.bearer).send().await?;
        Ok(check(response).await?.json().await?)
    }

    pub async fn revoke_key(&self, app: &str, key: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, &["v1", "apps", app, "keys", key], None).await
    }

    // App key (or tenant, for tokens) --------------------------------------------------

    pub async fn mint_token(&self, app: &str, request: &TokenRequest) -> Result<MintedToken, Error> {
        let body = serde_json::to_value(request).unwrap_or_default();
        self.call(Method::POST, &["v1", "apps", app, "tokens"], Some(&body)).await
    }

    async fn publish(&self, segments: &[&str], message: &Message) -> Result<Accepted, Error> {
        let mut request = self.http_request(Method::POST, segments).json(message);
        if let Some(key) = &message.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        Ok(check(request.send().await?).await?.json().await?)
    }

    pub async fn broadcast(&self, app: &str, message: &Message) -> Result<Accepted, Error> {
        self.publish(&["v1", "apps", app, "broadcast"], message).await
    }

    pub async fn send_to_user(&self, app: &str, user: &str, message: &Message) -> Result<Accepted, Error> {
        self.publish(&["v1", "apps", app, "users", user, "messages"], message).await
    }

    pub async fn send_to_group(&self, app: &str, group: &str, message: &Message) -> Result<Accepted, Error> {
        self.publish(&["v1", "apps", app, "groups", group, "messages"], message).await
    }

    pub async fn send_to_connection(&self, app: &str, connection: &str, message: &Message) -> Result<Accepted, Error> {
        self.publish(&["v1", "apps", app, "connections", connection, "messages"], message).await
    }

    pub async fn add_connection_to_group(&self, app: &str, group: &str, connection: &str) -> Result<(), Error> {
        self.call_empty(Method::PUT, &["v1", "apps", app, "groups", group, "connections", connection], None).await
    }

    pub async fn remove_connection_from_group(&self, app: &str, group: &str, connection: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, &["v1", "apps", app, "groups", group, "connections", connection], None).await
    }

    /// Adds a user (every current and future connection) to a group, optionally for `ttl_seconds`.
    pub async fn add_user_to_group(
        &self,
        app: &str,
        group: &str,
        user: &str,
        ttl_seconds: Option<u64>,
    ) -> Result<(), Error> {
        let body = ttl_seconds.map(|ttl| serde_json::json!({"ttl_seconds": ttl}));
        self.call_empty(Method::PUT, &["v1", "apps", app, "groups", group, "users", user], body.as_ref()).await
    }

    pub async fn remove_user_from_group(&self, app: &str, group: &str, user: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, &["v1", "apps", app, "groups", group, "users", user], None).await
    }

    pub async fn connection(&self, app: &str, connection: &str) -> Result<ConnectionInfo, Error> {
        self.call(Method::GET, &["v1", "apps", app, "connections", connection], None).await
    }

    /// Closes a connection (close code 4000) with an optional reason.
    pub async fn close_connection(&self, app: &str, connection: &str, reason: Option<&str>) -> Result<(), Error> {
        let mut url = self.url(&["v1", "apps", app, "connections", connection]);
        if let Some(reason) = reason {
            url.query_pairs_mut().append_pair("reason", reason);
        }
        check(self.http.delete(url).bearer_auth(&self.bearer).send().await?).await?;
        Ok(())
    }

    // Webhooks (tenant) --------------------------------------------------------------

    /// Creates a webhook for `events` (`connect`, `connected`, `disconnected`, `event`); the
    /// answer carries its signing `secret`, shown only now.
    pub async fn create_webhook(&self, app: &str, url: &str, events: &[&str]) -> Result<Value, Error> {
        let body = serde_json::json!({"url": url, "events": events});
        self.call(Method::POST, &["v1", "apps", app, "webhooks"], Some(&body)).await
    }

    pub async fn list_webhooks(&self, app: &str) -> Result<Page<Value>, Error> {
        self.call(Method::GET, &["v1", "apps", app, "webhooks"], None).await
    }

    /// Changes `url` or `events`, or rotates the secret (`{"rotate_secret": true}`, then
    /// `{"drop_previous_secret": true}` once receivers use the new one).
    pub async fn update_webhook(&self, app: &str, webhook: &str, patch: Value) -> Result<Value, Error> {
        self.call(Method::PATCH, &["v1", "apps", app, "webhooks", webhook], Some(&patch)).await
    }

    pub async fn delete_webhook(&self, app: &str, webhook: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, &["v1", "apps", app, "webhooks", webhook], None).await
    }

    /// The webhook's delivery log, newest first.
    pub async fn webhook_deliveries(&self, app: &str, webhook: &str) -> Result<Value, Error> {
        self.call(Method::GET, &["v1", "apps", app, "webhooks", webhook, "deliveries"], None).await
    }

    /// Sends a `signalbox.ping` to the webhook now.
    pub async fn test_webhook(&self, app: &str, webhook: &str) -> Result<Value, Error> {
        self.call(Method::POST, &["v1", "apps", app, "webhooks", webhook, "test"], None).await
    }

    // Presence (app key) -------------------------------------------------------------

    /// `{count, connections, members: [{user_id, connections, info?}], next?}`.
    pub async fn group_presence(&self, app: &str, group: &str) -> Result<Value, Error> {
        self.call(Method::GET, &["v1", "apps", app, "groups", group, "presence"], None).await
    }

    /// `{online, connections}`.
    pub async fn user_presence(&self, app: &str, user: &str) -> Result<Value, Error> {
        self.call(Method::GET, &["v1", "apps", app, "users", user, "presence"], None).await
    }

    /// Closes every connection of a user, on every node.
    pub async fn close_user_connections(&self, app: &str, user: &str, reason: Option<&str>) -> Result<(), Error> {
        let mut url = self.url(&["v1", "apps", app, "users", user, "connections"]);
        if let Some(reason) = reason {
            url.query_pairs_mut().append_pair("reason", reason);
        }
        check(self.http.delete(url).bearer_auth(&self.bearer).send().await?).await?;
        Ok(())
    }
}

fn page_query(url: &mut Url, limit: Option<u32>, cursor: Option<&str>) {
    let mut query = url.query_pairs_mut();
    if let Some(limit) = limit {
        query.append_pair("limit", &limit.to_string());
    }
    if let Some(cursor) = cursor {
        query.append_pair("cursor", cursor);
    }
}

/// Turns a non-2xx response into an [`Error::Api`].
async fn check(response: reqwest::Response) -> Result<reqwest::Response, Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.bytes().await.unwrap_or_default();
    let problem = serde_json::from_slice(&body).unwrap_or_else(|_| Problem {
        status: status.as_u16(),
        title: status.canonical_reason().unwrap_or_default().to_owned(),
        detail: String::from_utf8_lossy(&body).into_owned(),
        ..Problem::default()
    });
    Err(Error::Api { status: status.as_u16(), problem })
}

/// Whether an error is worth retrying (a 503 or a transport failure).
pub fn is_retryable(error: &Error) -> bool {
    match error {
        Error::Api { status, .. } => *status == StatusCode::SERVICE_UNAVAILABLE.as_u16(),
        Error::Transport(_) => true,
        Error::BaseUrl(_) => false,
    }
}

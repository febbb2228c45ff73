//! Every HTTP error of the api, built in one place as RFC 9457 problem+json.
//!
//! The response never carries internals: a 5xx says only that something failed. The
//! internal description rides along in the response's extensions, where the logging
//! middleware ([`log_errors`]) picks it up — handlers and this module never log.

use std::fmt;
use std::sync::Arc;

use axum::extract::Request;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use signalbox_bus::BusError;
use signalbox_core::InvalidName;
use signalbox_core::json::JsonLimitError;
use signalbox_core::settings::SettingsError;
use signalbox_store::StoreError;
use utoipa::ToSchema;

/// Where problem types are documented (`docs/rest.md`).
pub const PROBLEM_BASE: &str = "https://signalbox.dev/problems/";

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "1";

/// An RFC 9457 problem, as every error response of the api.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// A stable machine-readable code (`unauthorized`, `invalid_name`, …).
    pub code: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body does not match the schema: {0}")]
    InvalidBody(String),
    /// Valid JSON that clients could not read back once stored and delivered.
    #[error("{0}")]
    InvalidJson(#[from] JsonLimitError),
    #[error("the request must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error("invalid query parameters: {0}")]
    InvalidQuery(String),
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error(transparent)]
    InvalidSettings(#[from] SettingsError),
    #[error("the payload is {size} bytes; the limit is {limit}")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("{0}")]
    Conflict(&'static str),
    /// A tenant reached one of the operator's limits (apps per tenant, keys per app).
    #[error("{0}")]
    LimitReached(String),
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyMismatch,
    /// An edge refused an operation on a connection.
    #[error("{detail}")]
    Refused { code: signalbox_core::ErrorCode, detail: String },
    #[error("the routing plane is unavailable; retry shortly")]
    Unavailable(#[source] BusError),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(&'static str),
    #[error("{0}")]
    NotImplemented(&'static str),
}

impl From<BusError> for ApiError {
    fn from(err: BusError) -> Self {
        match err {
            BusError::TooLarge => Self::PayloadTooLarge { size: 0, limit: 0 },
            other => Self::Unavailable(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => Self::InvalidBody(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => Self::MalformedJson(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::BytesRejection(e) => Self::InvalidBody(e.body_text()),
            other => Self::InvalidBody(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::InvalidQuery(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::NotFound("resource")
    }
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MalformedJson(_) | Self::InvalidJson(_) | Self::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidBody(_)
            | Self::InvalidName(_)
            | Self::InvalidField { .. }
            | Self::InvalidSettings(_)
            | Self::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Conflict(_) | Self::LimitReached(_) | Self::Refused { .. } => StatusCode::CONFLICT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(StoreError::Conflict) => StatusCode::CONFLICT,
            Self::Store(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// The stable code, also the last segment of the problem type.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MalformedJson(_) => "malformed_json",
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidBody(_) => "invalid_body",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidName(_) => "invalid_name",
            Self::InvalidQuery(_) => "invalid_query",
            Self::InvalidField { .. } => "invalid_field",
            Self::InvalidSettings(_) => "invalid_settings",
            // A message over the app's limit: the same code as on the client protocol.
            Self::PayloadTooLarge { limit, .. } if *limit > 0 => "message_too_large",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Conflict(_) | Self::Store(StoreError::Conflict) => "conflict",
            Self::LimitReached(_) => "limit_reached",
            Self::Refused { code, .. } => code.as_str(),
            Self::IdempotencyMismatch => "idempotency_key_reused",
            Self::Unavailable(_) => "unavailable",
            Self::Store(_) | Self::Internal(_) => "internal",
            Self::NotImplemented(_) => "not_implemented",
        }
    }

    /// What the client is told. Server errors say nothing about why.
    fn detail(&self) -> String {
        match self {
            Self::Store(StoreError::Conflict) => "a resource with this id already exists".into(),
            Self::Store(_) | Self::Internal(_) => "an internal error occurred; it has been logged".into(),
            Self::PayloadTooLarge { limit: 0, .. } => "the message is larger than the routing plane accepts".into(),
            other => other.to_string(),
        }
    }
}

/// The internal description of an error, for the logging middleware.
#[derive(Debug, Clone)]
pub struct ErrorContext(pub Arc<str>);

impl fmt::Display for ErrorContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = problem_response(status, self.code(), self.detail());
        if matches!(self, Self::Unavailable(_)) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        if matches!(self, Self::Unauthorized(_)) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        let internal = match &self {
            Self::Store(e) => format!("{e:?}"),
            Self::Unavailable(e) => format!("{e:?}"),
            other => other.to_string(),
        };
        response.extensions_mut().insert(ErrorContext(Arc::from(internal)));
        response
    }
}

/// A problem+json response.
pub fn problem_response(status: StatusCode, code: &str, detail: String) -> Response {
    let problem = Problem {
        kind: format!("{PROBLEM_BASE}{}", code.replace('_', "-")),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        code: code.to_owned(),
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

/// The fallback for unknown routes.
pub async fn not_found() -> Response {
    problem_response(StatusCode::NOT_FOUND, "not_found", "no such route".into())
}

/// The fallback for a known route with the wrong method.
pub async fn method_not_allowed() -> Response {
    problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take this method".into(),
    )
}

/// Logs every error response once, with the request it answered.
pub async fn log_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() || status.is_client_error() {
        let context = response.extensions().get::<ErrorContext>().map(|c| c.to_string()).unwrap_or_default();
        if status.is_server_error() {
            tracing::error!(%method, path, status = status.as_u16(), error = context, "request failed");
        } else {
            tracing::debug!(%method, path, status = status.as_u16(), error = context, "request refused");
        }
    }
    response
}

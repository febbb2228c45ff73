//! The REST routes, one module per resource, and the OpenAPI document generated from them.

mod apps;
mod connections;
mod groups;
mod history;
mod keys;
mod messages;
pub(crate) mod openapi;
mod presence;
pub(crate) mod pusher;
mod schemas;
pub(crate) mod signalr;
mod tenants;
mod tokens;
mod webhooks;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use signalbox_core::{AppId, ConnectionId, GroupName, UserId};
use signalbox_store::{Cursor, PageRequest};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::error::{ApiError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Signalbox REST API",
        description = "Manage tenants, apps and keys; mint client tokens; publish to all, a user, a group or a \
                       connection; manage groups and connections. Errors are RFC 9457 problem+json.",
        license(name = "Apache-2.0")
    ),
    modifiers(&SecuritySchemes),
    components(schemas(Problem)),
    tags(
        (name = "tenants", description = "Customer accounts (operator)"),
        (name = "apps", description = "Apps and their settings (tenant)"),
        (name = "keys", description = "App keys (tenant)"),
        (name = "tokens", description = "Client tokens"),
        (name = "messages", description = "Publishing (app key)"),
        (name = "groups", description = "Group membership (app key)"),
        (name = "connections", description = "Connections (app key)"),
        (name = "presence", description = "Who is online (app key)"),
        (name = "webhooks", description = "The app's upstream: endpoints, delivery log, tests (tenant)"),
    )
)]
pub(crate) struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build(),
            )
        };
        components.add_security_scheme("operator", bearer("The platform operator token (SIGNALBOX_ADMIN_TOKEN)."));
        components.add_security_scheme("tenant", bearer("A tenant's management token (sbt_…)."));
        components.add_security_scheme("app_key", bearer("An app key: `{key_id}.{secret}`."));
    }
}

/// Every route with its OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenants::create_tenant))
        .routes(routes!(apps::create_app, apps::list_apps))
        .routes(routes!(apps::get_app, apps::update_app, apps::delete_app))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(tokens::mint_token))
        .routes(routes!(messages::broadcast))
        .routes(routes!(messages::to_user))
        .routes(routes!(messages::to_group))
        .routes(routes!(history::history))
        .routes(routes!(messages::to_connection))
        .routes(routes!(groups::add_connection, groups::remove_connection))
        .routes(routes!(groups::add_user, groups::remove_user))
        .routes(routes!(connections::get_connection, connections::close_connection))
        .routes(routes!(connections::close_user_connections))
        .routes(routes!(presence::group_presence))
        .routes(routes!(presence::user_presence))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(webhooks::get_webhook, webhooks::update_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::test_webhook))
}

/// A JSON body whose rejections are problem+json.
#[derive(Debug)]
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge { size: 0, limit: 0 })
            }
            Err(rejection) => Err(rejection.into()),
        }
    }
}

/// An optional JSON body: empty means the type's default.
pub(crate) fn optional_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) else { return Ok(T::default()) };
    // serde would also read a struct from a JSON array: the body is documented as an object.
    if *first != b'{' {
        return Err(ApiError::InvalidBody("the body must be a JSON object".into()));
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidBody(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })
}

/// Query parameters whose rejections are problem+json.
#[derive(Debug)]
pub(crate) struct Query<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) = axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// Path parameters whose rejections are problem+json.
#[derive(Debug)]
pub(crate) struct Path<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) = axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// An app id from a path: one that cannot exist is simply not found.
pub(crate) fn app_id(raw: &str) -> Result<AppId, ApiError> {
    AppId::new(raw).map_err(|_| ApiError::NotFound("app"))
}

/// A connection id from a path: a native one (it names its node) or a SignalR one. Anything
/// else cannot exist.
pub(crate) fn connection_id(raw: &str) -> Result<ConnectionId, ApiError> {
    ConnectionId::new(raw)
        .ok()
        .filter(|c| c.node().is_some() || c.is_signalr() || c.is_pusher())
        .ok_or(ApiError::NotFound("connection"))
}

pub(crate) fn group_name(raw: &str) -> Result<GroupName, ApiError> {
    Ok(GroupName::new(raw)?)
}

pub(crate) fn user_id(raw: &str) -> Result<UserId, ApiError> {
    Ok(UserId::new(raw)?)
}

/// The largest integer a query parameter takes: JavaScript's safe integers (positions, which
/// are microseconds since 1970, stay far below).
pub(crate) const MAX_QUERY_INTEGER: u64 = 9_007_199_254_740_991;

/// `?limit=&cursor=` on list calls.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Items per page (1-200, default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,18}_[A-Za-z0-9_-]{1,64}$")]
    cursor: Option<String>,
}

impl PageQuery {
    pub(crate) fn request(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(PageRequest::DEFAULT_LIMIT);
        if !(1..=PageRequest::MAX_LIMIT).contains(&limit) {
            return Err(ApiError::InvalidQuery(format!("limit must be 1-{}", PageRequest::MAX_LIMIT)));
        }
        let after = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok(PageRequest { limit, after })
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_cursor: Option<String>,
}

/// A cursor is `{created_at}_{id}`: where the previous page ended, in the list's order. Any
/// string of that shape is a valid place to continue from (it need not name an item that
/// exists), so the OpenAPI pattern says exactly what is accepted.
pub(crate) fn encode_cursor(cursor: &Cursor) -> String {
    format!("{}_{}", cursor.created_at, cursor.id)
}

fn decode_cursor(raw: &str) -> Result<Cursor, ApiError> {
    let invalid = || ApiError::InvalidQuery("cursor is not one this API returned".into());
    let (created_at, id) = raw.split_once('_').ok_or_else(invalid)?;
    let digits = !created_at.is_empty() && created_at.len() <= 18 && created_at.bytes().all(|b| b.is_ascii_digit());
    let id_ok = (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !digits || !id_ok {
        return Err(invalid());
    }
    Ok(Cursor { created_at: created_at.parse().map_err(|_| invalid())?, id: id.to_owned() })
}

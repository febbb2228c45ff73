//! `POST /v1/tenants`: the operator creates a tenant and gets its management token, once.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use signalbox_core::{TenantId, clock, ids};
use signalbox_store::TenantRecord;
use utoipa::ToSchema;

use super::Body;
use crate::ApiState;
use crate::auth::{Operator, TENANT_TOKEN_PREFIX};
use crate::crypto::hash_token;
use crate::error::{ApiError, Problem};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "acme"}))]
pub(crate) struct CreateTenant {
    #[schema(schema_with = super::schemas::display_name)]
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedTenant {
    id: TenantId,
    name: String,
    /// The tenant's management token. Shown once: only its hash is stored.
    token: String,
    /// Milliseconds since the Unix epoch.
    created_at: i64,
}

pub(crate) fn display_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::InvalidField {
            field: "name",
            reason: "must be 1-200 characters without control characters".into(),
        });
    }
    Ok(name.to_owned())
}

/// Create a tenant.
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants",
    request_body = CreateTenant,
    security(("operator" = [])),
    responses(
        (status = 201, description = "Created; the token is shown only now", body = CreatedTenant),
        (status = 401, description = "Not the operator", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_tenant(
    State(state): State<Arc<ApiState>>,
    _operator: Operator,
    Body(body): Body<CreateTenant>,
) -> Result<impl IntoResponse, ApiError> {
    let name = display_name(&body.name)?;
    let token = format!("{TENANT_TOKEN_PREFIX}{}", ids::random_token(40));
    let tenant = TenantRecord { id: TenantId::generate(), name, created_at: clock::unix_millis() };
    state.store.create_tenant(&tenant, &hash_token(&token)).await?;
    tracing::info!(tenant = %tenant.id, "tenant created");
    let created = CreatedTenant { id: tenant.id, name: tenant.name, token, created_at: tenant.created_at };
    Ok((StatusCode::CREATED, axum::Json(created)))
}

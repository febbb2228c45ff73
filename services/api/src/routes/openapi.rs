//! Completes the generated OpenAPI document with the error responses every operation shares,
//! so that no operation answers a status it does not document: they come from the extractors
//! and middleware all routes go through (authentication, query and path parsing, JSON bodies,
//! rate limits), not from the handlers, so they are added here once rather than repeated on
//! each route.

use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};

/// A problem+json response with `description`.
fn problem(description: &str) -> utoipa::openapi::Response {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
    ResponseBuilder::new().description(description).content("application/problem+json", content).build()
}

fn add(operation: &mut Operation, status: &str, description: &str) {
    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| problem(description).into());
}

/// Adds the shared error responses to every operation of `doc`.
pub(crate) fn complete(mut doc: OpenApi) -> OpenApi {
    for (path, item) in doc.paths.paths.iter_mut() {
        let names_a_resource = path.contains('{');
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            add(operation, "400", "Malformed JSON or query parameters (code `malformed_json`, `invalid_query`)");
            if secured {
                add(operation, "401", "No bearer token, or not a valid one for this operation (code `unauthorized`)");
                add(operation, "403", "The credential may not do this (code `forbidden`)");
            }
            if names_a_resource {
                add(operation, "404", "No such resource visible to this credential (code `not_found`)");
            }
            let has_body = operation.request_body.is_some();
            if has_body {
                add(operation, "413", "The body is larger than the api accepts (code `payload_too_large`)");
                add(operation, "415", "The body is not `application/json` (code `unsupported_media_type`)");
            }
            if has_body || names_a_resource {
                add(
                    operation,
                    "422",
                    "A body or a name that breaks the rules (code `invalid_body`, `invalid_name`, `invalid_field`, …)",
                );
            }
            if has_body {
                add(operation, "408", "The body did not arrive in time (code `body_timeout`)");
            }
            add(
                operation,
                "429",
                "Too many requests from this address before authenticating (code `too_many_requests`)",
            );
            add(
                operation,
                "503",
                "A dependency is unavailable, or the request took too long (code `unavailable`, `request_timeout`); retry after `Retry-After`",
            );
        }
    }
    doc
}

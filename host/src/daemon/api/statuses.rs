//! The answers every route shares, added to each operation of the OpenAPI document from what the
//! operation is (secured, takes a body, names ids in its path, a command) rather than repeated in
//! each handler's annotation. They come from the layers every request passes: the token check, the
//! body buffer and JSON extractor, the command quota, the request timeout and the store.
//!
//! A handler's own description of one of these statuses wins: it is added only where missing.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{Object, Ref, Type};
use utoipa::openapi::{Content, OpenApi, RefOr};

/// The shared statuses an operation can answer, with what they mean there.
pub fn shared(operation: &Operation, is_post: bool) -> Vec<(&'static str, &'static str)> {
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let takes_body = operation.request_body.is_some();
    let parameters = || operation.parameters.iter().flatten();
    let in_path = parameters().any(|p| match p {
        RefOr::T(p) => matches!(p.parameter_in, ParameterIn::Path),
        RefOr::Ref(_) => false,
    });
    let in_query = parameters().any(|p| match p {
        RefOr::T(p) => matches!(p.parameter_in, ParameterIn::Query),
        RefOr::Ref(_) => false,
    });
    let mut statuses = Vec::new();
    if takes_body {
        statuses.push(("400", "A malformed body (`details` gives the position)"));
    } else if in_path || in_query {
        statuses.push((
            "400",
            "A malformed path or query (`details.field` names the parameter)",
        ));
    }
    if secured {
        statuses.push(("401", "No valid bearer token (`WWW-Authenticate: Bearer`)"));
    }
    if in_path {
        statuses.push(("404", "Nothing with this id in the caller's tenant"));
    }
    if takes_body {
        statuses.push(("413", "The body is over the limit (`details.limit`)"));
        statuses.push((
            "415",
            "The body's `Content-Type` is not the one this route takes",
        ));
        statuses.push((
            "422",
            "The body is well formed but invalid (`details.field`)",
        ));
    }
    if secured && is_post {
        statuses.push((
            "429",
            "The tenant is over its commands per second; `Retry-After` says when to try again",
        ));
    }
    statuses.push(("500", "The server failed; the message says how"));
    statuses.push((
        "503",
        "The store cannot commit (e.g. a full disk), or the request ran past the daemon's timeout",
    ));
    statuses
}

/// Adds [`shared`] to every operation of `openapi` that does not describe them itself.
pub fn add_shared(openapi: &mut OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            (&mut item.get, false),
            (&mut item.put, false),
            (&mut item.post, true),
            (&mut item.delete, false),
            (&mut item.patch, false),
        ];
        for (operation, is_post) in operations {
            let Some(operation) = operation else { continue };
            // Liveness answers `ok` from memory: nothing can fail it.
            if operation.operation_id.as_deref() == Some("healthz") {
                continue;
            }
            for (status, description) in shared(operation, is_post) {
                if operation.responses.responses.contains_key(status) {
                    continue;
                }
                let mut response = ResponseBuilder::new().description(description).content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                );
                if status == "401" {
                    response = response.header(
                        "WWW-Authenticate",
                        HeaderBuilder::new()
                            .schema(Some(Object::with_type(Type::String)))
                            .description(Some("`Bearer`"))
                            .build(),
                    );
                }
                if status == "429" {
                    response = response.header(
                        "Retry-After",
                        HeaderBuilder::new()
                            .schema(Some(Object::with_type(Type::Integer)))
                            .description(Some("Seconds to wait"))
                            .build(),
                    );
                }
                operation
                    .responses
                    .responses
                    .insert(status.to_string(), RefOr::T(response.build()));
            }
        }
    }
}

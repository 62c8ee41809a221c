//! The OpenAPI 3.1 description of `/api/v1`, built from the same annotated handlers that make
//! the router ([`api_routes`]): a route cannot be served without being described. Served at
//! `/api/v1/openapi.json` (no token needed) and checked in as `docs/openapi.json`.

use crate::{
    api, events, flows_api, ha, job_control_api, namespaces_api, nodes_api, tenancy_api, AppState,
};
use std::sync::OnceLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref};
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Where the description is served, and the prefix of every path in it.
pub const PREFIX: &str = "/api/v1";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Zenith API",
        description = "Jobs, flows, nodes and tenancy of a Zenith cluster. Every call but this \
            description needs `Authorization: Bearer TOKEN` (an admin token from the server's \
            data directory, a token made with `zenith token create`, or an OIDC token). \
            Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`. Outside this API: \
            `/healthz`, `/readyz` and `/metrics` (Prometheus) for probes, `/agent/v1` for agents.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(zenith_protocol::api::ErrorBody)),
    security(("bearer" = [])),
    tags(
        (name = "jobs", description = "Submit, list, show, control and read the output of jobs"),
        (name = "nodes", description = "Agents' nodes and their life cycle"),
        (name = "flows", description = "Workflow definitions and runs"),
        (name = "tenancy", description = "Tokens, namespaces, fair share and audit"),
        (name = "events", description = "A stream of committed state changes"),
        (name = "cluster", description = "The control plane itself")
    )
)]
struct ApiDoc;

/// The `/api/v1` routes, each from its annotated handler (paths relative to [`PREFIX`]).
pub(crate) fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(api::submit, api::list))
        .routes(routes!(
            api::show,
            job_control_api::update,
            job_control_api::delete
        ))
        .routes(routes!(job_control_api::requeue))
        .routes(routes!(api::cancel))
        .routes(routes!(job_control_api::hold))
        .routes(routes!(job_control_api::release))
        .routes(routes!(api::logs))
        .routes(routes!(api::explain))
        .routes(routes!(nodes_api::nodes))
        .routes(routes!(nodes_api::revoke_node))
        .routes(routes!(nodes_api::cordon_node))
        .routes(routes!(nodes_api::uncordon_node))
        .routes(routes!(nodes_api::drain_node))
        .routes(routes!(nodes_api::remove_node))
        .routes(routes!(api::summary))
        .routes(routes!(tenancy_api::whoami))
        .routes(routes!(api::version))
        .routes(routes!(tenancy_api::create, tenancy_api::list))
        .routes(routes!(tenancy_api::revoke))
        .routes(routes!(tenancy_api::audit))
        .routes(routes!(namespaces_api::list))
        .routes(routes!(
            namespaces_api::show,
            namespaces_api::put,
            namespaces_api::delete
        ))
        .routes(routes!(namespaces_api::share))
        .routes(routes!(ha::servers::embedded_servers))
        .routes(routes!(events::events))
        .routes(routes!(flows_api::list))
        .routes(routes!(flows_api::validate))
        .routes(routes!(flows_api::submit_run, flows_api::list_runs))
        .routes(routes!(flows_api::show_run))
        .routes(routes!(flows_api::cancel_run))
        .routes(routes!(flows_api::graph))
        .routes(routes!(flows_api::attempts))
        .routes(routes!(flows_api::approve))
        .routes(routes!(flows_api::apply, flows_api::delete))
}

/// The whole description: the handlers' paths under [`PREFIX`], their schemas, the
/// conventions every call shares.
pub fn document() -> OpenApi {
    let (_, paths) = api_routes().split_for_parts();
    let mut doc = ApiDoc::openapi().nest(PREFIX, paths);
    Conventions.modify(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// [`document`] as pretty JSON with a final newline (the form checked in), made once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| match document().to_pretty_json() {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        // Serialising plain maps and strings cannot fail; answer something valid anyway.
        Err(e) => format!("{{\"error\": {:?}}}\n", e.to_string()),
    })
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}

/// The bearer scheme, and the error answers any call may give, on every operation.
struct Conventions;

/// Error answers any call may give: (status, component name, description).
const COMMON_ERRORS: [(&str, &str, &str); 6] = [
    (
        "400",
        "Invalid",
        "The request is malformed or invalid; `field` names what is wrong",
    ),
    (
        "401",
        "Unauthorized",
        "No token, or a token that is unknown, revoked or expired",
    ),
    (
        "403",
        "Forbidden",
        "The token's role or namespaces do not allow this",
    ),
    (
        "404",
        "NotFound",
        "No such thing, or one in a namespace the token cannot read",
    ),
    (
        "429",
        "TooManyRequests",
        "Too many requests, or a queue is full: retry after the Retry-After header",
    ),
    (
        "503",
        "Unavailable",
        "This server cannot answer now (not the leader, store unavailable): retry, or another server",
    ),
];

impl Modify for Conventions {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        for (_, name, description) in COMMON_ERRORS {
            let body = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", body)
                .build();
            components
                .responses
                .insert(name.to_string(), response.into());
        }
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_common_errors(op);
            }
        }
    }
}

fn add_common_errors(op: &mut Operation) {
    for (status, name, _) in COMMON_ERRORS {
        if !op.responses.responses.contains_key(status) {
            let r = Ref::new(format!("#/components/responses/{name}"));
            op.responses.responses.insert(status.to_string(), r.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_under_the_prefix_and_every_operation_names_its_errors() {
        let doc = document();
        assert!(doc.paths.paths.len() >= 30, "{}", doc.paths.paths.len());
        for (path, item) in &doc.paths.paths {
            assert!(path.starts_with("/api/v1/"), "{path}");
            let ops = [&item.get, &item.put, &item.post, &item.delete, &item.patch];
            for op in ops.into_iter().flatten() {
                for status in ["400", "401", "404", "503"] {
                    assert!(
                        op.responses.responses.contains_key(status),
                        "{path} {status}"
                    );
                }
            }
        }
    }
}

//! The OpenAPI 3.1 document, generated from the route annotations, finished with what every operation
//! shares: the bearer scheme and the error responses in the one error shape.

use crate::error::ErrorBody;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::OpenApi as _;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Tollgate API",
        description = "ITIL-governed operations for private clouds: CMDB, accounts and audit. \
                       Sign in with POST /api/v1/auth/tokens and send `Authorization: Bearer <token>`. \
                       Each operation's security lists the roles that may call it; `admin` may call all.",
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "auth", description = "Bearer tokens"),
        (name = "accounts", description = "Users and groups"),
        (name = "cmdb", description = "Configuration items, relations and impact"),
        (name = "processes", description = "Process definitions, versioned"),
        (name = "changes", description = "Changes: typed plans, risk, conflicts, freeze windows, lifecycle"),
        (name = "approvals", description = "Votes, approval policies and delegation"),
        (name = "incidents", description = "Incidents, their SLA clocks and their process"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "metrics", description = "Metric points: the InfluxDB v2 write API agents use, and series for charts"),
    )
)]
pub struct ApiDoc;

/// Statuses every operation may answer with, and what they mean.
const COMMON_ERRORS: &[(&str, &str)] = &[
    ("400", "Malformed request: bad JSON, path or query"),
    ("404", "No such resource"),
    ("409", "Conflicts with the current state"),
    ("413", "Request body too large"),
    ("415", "Body is not JSON"),
    ("422", "Well-formed but invalid input; `details.field` names the field"),
    ("500", "Internal error"),
];
const AUTH_ERRORS: &[(&str, &str)] =
    &[("401", "Missing, unknown, expired or revoked token"), ("403", "Your roles do not allow this")];

/// The base document, before routes add their paths.
pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

/// Adds the bearer scheme and the shared error responses to every operation.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        "bearer".to_owned(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("A token from POST /api/v1/auth/tokens"))
                .build(),
        ),
    );
    for (status, description) in COMMON_ERRORS.iter().chain(AUTH_ERRORS) {
        components.responses.insert(
            format!("E{status}"),
            RefOr::T(
                ResponseBuilder::new()
                    .description(*description)
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                    )
                    .build(),
            ),
        );
    }
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let errors = COMMON_ERRORS.iter().chain(if secured { AUTH_ERRORS } else { &[] });
            for (status, _) in errors {
                op.responses
                    .responses
                    .entry((*status).to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(format!("E{status}"))));
            }
        }
    }
    doc
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch]
        .into_iter()
        .filter_map(Option::as_mut)
}

//! The GraphQL API: schema, resolvers and error codes.
//!
//! Resolvers are thin: authenticate (through [`viewer`]), convert arguments,
//! call one service function, convert the result. `schema()` builds the schema
//! with no data and no extensions so tests and `podforge schema` can use it;
//! [`build`] adds the app, limits and extensions for serving.

pub mod cost;
pub mod error;
pub mod guard;
pub mod limits;
pub mod mutation;
pub mod persisted;
pub mod query;
pub mod subscription;
pub mod types;
pub mod ws;

use std::sync::Arc;

use async_graphql::{Context, ID, Schema, SchemaBuilder};

use crate::app::App;
use crate::auth::client::ClientAddr;
use crate::auth::{RequestAuth, Viewer};
use crate::error::ApiError;

pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

/// The schema type.
pub type PodforgeSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The schema with no data, limits or extensions (for SDL export and tests).
pub fn schema() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
}

/// The serving schema: the app as data, the configured limits, error codes.
///
/// Limits as [`limited`] applies them. Introspection is
/// off when configured, and then refused with INTROSPECTION_DISABLED
/// ([`guard`]), as are subscriptions sent over HTTP (WEBSOCKET_REQUIRED).
/// [`error::ErrorCodes`] gives every error that leaves a code. Automatic
/// persisted queries ([`persisted`]) put a stored document back as the
/// request's text before any of these run, so it is checked like a sent one.
pub fn build(app: Arc<App>) -> PodforgeSchema {
    // APQ first: extensions' request hooks run in the order they were added.
    let apq = persisted::PersistedQueries::new(app.config.apq_cache_entries);
    let mut builder = limited(schema().extension(apq), &app.config.limits)
        .extension(error::ErrorCodes)
        .extension(guard::OperationGuard {
            introspection: app.config.introspection,
        });
    if !app.config.introspection {
        builder = builder.disable_introspection();
    }
    builder.data(app).finish()
}

/// The fields whose selections repeat once per item of a page, for the cost
/// analysis ([`cost`]). A test checks that it names every field of the
/// schema that takes a `first` argument.
pub const PAGED_FIELDS: &[cost::PagedField] = &[cost::PagedField {
    field: "podcasts",
    argument: "first",
    default: crate::services::library::DEFAULT_PAGE_SIZE as u64,
    max: crate::services::library::MAX_PAGE_SIZE as u64,
}];

/// `builder` with the document limits of `limits` (from
/// [`crate::config::Limits`]), in order, all before any operation runs:
/// 1. a lexical scan of the raw document ([`limits::check`]) refuses oversized
///    documents before parsing;
/// 2. the cost analysis of the parsed document ([`cost`]) refuses fragment
///    cycles and documents whose expansion costs or nests too much, computed
///    over the fragment graph without expanding it;
/// 3. only then async-graphql validates, inlining fragments; its own depth
///    and complexity limits stay on as a second line, on documents step 2
///    has bounded.
pub fn limited(
    builder: SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot>,
    limits: &crate::config::Limits,
) -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    let document = limits::DocumentLimits {
        max_bytes: limits.max_query_bytes,
        max_selections: limits.max_complexity,
        max_directives: limits.max_directives_per_field * 10,
        max_directives_per_location: limits.max_directives_per_field,
        max_depth: limits.max_depth,
    };
    let cost = cost::CostLimits {
        max_cost: limits.max_complexity as u64,
        max_depth: limits.max_depth,
        paged: PAGED_FIELDS.to_vec(),
    };
    builder
        .extension(limits::QueryLimits { document, cost })
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .limit_recursive_depth(64)
}

/// The SDL of [`schema`], as checked in at `schema.graphql`.
pub fn sdl() -> String {
    schema().finish().sdl()
}

/// The app from the schema data.
pub(crate) fn app<'a>(ctx: &Context<'a>) -> &'a App {
    ctx.data_unchecked::<Arc<App>>()
}

/// The signed-in viewer, or UNAUTHENTICATED.
pub(crate) async fn viewer(ctx: &Context<'_>) -> Result<Viewer, ApiError> {
    match ctx.data_opt::<Arc<RequestAuth>>() {
        Some(auth) => auth.viewer(&app(ctx).pool).await,
        None => Err(ApiError::Unauthenticated(
            "sign in: this operation needs an access token".into(),
        )),
    }
}

/// The client's address, when the transport knew it.
pub(crate) fn client(ctx: &Context<'_>) -> Option<ClientAddr> {
    ctx.data_opt::<ClientAddr>().copied()
}

/// Parses an `ID` argument holding a UUID.
pub(crate) fn parse_id<T: std::str::FromStr>(id: &ID, field: &str) -> Result<T, ApiError> {
    id.as_str()
        .parse()
        .map_err(|_| ApiError::bad_input(field, "not a valid id"))
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

    use super::*;

    #[test]
    fn every_field_taking_a_page_size_is_weighed_by_it() {
        let sdl = async_graphql::parser::parse_schema(sdl()).unwrap();
        let mut paged = Vec::new();
        for def in &sdl.definitions {
            let TypeSystemDefinition::Type(t) = def else { continue };
            let (TypeKind::Object(o), type_name) = (&t.node.kind, &t.node.name.node) else {
                continue;
            };
            for f in &o.fields {
                for arg in f.node.arguments.iter().filter(|a| a.node.name.node == "first") {
                    paged.push((
                        type_name.to_string(),
                        f.node.name.node.to_string(),
                        arg.node.name.node.to_string(),
                    ));
                }
            }
        }
        let listed: Vec<_> = PAGED_FIELDS
            .iter()
            .map(|p| ("Query".to_owned(), p.field.to_owned(), p.argument.to_owned()))
            .collect();
        assert_eq!(paged, listed);
    }
}

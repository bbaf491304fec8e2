//! The GraphQL API: schema, resolvers and error codes.
//!
//! Resolvers are thin: authenticate (through [`viewer`]), convert arguments,
//! call one service function, convert the result. `schema()` builds the schema
//! with no data and no extensions so tests and `podforge schema` can use it;
//! [`build`] adds the app, limits and extensions for serving.

pub mod error;
pub mod guard;
pub mod limits;
pub mod mutation;
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
/// Limits (from [`crate::config::Limits`]), in two passes: a lexical scan of
/// the raw document ([`limits`]) refuses oversized documents before parsing;
/// then async-graphql checks depth and complexity with fragments inlined and
/// every alias counted as a field, and directives per field. Introspection is
/// off when configured, and then refused with INTROSPECTION_DISABLED
/// ([`guard`]), as are subscriptions sent over HTTP (WEBSOCKET_REQUIRED).
/// [`error::ErrorCodes`] gives every error that leaves a code.
pub fn build(app: Arc<App>) -> PodforgeSchema {
    let limits = &app.config.limits;
    let document_limits = limits::DocumentLimits {
        max_selections: limits.max_complexity,
        max_directives: limits.max_directives_per_field * 10,
        max_directives_per_location: limits.max_directives_per_field,
        max_depth: limits.max_depth,
    };
    let mut builder = schema()
        .extension(limits::QueryLimits(document_limits))
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .limit_recursive_depth(64)
        .extension(error::ErrorCodes)
        .extension(guard::OperationGuard {
            introspection: app.config.introspection,
        });
    if !app.config.introspection {
        builder = builder.disable_introspection();
    }
    builder.data(app).finish()
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

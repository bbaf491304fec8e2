//! The one place where errors become GraphQL errors with `extensions.code`.
//!
//! Codes (stable, documented in README):
//! - from services ([`ApiError`]): UNAUTHENTICATED, NOT_FOUND,
//!   BAD_USER_INPUT (with `extensions.field`), CONFLICT, RATE_LIMITED,
//!   UNAVAILABLE, INTERNAL_SERVER_ERROR;
//! - from the GraphQL engine: GRAPHQL_PARSE_FAILED (syntax),
//!   GRAPHQL_VALIDATION_FAILED (unknown fields, wrong types, and the depth,
//!   complexity and directive limits), BAD_USER_INPUT (argument values that do
//!   not coerce), BAD_REQUEST (HTTP-level: body too large, too many operations
//!   in a batch, malformed JSON).
//!
//! Internal and unavailable errors are logged here, once, with their chain;
//! the client sees only a generic message. The request id of the log line's
//! span is the one returned in the `x-request-id` response header.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ErrorExtensions, Response, ServerError, ServerResult, ValidationResult, Variables};

use crate::error::ApiError;

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        match &e {
            ApiError::Internal(inner) => tracing::error!(error = ?inner, "internal error"),
            ApiError::Unavailable(inner) => {
                tracing::warn!(error = ?inner, "dependency unavailable")
            }
            _ => {}
        }
        let code = e.code();
        let field = match &e {
            ApiError::BadUserInput { field, .. } => Some(field.clone()),
            _ => None,
        };
        async_graphql::Error::new(e.message()).extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(field) = &field {
                ext.set("field", field.as_str());
            }
        })
    }
}

/// Reads `extensions.code` of a server error, if set.
pub fn code_of(e: &ServerError) -> Option<String> {
    e.extensions.as_ref().and_then(|x| x.get("code")).and_then(|v| match v {
        async_graphql::Value::String(s) => Some(s.clone()),
        _ => None,
    })
}

fn with_code(mut e: ServerError, code: &str) -> ServerError {
    if code_of(&e).is_none() {
        e.extensions.get_or_insert_with(Default::default).set("code", code);
    }
    e
}

/// A GraphQL error response for failures before any operation runs
/// (HTTP-level guards): `{"errors":[{"message":..., "extensions":{"code":...}}]}`.
pub fn request_error(message: impl Into<String>, code: &str) -> Response {
    Response::from_errors(vec![with_code(ServerError::new(message, None), code)])
}

/// Adds `extensions.code` to errors raised by async-graphql itself.
pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension)
    }
}

struct ErrorCodesExtension;

#[async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|e| with_code(e, "GRAPHQL_PARSE_FAILED"))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| with_code(e, "GRAPHQL_VALIDATION_FAILED"))
                .collect()
        })
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        // Every resolver error carries a code (it went through ApiError). Errors
        // without one come from the engine coercing argument values.
        response.errors = std::mem::take(&mut response.errors)
            .into_iter()
            .map(|e| with_code(e, "BAD_USER_INPUT"))
            .collect();
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gql(e: ApiError) -> (String, String, Option<String>) {
        let err: async_graphql::Error = e.into();
        let server = err.into_server_error(async_graphql::Pos::default());
        let field = server
            .extensions
            .as_ref()
            .and_then(|x| x.get("field"))
            .map(|v| v.to_string());
        (code_of(&server).unwrap_or_default(), server.message, field)
    }

    #[test]
    fn every_api_error_maps_to_its_code() {
        assert_eq!(gql(ApiError::Unauthenticated("x".into())).0, "UNAUTHENTICATED");
        assert_eq!(gql(ApiError::NotFound("podcast")).0, "NOT_FOUND");
        assert_eq!(gql(ApiError::Conflict("x".into())).0, "CONFLICT");
        assert_eq!(gql(ApiError::RateLimited("x".into())).0, "RATE_LIMITED");
        assert_eq!(gql(ApiError::Unavailable(anyhow::anyhow!("pool"))).0, "UNAVAILABLE");
        let (code, _, field) = gql(ApiError::bad_input("input.email", "bad"));
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(field.as_deref(), Some("\"input.email\""));
    }

    #[test]
    fn internal_details_never_reach_the_client() {
        let (code, message, _) = gql(ApiError::Internal(anyhow::anyhow!(
            "password=hunter2 at db.internal:5432"
        )));
        assert_eq!(code, "INTERNAL_SERVER_ERROR");
        assert_eq!(message, "internal server error");
        let (_, message, _) = gql(ApiError::Unavailable(anyhow::anyhow!("db.internal refused")));
        assert!(!message.contains("db.internal"));
    }
}

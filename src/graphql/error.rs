//! The one place where errors become GraphQL errors with `extensions.code`.
//!
//! Codes (stable, documented in README):
//! - from services ([`ApiError`]): UNAUTHENTICATED, NOT_FOUND,
//!   BAD_USER_INPUT (with `extensions.field`), CONFLICT, RATE_LIMITED (with
//!   `extensions.retryAfter` when known), UNAVAILABLE, INTERNAL_SERVER_ERROR;
//! - from the GraphQL engine: GRAPHQL_PARSE_FAILED (syntax),
//!   GRAPHQL_VALIDATION_FAILED (unknown fields, wrong types, and the depth,
//!   complexity and directive limits), BAD_USER_INPUT (argument values that do
//!   not coerce), BAD_REQUEST (HTTP-level: body too large, too many operations
//!   in a batch, malformed JSON; an operation name that is missing or unknown);
//! - from the operation guards ([`super::guard`]): INTROSPECTION_DISABLED,
//!   WEBSOCKET_REQUIRED.
//!
//! **An error without a code is internal.** Every error that reaches a
//! response passes through [`ErrorCodes`]; one that nobody gave a code (a
//! stray `?` on a library error in a resolver, an engine failure) is answered
//! INTERNAL_SERVER_ERROR with a generic message and logged once, here. The one
//! uncoded engine error that is the client's fault, an argument value that
//! does not coerce to its type (an `Int` beyond 32 bits, a failed input
//! validator), is told apart structurally: the engine reports it at the
//! argument's value, and [`ErrorCodes`] records where every argument value of
//! the document is; resolver errors are reported at their field. Everything
//! else the engine rejects is caught before execution, with a code, by the
//! parse and validation hooks and the operation guards.
//!
//! Internal and unavailable errors are logged once, with their chain: those
//! from services when their [`ApiError`] is converted, uncoded ones by
//! [`ErrorCodes`]; the client sees only a generic message. The log line's span
//! carries the request id returned in the `x-request-id` response header
//! (HTTP) or of the websocket's upgrade request.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextSubscribe, NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{
    ErrorExtensions, Pos, Positioned, Response, ServerError, ServerResult, ValidationResult, Variables,
};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::error::ApiError;

/// The message of every internal error.
pub const INTERNAL_MESSAGE: &str = "internal server error";

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
        let retry_after = match &e {
            ApiError::RateLimited {
                retry_after: Some(after),
                ..
            } => Some(crate::error::whole_seconds(*after)),
            _ => None,
        };
        async_graphql::Error::new(e.message()).extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(field) = &field {
                ext.set("field", field.as_str());
            }
            if let Some(seconds) = retry_after {
                ext.set("retryAfter", seconds);
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

/// A server error carrying `code`, at `pos` when given.
pub fn coded(message: impl Into<String>, pos: Option<Pos>, code: &str) -> ServerError {
    with_code(ServerError::new(message, pos), code)
}

/// A GraphQL error response for failures before any operation runs
/// (HTTP-level guards): `{"errors":[{"message":..., "extensions":{"code":...}}]}`.
pub fn request_error(message: impl Into<String>, code: &str) -> Response {
    Response::from_errors(vec![coded(message, None, code)])
}

/// Gives every error a code: async-graphql's parse and validation errors
/// theirs, uncoded coercion errors BAD_USER_INPUT, and anything else without
/// a code INTERNAL_SERVER_ERROR with a generic message (see the module docs).
pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension::default())
    }
}

/// One request's state: where the document's argument values are.
#[derive(Default)]
struct ErrorCodesExtension {
    arguments: Arc<Mutex<HashSet<Pos>>>,
}

/// Positions of every argument value in `doc` (fields and directives, in
/// operations and fragments): where the engine reports coercion failures.
fn argument_positions(doc: &ExecutableDocument) -> HashSet<Pos> {
    fn walk(set: &Positioned<SelectionSet>, out: &mut HashSet<Pos>) {
        for selection in &set.node.items {
            for directive in selection.node.directives() {
                out.extend(directive.node.arguments.iter().map(|(_, v)| v.pos));
            }
            match &selection.node {
                Selection::Field(field) => {
                    out.extend(field.node.arguments.iter().map(|(_, v)| v.pos));
                    walk(&field.node.selection_set, out);
                }
                Selection::InlineFragment(inline) => walk(&inline.node.selection_set, out),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    let mut out = HashSet::new();
    for (_, operation) in doc.operations.iter() {
        walk(&operation.node.selection_set, &mut out);
    }
    for fragment in doc.fragments.values() {
        walk(&fragment.node.selection_set, &mut out);
    }
    out
}

/// The code an error leaves with (see the module docs).
fn classify(mut e: ServerError, arguments: &Mutex<HashSet<Pos>>) -> ServerError {
    if code_of(&e).is_some() {
        return e;
    }
    let at_argument = {
        let arguments = arguments.lock().unwrap_or_else(|p| p.into_inner());
        e.locations.iter().any(|p| arguments.contains(p))
    };
    if at_argument {
        return with_code(e, "BAD_USER_INPUT");
    }
    let path: Vec<String> = e
        .path
        .iter()
        .map(|segment| match segment {
            async_graphql::PathSegment::Field(name) => name.clone(),
            async_graphql::PathSegment::Index(i) => i.to_string(),
        })
        .collect();
    tracing::error!(error = %e.message, graphql.path = %path.join("."), "an error without a code reached the API; answered INTERNAL_SERVER_ERROR");
    e.message = INTERNAL_MESSAGE.to_owned();
    e.source = None;
    with_code(e, "INTERNAL_SERVER_ERROR")
}

fn classify_response(mut response: Response, arguments: &Mutex<HashSet<Pos>>) -> Response {
    response.errors = std::mem::take(&mut response.errors)
        .into_iter()
        .map(|e| classify(e, arguments))
        .collect();
    response
}

#[async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        // Around everything an HTTP operation does: preparation, execution.
        classify_response(next.run(ctx).await, &self.arguments)
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        // Every response of a websocket operation (queries too run this way).
        let arguments = self.arguments.clone();
        next.run(ctx, stream)
            .map(move |response| classify_response(response, &arguments))
            .boxed()
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next
            .run(ctx, query, variables)
            .await
            .map_err(|e| with_code(e, "GRAPHQL_PARSE_FAILED"))?;
        *self.arguments.lock().unwrap_or_else(|p| p.into_inner()) = argument_positions(&doc);
        Ok(doc)
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
        assert_eq!(gql(ApiError::rate_limited("x", None)).0, "RATE_LIMITED");
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

    /// A schema whose resolvers fail in the ways the module docs name.
    struct Root;

    #[async_graphql::Object]
    impl Root {
        async fn coded(&self) -> async_graphql::Result<i32> {
            Err(ApiError::NotFound("thing").into())
        }
        async fn uncoded(&self) -> async_graphql::Result<Option<i32>> {
            let n: i32 = "not a number: secret detail".parse()?;
            Ok(Some(n))
        }
        async fn by_hand(&self) -> async_graphql::Result<i32> {
            Err(async_graphql::Error::new("hand-made, no code"))
        }
        async fn echo(&self, n: i32) -> i32 {
            n
        }
    }

    struct Sub;

    #[async_graphql::Subscription]
    impl Sub {
        async fn ticks(
            &self,
            n: i32,
        ) -> async_graphql::Result<impl futures_util::Stream<Item = async_graphql::Result<i32>>> {
            Ok(futures_util::stream::iter([Ok(n), Err("stream broke: secret".into())]))
        }
    }

    fn schema() -> async_graphql::Schema<Root, async_graphql::EmptyMutation, Sub> {
        async_graphql::Schema::build(Root, async_graphql::EmptyMutation, Sub)
            .extension(ErrorCodes)
            .finish()
    }

    fn codes(r: &Response) -> Vec<(String, String)> {
        r.errors
            .iter()
            .map(|e| (code_of(e).unwrap_or_default(), e.message.clone()))
            .collect()
    }

    #[tokio::test]
    async fn errors_without_a_code_are_internal_and_coercion_errors_are_the_clients() {
        let s = schema();
        let r = s.execute("{ coded }").await;
        assert_eq!(codes(&r), vec![("NOT_FOUND".into(), "thing not found".into())]);
        for query in ["{ uncoded }", "{ byHand }"] {
            let r = s.execute(query).await;
            assert_eq!(
                codes(&r),
                vec![("INTERNAL_SERVER_ERROR".into(), INTERNAL_MESSAGE.into())],
                "{query}"
            );
        }
        // Coercion fails at the argument's value, literal or variable.
        let r = s.execute("{ echo(n: 3000000000) }").await;
        assert_eq!(codes(&r)[0].0, "BAD_USER_INPUT", "{:?}", r.errors);
        let r = s
            .execute(
                async_graphql::Request::new("query($n: Int!) { echo(n: $n) }")
                    .variables(Variables::from_json(serde_json::json!({"n": 3_000_000_000_i64}))),
            )
            .await;
        assert_eq!(codes(&r)[0].0, "BAD_USER_INPUT", "{:?}", r.errors);
        // An uncoded error beside a good field: only it is internal.
        let r = s.execute("{ a: echo(n: 1) uncoded }").await;
        assert_eq!(
            codes(&r),
            vec![("INTERNAL_SERVER_ERROR".into(), INTERNAL_MESSAGE.into())]
        );
        assert_eq!(r.data.into_json().unwrap()["a"], 1);
        // Parse and validation errors keep their codes.
        assert_eq!(codes(&s.execute("{ echo(").await)[0].0, "GRAPHQL_PARSE_FAILED");
        assert_eq!(
            codes(&s.execute("{ echo(n: \"x\") }").await)[0].0,
            "GRAPHQL_VALIDATION_FAILED"
        );
    }

    #[tokio::test]
    async fn subscription_streams_are_coded_the_same_way() {
        let s = schema();
        let responses: Vec<Response> = s.execute_stream("subscription { ticks(n: 1) }").collect().await;
        assert!(responses[0].errors.is_empty());
        assert_eq!(
            codes(&responses[1]),
            vec![("INTERNAL_SERVER_ERROR".into(), INTERNAL_MESSAGE.into())]
        );
        let responses: Vec<Response> = s
            .execute_stream("subscription { ticks(n: 3000000000) }")
            .collect()
            .await;
        assert_eq!(codes(&responses[0])[0].0, "BAD_USER_INPUT", "{:?}", responses[0].errors);
    }
}

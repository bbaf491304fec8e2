//! Refuses, right after parsing and with a stable code, operations this
//! server will not run: introspection when it is turned off, a subscription
//! sent over HTTP, and a request whose operation name selects nothing.
//!
//! async-graphql answers these quietly or without a code: with introspection
//! disabled `{ __schema { .. } }` is `{"__schema": null}` and no error; a
//! subscription over HTTP gets "Subscriptions are not supported on this
//! transport." with no code, and an unknown or missing operation name an
//! uncoded error raised after every extension hook has run. Here each is an
//! error with its own code before anything executes, over HTTP and over the
//! websocket alike (both run the same hooks).
//!
//! Codes: INTROSPECTION_DISABLED (`__schema` or `__type` selected, also
//! through fragments, while `PODFORGE_INTROSPECTION` is off, the production
//! default), WEBSOCKET_REQUIRED (a subscription posted to `/graphql`; the
//! message names `/graphql/ws`), BAD_REQUEST (no operation of the given name,
//! or several operations and no name), METHOD_NOT_ALLOWED (a mutation sent by
//! `GET /graphql`, which the HTTP layer answers with status 405; checked
//! here, after automatic persisted queries have supplied the document, so a
//! hashed mutation sent by GET is refused too).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{Pos, Positioned, Request, ServerError, ServerResult, Variables};

use super::error::coded;

/// Marks a request that came over HTTP (`POST /graphql`), where subscriptions
/// cannot be served. The HTTP handler adds it to each request's data.
#[derive(Debug, Clone, Copy)]
pub struct OverHttp;

/// Marks a request that came by `GET /graphql`, where only queries run
/// (GraphQL over HTTP: a mutation by GET is refused with 405).
#[derive(Debug, Clone, Copy)]
pub struct OverGet;

/// The operation guards (see the module docs).
pub struct OperationGuard {
    /// Whether `__schema` and `__type` may be selected.
    pub introspection: bool,
}

impl ExtensionFactory for OperationGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Guard {
            introspection: self.introspection,
            operation_name: Mutex::new(None),
        })
    }
}

struct Guard {
    introspection: bool,
    /// The request's `operationName`, kept from `prepare_request` for `parse_query`.
    operation_name: Mutex<Option<String>>,
}

/// The operation a request runs, chosen as async-graphql will choose it.
fn selected<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Result<&'d Positioned<OperationDefinition>, ServerError> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), None) => Ok(op),
        (DocumentOperations::Single(_), Some(name)) => Err(coded(
            format!("the document has no operation named {name:?} (its one operation is anonymous)"),
            None,
            "BAD_REQUEST",
        )),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).ok_or_else(|| {
            coded(
                format!("the document has no operation named {name:?}"),
                None,
                "BAD_REQUEST",
            )
        }),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops
            .values()
            .next()
            .ok_or_else(|| coded("the document has no operation", None, "BAD_REQUEST")),
        (DocumentOperations::Multiple(_), None) => Err(coded(
            "the document has several operations: name the one to run in operationName",
            None,
            "BAD_REQUEST",
        )),
    }
}

/// The first `__schema` or `__type` field selected on the root type, through
/// inline fragments and fragment spreads (each fragment looked at once, so a
/// cycle, which validation refuses later, cannot loop here).
fn introspection_field(doc: &ExecutableDocument, set: &SelectionSet, seen: &mut HashSet<String>) -> Option<Pos> {
    for selection in &set.items {
        let found = match &selection.node {
            Selection::Field(field) => {
                matches!(field.node.name.node.as_str(), "__schema" | "__type").then_some(field.pos)
            }
            Selection::InlineFragment(inline) => introspection_field(doc, &inline.node.selection_set.node, seen),
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                if seen.insert(name.to_owned()) {
                    doc.fragments
                        .get(name)
                        .and_then(|f| introspection_field(doc, &f.node.selection_set.node, seen))
                } else {
                    None
                }
            }
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

#[async_trait::async_trait]
impl Extension for Guard {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        *self.operation_name.lock().unwrap_or_else(|p| p.into_inner()) = request.operation_name.clone();
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let name = self.operation_name.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let operation = selected(&doc, name.as_deref())?;
        if !self.introspection
            && let Some(pos) = introspection_field(&doc, &operation.node.selection_set.node, &mut HashSet::new())
        {
            return Err(coded(
                "introspection is disabled on this server",
                Some(pos),
                "INTROSPECTION_DISABLED",
            ));
        }
        if operation.node.ty == OperationType::Mutation && ctx.data_opt::<OverGet>().is_some() {
            return Err(coded(
                "mutations are not run by GET: send them with POST /graphql",
                Some(operation.pos),
                "METHOD_NOT_ALLOWED",
            ));
        }
        if operation.node.ty == OperationType::Subscription && ctx.data_opt::<OverHttp>().is_some() {
            return Err(coded(
                "subscriptions are served over the websocket endpoint /graphql/ws \
                 (graphql-transport-ws or graphql-ws), not over HTTP POST",
                Some(operation.pos),
                "WEBSOCKET_REQUIRED",
            ));
        }
        Ok(doc)
    }
}

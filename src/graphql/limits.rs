//! Limits on documents, in two passes that both run before async-graphql
//! validates anything.
//!
//! 1. A lexical pre-check ([`check`]) rejects hostile documents before they
//!    are parsed. async-graphql enforces depth, complexity and
//!    directives-per-field, but only after parsing the whole document, and
//!    some validation rules (overlapping fields) are quadratic in the number
//!    of selections. A 10,000-directive or 1,000-alias document therefore
//!    costs hundreds of milliseconds before it is refused. This check walks
//!    the document's tokens once (GraphQL spec, section 2.1 "Source Text"),
//!    counting:
//!    - selections: field names in selection sets, an alias and its field
//!      counting once, `__typename` included; fragment spreads count too;
//!    - directives (`@`);
//!    - selection-set nesting (`{` outside argument values);
//!
//!    and refusing documents over a size limit outright: async-graphql's
//!    parser takes about 60 ns a byte, so a document at the 2 MiB body limit
//!    would take over 100 ms to parse (large values travel as variables).
//!
//!    It bounds the document as written, not its expansion: a few spreads of
//!    fragments that spread each other grow exponentially once inlined.
//! 2. On the parsed document, [`super::cost`] computes cost and depth over
//!    the fragment graph without expanding it, and refuses fragment cycles,
//!    documents that cost too much and documents nested too deep. Only then
//!    does async-graphql see the document (its recursion check and its
//!    validation inline fragments).
//!
//! Both run in the prepare-request hook, before the engine parses anything.
//!
//! Refusals carry `extensions.code = GRAPHQL_VALIDATION_FAILED`.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest};
use async_graphql::{Request, ServerError, ServerResult};

use super::cost::{self, CostLimits};

/// Limits for [`QueryLimits`].
#[derive(Debug, Clone, Copy)]
pub struct DocumentLimits {
    /// Largest document, in bytes.
    pub max_bytes: usize,
    /// Most selections in one document.
    pub max_selections: usize,
    /// Most directives in one document.
    pub max_directives: usize,
    /// Most directives on one field, fragment spread or operation.
    pub max_directives_per_location: usize,
    /// Deepest `{` nesting of selection sets.
    pub max_depth: usize,
}

/// What the scan found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DocumentStats {
    /// Selections (fields, aliased fields counted once, spreads).
    pub selections: usize,
    /// `@` directives.
    pub directives: usize,
    /// Deepest selection-set nesting.
    pub depth: usize,
}

/// Scans `query`, stopping as soon as a limit is exceeded.
///
/// Errors: the message a client sees, naming the limit.
pub fn check(query: &str, limits: &DocumentLimits) -> Result<DocumentStats, String> {
    if query.len() > limits.max_bytes {
        return Err(format!(
            "the query document is larger than {} bytes; send large values as variables",
            limits.max_bytes
        ));
    }
    let b = query.as_bytes();
    let mut i = 0;
    let mut stats = DocumentStats::default();
    let (mut braces, mut parens) = (0usize, 0usize);
    // The previous significant token, to tell aliases, directive names and
    // type conditions from selections.
    let mut prev: u8 = 0;
    let mut prev_name_on = false;
    // Directives since the last name that is not a directive's own name.
    let mut run = 0usize;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            0xEF if b[i..].starts_with(&[0xEF, 0xBB, 0xBF]) => i += 3,
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' => {
                if b[i..].starts_with(b"\"\"\"") {
                    i += 3;
                    while i < b.len() && !b[i..].starts_with(b"\"\"\"") {
                        i += if b[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                    }
                    i += 3;
                } else {
                    i += 1;
                    while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
                prev = b'"';
                prev_name_on = false;
            }
            b'{' => {
                if parens == 0 {
                    run = 0;
                    braces += 1;
                    stats.depth = stats.depth.max(braces);
                    if stats.depth > limits.max_depth {
                        return Err(format!("the query nests selections deeper than {}", limits.max_depth));
                    }
                }
                prev = c;
                prev_name_on = false;
                i += 1;
            }
            b'}' => {
                if parens == 0 {
                    braces = braces.saturating_sub(1);
                }
                prev = c;
                prev_name_on = false;
                i += 1;
            }
            b'(' | b')' => {
                parens = if c == b'(' {
                    parens + 1
                } else {
                    parens.saturating_sub(1)
                };
                prev = c;
                prev_name_on = false;
                i += 1;
            }
            b'@' => {
                stats.directives += 1;
                if parens == 0 {
                    run += 1;
                    if run > limits.max_directives_per_location {
                        return Err(format!(
                            "a field or fragment carries more than {} directives",
                            limits.max_directives_per_location
                        ));
                    }
                }
                if stats.directives > limits.max_directives {
                    return Err(format!("the query uses more than {} directives", limits.max_directives));
                }
                prev = c;
                prev_name_on = false;
                i += 1;
            }
            b'.' if b[i..].starts_with(b"...") => {
                // A spread: `...Name` counts as a selection; `... on T` / `... {`
                // (inline fragments) do not, their fields do.
                prev = b'.';
                prev_name_on = false;
                i += 3;
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9') {
                    i += 1;
                }
                let name = &b[start..i];
                // Next significant byte, to spot an alias (`name :`).
                let mut j = i;
                while j < b.len() && matches!(b[j], b' ' | b'\t' | b'\n' | b'\r' | b',') {
                    j += 1;
                }
                let is_alias = j < b.len() && b[j] == b':';
                let in_selection = braces > 0 && parens == 0;
                let is_directive_name = prev == b'@';
                let is_type_condition = prev_name_on;
                let after_spread = prev == b'.';
                let is_inline_fragment = after_spread && name == b"on";
                let counts = in_selection && !is_alias && !is_directive_name && !is_type_condition;
                if counts && !is_inline_fragment {
                    stats.selections += 1;
                    if stats.selections > limits.max_selections {
                        return Err(format!("the query selects more than {} fields", limits.max_selections));
                    }
                }
                if parens == 0 && !is_directive_name {
                    run = 0;
                }
                prev_name_on = after_spread && name == b"on";
                prev = b'a';
            }
            _ => {
                // Numbers, `:`, `=`, `!`, `$`, `[`, `]`, `|`, `&` and stray bytes:
                // not counted; the parser reports real syntax errors.
                prev = c;
                prev_name_on = false;
                i += 1;
            }
        }
    }
    Ok(stats)
}

/// Extension running [`check`] before parsing and [`cost::analyse`] right
/// after, before the engine looks at the document, so that nothing in
/// async-graphql that inlines fragments ever sees an unbounded document;
/// refusals carry `extensions.code = GRAPHQL_VALIDATION_FAILED`.
pub struct QueryLimits {
    /// Bounds on the document as written.
    pub document: DocumentLimits,
    /// Bounds on the document with its fragments expanded.
    pub cost: CostLimits,
}

impl ExtensionFactory for QueryLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(QueryLimitsExtension {
            document: self.document,
            cost: self.cost.clone(),
        })
    }
}

struct QueryLimitsExtension {
    document: DocumentLimits,
    cost: CostLimits,
}

fn refusal(message: String) -> ServerError {
    let mut e = ServerError::new(message, None);
    e.extensions
        .get_or_insert_with(Default::default)
        .set("code", "GRAPHQL_VALIDATION_FAILED");
    e
}

#[async_trait::async_trait]
impl Extension for QueryLimitsExtension {
    /// Runs before async-graphql parses the document itself: its parse step
    /// ends with a recursion-depth check that follows every fragment spread
    /// (exponential in a fragment DAG with fan-out), so the parse hook would
    /// be too late. The document is parsed here once and handed on to the
    /// engine (`Request::set_parsed_query` by way of `parsed_query`), so it
    /// is not parsed twice. A document that does not parse goes on unchanged:
    /// the engine reports the syntax error (GRAPHQL_PARSE_FAILED).
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        check(&request.query, &self.document).map_err(refusal)?;
        let variables = std::mem::take(&mut request.variables);
        let measured = match request.parsed_query() {
            Ok(doc) => Some(cost::analyse(doc, &variables, &self.cost)),
            Err(_) => None,
        };
        request.variables = variables;
        if let Some(measured) = measured {
            let measured = measured.map_err(|e| refusal(e.to_string()))?;
            tracing::trace!(
                graphql.cost = measured.cost,
                graphql.depth = measured.depth,
                "document within limits"
            );
        }
        next.run(ctx, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DocumentLimits = DocumentLimits {
        max_bytes: 4_096,
        max_selections: 100,
        max_directives: 10,
        max_directives_per_location: 3,
        max_depth: 5,
    };

    #[test]
    fn counts_selections_aliases_and_spreads() {
        let q = r#"
            # a comment { { {
            query Q($f: Int = 3) @dir {
              a: me { id email }
              podcasts(first: $f, filter: {search: "x { y @z"}) {
                edges { node { ...Fields ... on Podcast { id } } }
              }
            }
            fragment Fields on Podcast { title @include(if: true) }
        "#;
        let s = check(q, &LIMITS).unwrap();
        // me id email podcasts edges node Fields id title = 9
        assert_eq!(s.selections, 9);
        assert_eq!(s.directives, 2);
        assert_eq!(s.depth, 5, "the inline fragment adds a level");
    }

    #[test]
    fn refuses_what_exceeds_a_limit() {
        let aliases = format!(
            "{{ {} }}",
            (0..101)
                .map(|i| format!("a{i}: __typename"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(check(&aliases, &LIMITS).unwrap_err().contains("more than 100 fields"));
        let directives = format!(
            "{{ {} }}",
            (0..11)
                .map(|i| format!("f{i} @skip(if: false)"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(
            check(&directives, &LIMITS)
                .unwrap_err()
                .contains("more than 10 directives")
        );
        let on_one = "{ me @a @b(x: 1) @c @d { id } }";
        assert!(check(on_one, &LIMITS).unwrap_err().contains("more than 3 directives"));
        assert!(check("{ me @a @b @c { id @a @b @c } }", &LIMITS).is_ok());
        let deep = format!("{}{}", "{ a ".repeat(6), "}".repeat(6));
        assert!(check(&deep, &LIMITS).unwrap_err().contains("deeper"));
        let long = format!("{{ a(x: \"{}\") }}", "x".repeat(4_090));
        assert!(check(&long, &LIMITS).unwrap_err().contains("larger than 4096 bytes"));
    }

    #[test]
    fn strings_and_block_strings_are_skipped() {
        let q = r#"{ a(x: """ { @ } \""" ", y: "\" @ {") }"#;
        assert_eq!(
            check(q, &LIMITS).unwrap(),
            DocumentStats {
                selections: 1,
                directives: 0,
                depth: 1
            }
        );
    }
}

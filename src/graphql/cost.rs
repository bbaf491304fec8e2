//! The cost and depth of a parsed document, computed over its fragment graph
//! without ever expanding it.
//!
//! A fragment that spreads another fragment three times, which spreads a
//! third three times, and so on, triples its expansion with every level: a
//! 2 KB document becomes 10^17 selections once fragments are inlined.
//! async-graphql inlines fragments right after parsing (its recursion-depth
//! check follows every spread) and during validation (its depth, complexity
//! and cache-control visitors run on every document, whether or not a limit
//! is set), so such a document must be refused before the engine sees it.
//! This module decides it in the prepare-request hook
//! ([`super::limits::QueryLimits`]), in time linear in the size of the
//! document:
//!
//! - the fragment graph (which fragment spreads which) is put in topological
//!   order; a cycle is refused (GraphQL spec, section 5.5.2.2 "Fragment
//!   spreads must not form cycles");
//! - each fragment's cost and depth are computed once, from those of the
//!   fragments it spreads (already computed), and reused at every spread:
//!   every selection of the document is walked exactly once
//!   ([`DocumentCost::visited`]);
//! - arithmetic saturates just above the limit, so a 10^17-fold expansion is
//!   one number over the limit, never a loop.
//!
//! Cost estimates the work the engine may do:
//! - every field counts 1: an aliased field is a field of its own, and
//!   `__typename` counts too;
//! - every fragment spread counts 1, plus the cost of its fragment (so a
//!   spread costs what inlining it would cost, and a spread of a tiny
//!   fragment is never free);
//! - an inline fragment counts nothing itself; its selections count;
//! - a paged field ([`PagedField`], e.g. `podcasts(first: N)`) multiplies the
//!   cost of its selections by its page size: the `first` argument (a literal
//!   or a variable, whose value comes from the request or else from its
//!   declared default), or the default page size when it is absent or null.
//!   A page size outside `0..=max` is refused by the resolver before any
//!   work, and an empty page is still validated, so both weigh as 1;
//! - a document costs the sum of its operations: async-graphql validates them
//!   all, whichever one runs. Fragments no operation uses cost nothing
//!   (validation refuses them, without inlining them).
//!
//! Depth counts fields nested in fields with fragments inlined (`__typename`
//! included); spreads and inline fragments add no level. Neither number is
//! ever below what async-graphql's own `limit_depth` / `limit_complexity`
//! count on the inlined document, so those stay on as a second line: they
//! only ever see documents bounded here.

use std::collections::HashMap;

use async_graphql::Variables;
use async_graphql::parser::types::{ExecutableDocument, Field, Selection, SelectionSet};
use async_graphql_value::{ConstValue, Value};

/// A field whose selections are repeated once per item of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagedField {
    /// Field name (aliases do not matter), e.g. `podcasts`. Matched on any
    /// type: a field of the same name elsewhere weighs the same (an
    /// overestimate, never an underestimate).
    pub field: &'static str,
    /// The page-size argument, e.g. `first`.
    pub argument: &'static str,
    /// Page size when the argument is absent or null.
    pub default: u64,
    /// Largest page size the resolver accepts.
    pub max: u64,
}

/// Limits of [`analyse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostLimits {
    /// Highest cost of a document (`PODFORGE_MAX_COMPLEXITY`).
    pub max_cost: u64,
    /// Deepest field nesting, fragments inlined (`PODFORGE_MAX_DEPTH`).
    pub max_depth: usize,
    /// The schema's paged fields.
    pub paged: Vec<PagedField>,
}

/// Deepest nesting of selection sets (fields and inline fragments) within
/// one operation or fragment definition that is walked at all. It bounds the
/// recursion of this module; the lexical scan that runs before parsing
/// refuses much shallower documents already.
pub const MAX_NESTING: usize = 32;

/// What [`analyse`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DocumentCost {
    /// Cost (see the module documentation), capped at the limit plus one.
    pub cost: u64,
    /// Deepest field nesting, fragments inlined.
    pub depth: usize,
    /// Selections walked: each selection of the document once, whatever the
    /// fan-out of its fragments (the document is never expanded).
    pub visited: usize,
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    /// The cost is above the limit.
    #[error(
        "the query costs more than {0} (fields and fragment spreads with fragments expanded, \
         selections under a paged field multiplied by its page size)"
    )]
    TooCostly(u64),
    /// Fields nest deeper than the limit.
    #[error("the query nests fields deeper than {0} (fragments expanded)")]
    TooDeep(usize),
    /// Selection sets nest deeper than [`MAX_NESTING`] in one definition.
    #[error("the query nests selection sets deeper than {0}")]
    TooNested(usize),
    /// Fragments spread each other in a circle (the names, first repeated last).
    #[error("fragments spread each other in a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// Cost and depth of one selection set.
#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    cost: u64,
    depth: usize,
}

/// Computes the cost and depth of `doc` and checks them against `limits`.
///
/// `variables` are the request's (for page sizes given as variables).
///
/// Errors: a fragment cycle, then the cost, then the depth limit.
pub fn analyse(
    doc: &ExecutableDocument,
    variables: &Variables,
    limits: &CostLimits,
) -> Result<DocumentCost, CostError> {
    let measured = measure(doc, variables, &limits.paged, limits.max_cost.saturating_add(1))?;
    if measured.cost > limits.max_cost {
        return Err(CostError::TooCostly(limits.max_cost));
    }
    if measured.depth > limits.max_depth {
        return Err(CostError::TooDeep(limits.max_depth));
    }
    Ok(measured)
}

/// Cost (saturating at `cap`) and depth of `doc`, without limits but cycles
/// and excessive nesting refused.
pub fn measure(
    doc: &ExecutableDocument,
    variables: &Variables,
    paged: &[PagedField],
    cap: u64,
) -> Result<DocumentCost, CostError> {
    let names: Vec<&str> = doc.fragments.keys().map(|n| n.as_str()).collect();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let bodies: Vec<&SelectionSet> = names
        .iter()
        .map(|n| &doc.fragments[*n].node.selection_set.node)
        .collect();
    let order = topological_order(&names, &bodies, &index)?;
    let mut walker = Walker {
        index,
        memo: vec![None; names.len()],
        paged,
        variables,
        defaults: variable_defaults(doc),
        cap,
        visited: 0,
    };
    for i in order {
        let m = walker.selection_set(bodies[i], 0)?;
        walker.memo[i] = Some(m);
    }
    let mut total = Measure::default();
    for (_, operation) in doc.operations.iter() {
        let m = walker.selection_set(&operation.node.selection_set.node, 0)?;
        total.cost = walker.add(total.cost, m.cost);
        total.depth = total.depth.max(m.depth);
    }
    Ok(DocumentCost {
        cost: total.cost,
        depth: total.depth,
        visited: walker.visited,
    })
}

/// Names of the fragments spread anywhere in `set` (nested fields and
/// inline fragments included), in document order.
fn spreads_in(set: &SelectionSet) -> Vec<&str> {
    let mut out = Vec::new();
    let mut stack = vec![set];
    while let Some(set) = stack.pop() {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(f) => stack.push(&f.node.selection_set.node),
                Selection::InlineFragment(f) => stack.push(&f.node.selection_set.node),
                Selection::FragmentSpread(s) => out.push(s.node.fragment_name.node.as_str()),
            }
        }
    }
    out
}

/// Fragment indices such that every fragment comes after those it spreads
/// (an iterative depth-first search, so a long chain cannot overflow the
/// stack). Spreads of unknown fragments are ignored here (validation
/// reports them). Errors: a cycle, named from its first fragment back to it.
fn topological_order(
    names: &[&str],
    bodies: &[&SelectionSet],
    index: &HashMap<&str, usize>,
) -> Result<Vec<usize>, CostError> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        Open,
        Done,
    }
    let edges: Vec<Vec<usize>> = bodies
        .iter()
        .map(|b| {
            spreads_in(b)
                .into_iter()
                .filter_map(|n| index.get(n).copied())
                .collect()
        })
        .collect();
    let mut state = vec![State::New; names.len()];
    let mut order = Vec::with_capacity(names.len());
    for root in 0..names.len() {
        if state[root] != State::New {
            continue;
        }
        // (fragment, next edge to follow)
        let mut stack = vec![(root, 0usize)];
        state[root] = State::Open;
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            if let Some(&target) = edges[node].get(*next) {
                *next += 1;
                match state[target] {
                    State::New => {
                        state[target] = State::Open;
                        stack.push((target, 0));
                    }
                    State::Open => {
                        let start = stack.iter().position(|(n, _)| *n == target).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[start..].iter().map(|(n, _)| names[*n].to_owned()).collect();
                        cycle.push(names[target].to_owned());
                        return Err(CostError::Cycle(cycle));
                    }
                    State::Done => {}
                }
            } else {
                state[node] = State::Done;
                order.push(node);
                stack.pop();
            }
        }
    }
    Ok(order)
}

/// The default value of each variable name, the largest integer among the
/// operations that declare it (fragments are shared by operations, so one
/// value per name keeps a fragment's cost the same wherever it is spread).
fn variable_defaults(doc: &ExecutableDocument) -> HashMap<&str, &ConstValue> {
    let mut out: HashMap<&str, &ConstValue> = HashMap::new();
    for (_, operation) in doc.operations.iter() {
        for d in &operation.node.variable_definitions {
            let Some(value) = d.node.default_value() else {
                continue;
            };
            let name = d.node.name.node.as_str();
            let keep = match out.get(name) {
                Some(old) => as_i128(value) > as_i128(old),
                None => true,
            };
            if keep {
                out.insert(name, value);
            }
        }
    }
    out
}

fn as_i128(v: &ConstValue) -> Option<i128> {
    match v {
        ConstValue::Number(n) => n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)),
        _ => None,
    }
}

struct Walker<'a> {
    index: HashMap<&'a str, usize>,
    /// Cost and depth of each fragment, once computed.
    memo: Vec<Option<Measure>>,
    paged: &'a [PagedField],
    variables: &'a Variables,
    defaults: HashMap<&'a str, &'a ConstValue>,
    cap: u64,
    visited: usize,
}

impl<'a> Walker<'a> {
    fn add(&self, a: u64, b: u64) -> u64 {
        a.saturating_add(b).min(self.cap)
    }

    fn selection_set(&mut self, set: &'a SelectionSet, nesting: usize) -> Result<Measure, CostError> {
        if nesting >= MAX_NESTING {
            return Err(CostError::TooNested(MAX_NESTING));
        }
        let mut total = Measure::default();
        for selection in &set.items {
            self.visited += 1;
            let m = match &selection.node {
                Selection::Field(f) => {
                    let children = self.selection_set(&f.node.selection_set.node, nesting + 1)?;
                    let weight = self.page_size(&f.node);
                    Measure {
                        cost: self.add(1, children.cost.saturating_mul(weight)),
                        depth: children.depth + 1,
                    }
                }
                Selection::InlineFragment(f) => self.selection_set(&f.node.selection_set.node, nesting + 1)?,
                Selection::FragmentSpread(s) => {
                    let fragment = self
                        .index
                        .get(s.node.fragment_name.node.as_str())
                        .and_then(|i| self.memo[*i])
                        .unwrap_or_default();
                    Measure {
                        cost: self.add(1, fragment.cost),
                        depth: fragment.depth,
                    }
                }
            };
            total.cost = self.add(total.cost, m.cost);
            total.depth = total.depth.max(m.depth);
        }
        Ok(total)
    }

    /// How many times `field`'s selections may be resolved.
    fn page_size(&self, field: &Field) -> u64 {
        let Some(paged) = self.paged.iter().find(|p| p.field == field.name.node.as_str()) else {
            return 1;
        };
        let value = match field.get_argument(paged.argument).map(|v| &v.node) {
            None | Some(Value::Null) => None,
            Some(Value::Variable(name)) => self
                .variables
                .get(name)
                .or_else(|| self.defaults.get(name.as_str()).copied())
                .filter(|v| !matches!(v, ConstValue::Null))
                .map(as_i128),
            Some(Value::Number(n)) => Some(n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))),
            // Any other value fails to coerce before the resolver runs.
            Some(_) => Some(None),
        };
        match value {
            None => paged.default.max(1),
            Some(Some(n)) if (0..=i128::from(paged.max)).contains(&n) => (n as u64).max(1),
            Some(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Worked examples; the property tests over generated fragment DAGs are
    //! in `tests/it/query_cost.rs` (they use test support's generators).

    use async_graphql::parser::parse_query;
    use serde_json::json;

    use super::*;

    const PAGED: &[PagedField] = &[PagedField {
        field: "podcasts",
        argument: "first",
        default: 20,
        max: 100,
    }];

    fn limits(max_cost: u64, max_depth: usize) -> CostLimits {
        CostLimits {
            max_cost,
            max_depth,
            paged: PAGED.to_vec(),
        }
    }

    fn cost_of(query: &str, variables: serde_json::Value) -> Result<DocumentCost, CostError> {
        let doc = parse_query(query).unwrap();
        measure(&doc, &Variables::from_json(variables), PAGED, u64::MAX)
    }

    #[test]
    fn fields_aliases_spreads_and_inline_fragments_count() {
        let q = "{ me { id a: id __typename } ...F ... on Query { x } } fragment F on Query { y z }";
        // me, id, a: id, __typename (4) + spread (1) + y z (2) + x (1)
        assert_eq!(cost_of(q, json!({})).unwrap().cost, 8);
        assert_eq!(cost_of(q, json!({})).unwrap().depth, 2);
        // Each spread costs its fragment again; depth goes through it.
        let q = "{ ...F ...F a { ...F } } fragment F on T { b { c } }";
        let m = cost_of(q, json!({})).unwrap();
        assert_eq!(m.cost, 3 + 3 + (1 + 3));
        assert_eq!(m.depth, 3);
        assert_eq!(m.visited, 6, "every selection once: ...F ...F a ...F b c");
    }

    #[test]
    fn paged_fields_weigh_by_their_page_size() {
        let q = "query($n: Int = 7) { podcasts(first: $n) { edges { node { id } } } }";
        assert_eq!(cost_of(q, json!({})).unwrap().cost, 1 + 7 * 3, "declared default");
        assert_eq!(cost_of(q, json!({"n": 50})).unwrap().cost, 1 + 50 * 3, "request value");
        assert_eq!(
            cost_of(q, json!({"n": null})).unwrap().cost,
            1 + 20 * 3,
            "null: default page"
        );
        let literal = |first: &str| {
            cost_of(&format!("{{ podcasts{first} {{ totalCount }} }}"), json!({}))
                .unwrap()
                .cost
        };
        assert_eq!(literal(""), 1 + 20, "absent: default page");
        assert_eq!(literal("(first: 100)"), 1 + 100);
        assert_eq!(literal("(first: 0)"), 2, "an empty page is still validated");
        assert_eq!(literal("(first: 101)"), 2, "refused by the resolver");
        assert_eq!(literal("(first: -1)"), 2);
        assert_eq!(literal("(first: \"ten\")"), 2, "does not coerce");
        // Through a fragment, with the alias counted apart.
        let q =
            "{ ...P a: podcasts(first: 2) { totalCount } } fragment P on Query { podcasts(first: 3) { totalCount } }";
        assert_eq!(cost_of(q, json!({})).unwrap().cost, (1 + 1 + 3) + (1 + 2));
    }

    #[test]
    fn cycles_unknown_and_unused_fragments() {
        for q in [
            "{ ...A } fragment A on T { ...A }",
            "{ ...A } fragment A on T { x { ...B } } fragment B on T { ... { ...A } }",
            // Unused, but a cycle all the same (validation refuses both).
            "{ x } fragment A on T { ...B } fragment B on T { ...A }",
        ] {
            match cost_of(q, json!({})) {
                Err(CostError::Cycle(names)) => assert_eq!(names.first(), names.last(), "{q}: {names:?}"),
                other => panic!("{q}: {other:?}"),
            }
        }
        let e = cost_of("{ ...A } fragment A on T { ...B } fragment B on T { ...A }", json!({})).unwrap_err();
        assert!(
            e.to_string().contains("A -> B -> A") || e.to_string().contains("B -> A -> B"),
            "{e}"
        );
        // An unknown fragment costs its spread; validation reports it.
        assert_eq!(cost_of("{ ...Nope }", json!({})).unwrap().cost, 1);
        // An unused fragment costs nothing.
        assert_eq!(cost_of("{ x } fragment A on T { a b c }", json!({})).unwrap().cost, 1);
        // Every operation is validated: costs add up, depth is the deepest.
        let m = cost_of("query A { x { y } } query B { z }", json!({})).unwrap();
        assert_eq!((m.cost, m.depth), (3, 2));
    }

    #[test]
    fn limits_refuse_with_a_message_naming_them() {
        let doc = parse_query("{ a { b { c } } }").unwrap();
        let vars = Variables::default();
        assert!(analyse(&doc, &vars, &limits(3, 3)).is_ok());
        let e = analyse(&doc, &vars, &limits(2, 3)).unwrap_err();
        assert_eq!(e, CostError::TooCostly(2));
        assert!(e.to_string().contains("costs more than 2"), "{e}");
        let e = analyse(&doc, &vars, &limits(3, 2)).unwrap_err();
        assert!(e.to_string().contains("deeper than 2"), "{e}");
        let deep = format!("{}x{}", "{ ... ".repeat(40), " }".repeat(40));
        let doc = parse_query(deep).unwrap();
        assert_eq!(
            analyse(&doc, &vars, &limits(1000, 100)).unwrap_err(),
            CostError::TooNested(MAX_NESTING)
        );
    }
}

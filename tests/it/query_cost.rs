//! Property tests of the query-cost analysis (`podforge::graphql::cost`)
//! over generated fragment DAGs with fan-out and nesting
//! (`podforge::testing::documents`): the memoized walk against a naive
//! expansion, the decision against the limits, cycles, and chains far too
//! large to expand.

use async_graphql::Variables;
use async_graphql::parser::parse_query;
use async_graphql::parser::types::{ExecutableDocument, Field, Selection, SelectionSet};
use async_graphql_value::{ConstValue, Value};
use podforge::graphql::cost::{CostError, CostLimits, PagedField, analyse, measure};
use podforge::testing::documents::{self, GenDocument};
use proptest::prelude::*;
use serde_json::json;

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

/// The page size the naive expansion uses: written apart from
/// the analysis's, for the generated documents' `$n: Int = 5`.
fn naive_page(field: &Field, variables: &Variables) -> u128 {
    if field.name.node != "podcasts" {
        return 1;
    }
    let n = match field.get_argument("first").map(|v| v.node.clone()) {
        None | Some(Value::Null) => return 20,
        Some(Value::Variable(name)) => match variables.get(&name) {
            None => 5,
            Some(ConstValue::Null) => return 20,
            Some(ConstValue::Number(n)) => n.as_i64().unwrap_or(-1),
            Some(_) => -1,
        },
        Some(Value::Number(n)) => n.as_i64().unwrap_or(-1),
        Some(_) => -1,
    };
    if (1..=100).contains(&n) { n as u128 } else { 1 }
}

/// Cost and depth by inlining every spread, as async-graphql's
/// validation does; `None` past `budget` selections.
fn naive_set(
    doc: &ExecutableDocument,
    set: &SelectionSet,
    variables: &Variables,
    budget: &mut u64,
) -> Option<(u128, usize)> {
    let (mut cost, mut depth) = (0u128, 0usize);
    for s in &set.items {
        *budget = budget.checked_sub(1)?;
        match &s.node {
            Selection::Field(f) => {
                let (c, d) = naive_set(doc, &f.node.selection_set.node, variables, budget)?;
                cost += 1 + c * naive_page(&f.node, variables);
                depth = depth.max(d + 1);
            }
            Selection::InlineFragment(f) => {
                let (c, d) = naive_set(doc, &f.node.selection_set.node, variables, budget)?;
                cost += c;
                depth = depth.max(d);
            }
            Selection::FragmentSpread(s) => {
                cost += 1;
                if let Some(f) = doc.fragments.get(&s.node.fragment_name.node) {
                    let (c, d) = naive_set(doc, &f.node.selection_set.node, variables, budget)?;
                    cost += c;
                    depth = depth.max(d);
                }
            }
        }
    }
    Some((cost, depth))
}

fn naive(doc: &ExecutableDocument, variables: &Variables) -> Option<(u128, usize)> {
    let mut budget = 2_000_000;
    let (mut cost, mut depth) = (0, 0);
    for (_, op) in doc.operations.iter() {
        let (c, d) = naive_set(doc, &op.node.selection_set.node, variables, &mut budget)?;
        cost += c;
        depth = depth.max(d);
    }
    Some((cost, depth))
}

/// Selections in the document as written.
fn written(doc: &ExecutableDocument) -> usize {
    fn count(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|s| {
                1 + match &s.node {
                    Selection::Field(f) => count(&f.node.selection_set.node),
                    Selection::InlineFragment(f) => count(&f.node.selection_set.node),
                    Selection::FragmentSpread(_) => 0,
                }
            })
            .sum()
    }
    doc.operations
        .iter()
        .map(|(_, op)| count(&op.node.selection_set.node))
        .chain(doc.fragments.values().map(|f| count(&f.node.selection_set.node)))
        .sum()
}

fn variables() -> impl Strategy<Value = Variables> {
    prop_oneof![
        Just(Variables::default()),
        (-5i64..130).prop_map(|n| Variables::from_json(json!({ "n": n }))),
        Just(Variables::from_json(json!({ "n": null }))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// On DAGs small enough to expand, the memoized walk gives exactly the
    /// naive expansion's cost and depth, walking each written selection once.
    #[test]
    fn memoized_cost_equals_the_naive_expansion(doc in documents::documents(6, 3, 4), vars in variables()) {
        let text = doc.render();
        let parsed = parse_query(&text).unwrap();
        let expanded = naive(&parsed, &vars);
        prop_assume!(expanded.is_some());
        let (cost, depth) = expanded.unwrap_or_default();
        let m = measure(&parsed, &vars, PAGED, u64::MAX).unwrap();
        prop_assert_eq!(u128::from(m.cost), cost, "{}", text);
        prop_assert_eq!(m.depth, depth, "{}", text);
        prop_assert_eq!(m.visited, written(&parsed), "{}", text);
    }

    /// Over-limit documents are refused, and the others accepted, as the
    /// naive expansion decides; the cost limit is checked first.
    #[test]
    fn the_decision_is_the_naive_expansions(
        doc in documents::documents(6, 3, 4),
        vars in variables(),
        max_cost in 1u64..3_000,
        max_depth in 1usize..10,
    ) {
        let text = doc.render();
        let parsed = parse_query(&text).unwrap();
        let expanded = naive(&parsed, &vars);
        prop_assume!(expanded.is_some());
        let (cost, depth) = expanded.unwrap_or_default();
        let got = analyse(&parsed, &vars, &limits(max_cost, max_depth));
        let want = if cost > u128::from(max_cost) {
            Err(CostError::TooCostly(max_cost))
        } else if depth > max_depth {
            Err(CostError::TooDeep(max_depth))
        } else {
            Ok((cost as u64, depth))
        };
        prop_assert_eq!(got.map(|m| (m.cost, m.depth)), want, "{}", text);
    }

    /// A spread back to an earlier fragment (or itself) that reaches it is a cycle, refused.
    #[test]
    fn cycles_are_refused(doc in documents::documents(6, 2, 3), from in any::<usize>(), to in any::<usize>()) {
        prop_assume!(!doc.fragments.is_empty());
        let n = doc.fragments.len();
        let from = from % n;
        let to = to % (from + 1);
        // `from` spreads `to` (a back edge) and `to` spreads `from`, so
        // `from -> to -> from` closes (or `from -> from`).
        let doc = GenDocument { back_edges: vec![(from, to)], ..doc };
        let header = format!("fragment F{to} on Query {{");
        let text = doc.render().replace(&header, &format!("{header} ...F{from}"));
        let parsed = parse_query(&text).unwrap();
        let refused = matches!(measure(&parsed, &Variables::default(), PAGED, u64::MAX), Err(CostError::Cycle(_)));
        prop_assert!(refused, "{}", text);
    }

    /// Chains with fan-out whose expansion cannot be computed (up to
    /// 4^60 leaves) are refused after walking each written selection once.
    #[test]
    fn fan_out_chains_are_decided_without_expanding(levels in 10usize..60, fan_out in 2u8..=4, fields in 0usize..4) {
        let text = documents::fan_out_chain(levels, fan_out, fields).render();
        let parsed = parse_query(&text).unwrap();
        let m = measure(&parsed, &Variables::default(), PAGED, 501).unwrap();
        prop_assert_eq!(m.cost, 501);
        prop_assert_eq!(m.visited, written(&parsed));
        prop_assert_eq!(analyse(&parsed, &Variables::default(), &limits(500, 12)), Err(CostError::TooCostly(500)));
    }
}

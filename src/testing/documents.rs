//! Generated GraphQL documents for the query-cost property tests and the
//! benchmark (`scripts/bench-query-cost.sh`): random fragment DAGs with
//! fan-out (a fragment spreading later fragments, each several times) and
//! random nesting of fields, aliases, inline fragments and paged fields.
//!
//! Documents are syntactically valid GraphQL; their fields need not exist in
//! the schema (the cost analysis runs before validation and does not look
//! at types).

use proptest::prelude::*;

/// Field names used by generated documents: some from the schema, one paged
/// (`podcasts`).
pub const FIELD_NAMES: &[&str] = &["__typename", "id", "title", "node", "edges", "me", "podcasts"];

/// A page-size argument of a generated field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum First {
    /// `first: N`.
    Literal(i32),
    /// `first: $n` (the operation declares `$n: Int = 5`).
    Variable,
    /// `first: null`.
    Null,
}

/// One generated selection.
#[derive(Debug, Clone)]
pub enum GenSelection {
    /// A field, maybe aliased, maybe with a `first` argument, maybe with
    /// selections of its own.
    Field {
        /// Index into [`FIELD_NAMES`].
        name: usize,
        /// `a{n}:` alias.
        alias: Option<u8>,
        /// `(first: ...)`.
        first: Option<First>,
        /// Sub-selections (none for a leaf).
        children: Vec<GenSelection>,
    },
    /// `...F{k}` repeated `times` times; `k` is chosen among the fragments
    /// the enclosing definition may spread (later ones), from `pick`.
    Spread {
        /// Chooses the target fragment.
        pick: u16,
        /// How many times it is spread here (fan-out).
        times: u8,
    },
    /// `... on Query { ... }` or `... { ... }`.
    Inline {
        /// With a type condition.
        typed: bool,
        /// Its selections.
        children: Vec<GenSelection>,
    },
}

/// A generated document: an operation over fragments `F0..Fn`, where a
/// fragment only spreads fragments after it (a DAG), plus `back_edges`
/// (spreads from a fragment to an earlier one or itself, which make cycles).
#[derive(Debug, Clone)]
pub struct GenDocument {
    /// The operation's selections.
    pub operation: Vec<GenSelection>,
    /// Each fragment's selections.
    pub fragments: Vec<Vec<GenSelection>>,
    /// `(from, to)` spreads added to fragment `from`, `to <= from`.
    pub back_edges: Vec<(usize, usize)>,
}

/// Selections nested up to `depth` levels, `width` items per set at most.
pub fn selections(depth: u32, width: usize) -> impl Strategy<Value = Vec<GenSelection>> {
    let first = prop_oneof![
        (-1i32..120).prop_map(First::Literal),
        Just(First::Variable),
        Just(First::Null),
    ];
    let leaf = prop_oneof![
        4 => (0..FIELD_NAMES.len(), proptest::option::of(0u8..4), proptest::option::weighted(0.2, first.clone()))
            .prop_map(|(name, alias, first)| GenSelection::Field { name, alias, first, children: Vec::new() }),
        3 => (any::<u16>(), 1u8..=4).prop_map(|(pick, times)| GenSelection::Spread { pick, times }),
    ];
    let set = leaf.prop_recursive(depth, 64, width as u32, move |inner| {
        let children = proptest::collection::vec(inner, 1..=width);
        let first = prop_oneof![
            (-1i32..120).prop_map(First::Literal),
            Just(First::Variable),
            Just(First::Null),
        ];
        prop_oneof![
            3 => (0..FIELD_NAMES.len(), proptest::option::of(0u8..4), proptest::option::weighted(0.3, first), children.clone())
                .prop_map(|(name, alias, first, children)| GenSelection::Field { name, alias, first, children }),
            1 => (any::<bool>(), children).prop_map(|(typed, children)| GenSelection::Inline { typed, children }),
        ]
    });
    proptest::collection::vec(set, 1..=width)
}

/// Documents of up to `max_fragments` fragments, nesting up to `depth`.
pub fn documents(max_fragments: usize, depth: u32, width: usize) -> impl Strategy<Value = GenDocument> {
    (
        selections(depth, width),
        proptest::collection::vec(selections(depth, width), 0..=max_fragments),
    )
        .prop_map(|(operation, fragments)| GenDocument {
            operation,
            fragments,
            back_edges: Vec::new(),
        })
}

/// A chain of `levels` fragments, each spreading the next `fan_out` times
/// beside a few fields: its expansion has `fan_out^levels` leaves.
pub fn fan_out_chain(levels: usize, fan_out: u8, fields: usize) -> GenDocument {
    let leaf = |name: usize| GenSelection::Field {
        name,
        alias: None,
        first: None,
        children: Vec::new(),
    };
    let fragments = (0..levels)
        .map(|i| {
            let mut set: Vec<GenSelection> = (0..fields).map(|k| leaf(k % FIELD_NAMES.len())).collect();
            if i + 1 < levels {
                set.push(GenSelection::Spread {
                    pick: 0,
                    times: fan_out,
                });
            }
            set
        })
        .collect();
    GenDocument {
        operation: vec![GenSelection::Spread { pick: 0, times: 1 }],
        fragments,
        back_edges: Vec::new(),
    }
}

impl GenDocument {
    /// The document as GraphQL text.
    pub fn render(&self) -> String {
        let n = self.fragments.len();
        let mut out = String::new();
        // The operation may spread any fragment.
        render_set(&mut out, &self.operation, &|pick| {
            (n > 0).then(|| usize::from(pick) % n)
        });
        out.push_str("}\n");
        for (i, set) in self.fragments.iter().enumerate() {
            out.push_str(&format!("fragment F{i} on Query {{"));
            // A fragment spreads only later fragments.
            let later = n - i - 1;
            render_set(&mut out, set, &|pick| {
                (later > 0).then(|| i + 1 + usize::from(pick) % later)
            });
            for (_, to) in self.back_edges.iter().filter(|(from, _)| *from == i) {
                out.push_str(&format!(" ...F{to}"));
            }
            out.push_str("}\n");
        }
        // `$n` is declared only where used (validation refuses unused variables).
        let head = if out.contains("$n") {
            "query Q($n: Int = 5) {"
        } else {
            "query Q {"
        };
        format!("{head}{out}")
    }
}

fn render_set(out: &mut String, set: &[GenSelection], target: &dyn Fn(u16) -> Option<usize>) {
    let before = out.len();
    for s in set {
        match s {
            GenSelection::Field {
                name,
                alias,
                first,
                children,
            } => {
                out.push(' ');
                if let Some(a) = alias {
                    out.push_str(&format!("a{a}: "));
                }
                out.push_str(FIELD_NAMES[*name]);
                match first {
                    Some(First::Literal(k)) => out.push_str(&format!("(first: {k})")),
                    Some(First::Variable) => out.push_str("(first: $n)"),
                    Some(First::Null) => out.push_str("(first: null)"),
                    None => {}
                }
                if !children.is_empty() {
                    out.push_str(" {");
                    render_set(out, children, target);
                    out.push_str(" }");
                }
            }
            GenSelection::Spread { pick, times } => {
                if let Some(k) = target(*pick) {
                    for _ in 0..*times {
                        out.push_str(&format!(" ...F{k}"));
                    }
                }
            }
            GenSelection::Inline { typed, children } => {
                out.push_str(if *typed { " ... on Query {" } else { " ... {" });
                render_set(out, children, target);
                out.push_str(" }");
            }
        }
    }
    if out.len() == before {
        // Every selection set holds at least one selection.
        out.push_str(" __typename");
    }
}

//! Query-cost decision time (not a test): how long the serving schema takes
//! to accept or refuse documents, from the raw text to a response (lexical
//! scan, parse, cost analysis, then validation and execution of what is
//! accepted; no database: resolvers that need one answer UNAUTHENTICATED).
//!
//! Documents: `N` generated ones (random fragment DAGs with fan-out and
//! nesting, `podforge::testing::documents`, fixed seed), fan-out chains (each
//! would expand to `fan_out^levels` selections), documents just within the
//! limits (which go on to validation and execution), and requests at the
//! 2 MiB body limit (a long string, a long list argument or a long comment
//! in the document; long values as variables). Reports, per family, how many
//! were refused by the limits or by validation, and the median, p99 and
//! worst decision time.
//!
//!   cargo bench --bench query_cost -- [N]      (or scripts/bench-query-cost.sh)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark fails loudly"
)]

use std::time::{Duration, Instant};

use async_graphql::{Request, Variables};
use podforge::graphql::{PodforgeSchema, error::ErrorCodes, limited, schema};
use podforge::testing::documents::{self, GenDocument};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

struct Family {
    name: &'static str,
    times: Vec<Duration>,
    /// Refused by the document limits (size, lexical scan, cost analysis).
    limits: usize,
    /// Refused by async-graphql's validation (unknown fields and the like).
    invalid: usize,
    largest: usize,
}

/// Messages of refusals by `graphql::limits` and `graphql::cost`.
const LIMIT_MESSAGES: &[&str] = &["costs more than", "deeper than", "cycle", "larger than", "more than"];

async fn decide(schema: &PodforgeSchema, family: &mut Family, request: Request) {
    let size = request.query.len();
    let started = Instant::now();
    let response = schema.execute(request).await;
    family.times.push(started.elapsed());
    family.largest = family.largest.max(size);
    if let Some(e) = response.errors.first() {
        let code = e.extensions.as_ref().and_then(|x| x.get("code")).map(|c| c.to_string());
        if code.is_some_and(|c| c.contains("GRAPHQL_VALIDATION_FAILED")) {
            if LIMIT_MESSAGES.iter().any(|m| e.message.contains(m)) {
                family.limits += 1;
            } else {
                family.invalid += 1;
            }
        }
    }
}

fn report(family: &mut Family) -> Duration {
    family.times.sort();
    let worst = family.times.last().copied().unwrap_or_default();
    let at = |q: f64| {
        let i = ((family.times.len() as f64 - 1.0) * q).round() as usize;
        family.times.get(i).copied().unwrap_or_default().as_secs_f64() * 1e3
    };
    println!(
        "{:<36} {:>5} docs: {:>5} over a limit, {:>5} invalid, {:>5} run; largest {:>8} B; \
         median {:>7.3} ms, p99 {:>7.3} ms, worst {:>7.3} ms",
        family.name,
        family.times.len(),
        family.limits,
        family.invalid,
        family.times.len() - family.limits - family.invalid,
        family.largest,
        at(0.5),
        at(0.99),
        worst.as_secs_f64() * 1e3
    );
    worst
}

fn family(name: &'static str) -> Family {
    Family {
        name,
        times: Vec::new(),
        limits: 0,
        invalid: 0,
        largest: 0,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000);
    let config = podforge::testing::test_config("postgres://unused@127.0.0.1/unused");
    let limits = config.limits.clone();
    let schema = limited(schema(), &limits).extension(ErrorCodes).finish();
    let body_limit = limits.max_body_bytes;
    println!(
        "limits: cost {}, depth {}, body {} B",
        limits.max_complexity, limits.max_depth, body_limit
    );

    let mut worst = Duration::ZERO;

    let mut generated = family("generated DAGs (fan-out, nesting)");
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]));
    let strategy = documents::documents(12, 4, 6);
    for _ in 0..n {
        let doc: GenDocument = strategy.new_tree(&mut runner).unwrap().current();
        let text = doc.render();
        if text.len() <= body_limit {
            decide(&schema, &mut generated, Request::new(text)).await;
        }
    }
    worst = worst.max(report(&mut generated));

    let mut chains = family("fan-out chains (2..4, 10..150 deep)");
    for levels in [10, 20, 36, 60, 100, 150] {
        for fan_out in 2..=4u8 {
            for fields in [0, 3] {
                let text = documents::fan_out_chain(levels, fan_out, fields).render();
                decide(&schema, &mut chains, Request::new(text)).await;
            }
        }
    }
    worst = worst.max(report(&mut chains));

    // Documents just within the limits, which validation and execution see.
    let mut within = family("just within the limits");
    let aliases: Vec<String> = (0..499).map(|i| format!("a{i}: __typename")).collect();
    let page = "query($n: Int) { podcasts(first: $n) { totalCount edges { cursor node { id title status } } } }";
    let mut requests = vec![
        Request::new(format!("{{ {} }}", aliases.join(" "))),
        Request::new(page).variables(Variables::from_json(serde_json::json!({"n": 71}))),
    ];
    for levels in 2..=6 {
        requests.push(Request::new(documents::fan_out_chain(levels, 3, 1).render()));
    }
    for request in requests {
        decide(&schema, &mut within, request).await;
    }
    worst = worst.max(report(&mut within));

    let mut big = family("2 MiB bodies (document, variables)");
    let room = body_limit - 200;
    let docs = [
        format!(
            "{{ podcasts(filter: {{search: \"{}\"}}) {{ totalCount }} }}",
            "x".repeat(room)
        ),
        format!(
            "{{ podcasts(filter: {{status: [{}]}}) {{ totalCount }} }}",
            "COMPLETED, ".repeat(room / 11)
        ),
        format!("{{ __typename }} # {}", "y".repeat(room)),
        format!(
            "{}# {}",
            documents::fan_out_chain(36, 3, 1).render(),
            "z".repeat(room - 2_000)
        ),
    ];
    for text in docs {
        assert!(text.len() <= body_limit);
        decide(&schema, &mut big, Request::new(text)).await;
    }
    // The same sizes as variables, which is where large values belong.
    let statuses: Vec<&str> = vec!["COMPLETED"; room / 12];
    let search = "x".repeat(room);
    for variables in [
        serde_json::json!({"f": {"status": statuses}}),
        serde_json::json!({"f": {"search": search}}),
    ] {
        let request = Request::new("query($f: PodcastFilter) { podcasts(filter: $f) { totalCount } }")
            .variables(Variables::from_json(variables));
        decide(&schema, &mut big, request).await;
    }
    worst = worst.max(report(&mut big));

    println!("worst decision time: {:.3} ms", worst.as_secs_f64() * 1e3);
}

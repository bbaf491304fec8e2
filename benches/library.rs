//! Library query benchmark (not a test): what the transaction-pooler mode
//! costs per request.
//!
//! For each setup, a fresh database with one user and 20 podcasts, the real
//! router on a real port, then `concurrency` clients sending the library
//! query (a page of 20 with their status, `me`, the total count) for
//! `seconds`, after a one-second warm-up. Setups:
//! - `direct`: `DATABASE_URL` at PostgreSQL, `PODFORGE_DB_POOLER=none` (the default);
//! - `direct+transaction`: the same server with `PODFORGE_DB_POOLER=transaction`
//!   (the mode's own cost: a transaction per checkout, statements prepared
//!   each time);
//! - `pgbouncer+transaction`: through PgBouncer (transaction pooling) with the
//!   mode on, as operators run it (adds PgBouncer's hop).
//!
//!   cargo bench --bench library -- [seconds] [concurrency]
//!   (scripts/bench-library.sh; `--profile dev` for a debug build)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark fails loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use podforge::config::Pooler;
use podforge::testing::TestApp;
use podforge::testing::pgbouncer::PgBouncer;
use serde_json::json;

const LIBRARY: &str = "query { me { email } podcasts(first: 20) {
  totalCount edges { cursor node { id title topic status stage progress createdAt } }
  pageInfo { hasNextPage endCursor } } }";

struct Run {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn measure(app: &TestApp, token: &str, seconds: u64, concurrency: usize) -> Run {
    let body = json!({"query": LIBRARY}).to_string();
    let url = app.graphql_url();
    let client = reqwest::Client::new();
    let one = {
        let (client, url, body, token) = (client.clone(), url.clone(), body.clone(), token.to_owned());
        move || {
            let (client, url, body, token) = (client.clone(), url.clone(), body.clone(), token.clone());
            async move {
                let started = Instant::now();
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let text = resp.text().await.unwrap();
                (started.elapsed(), !text.contains("\"errors\""))
            }
        }
    };
    // Warm-up: every pooled connection opened and used.
    let warm_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < warm_until {
        let batch: Vec<_> = (0..concurrency).map(|_| tokio::spawn(one())).collect();
        for b in batch {
            b.await.unwrap();
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (stop, one) = (stop.clone(), one.clone());
            tokio::spawn(async move {
                let mut out = (Vec::new(), 0usize);
                while !stop.load(Ordering::Relaxed) {
                    let (latency, ok) = one().await;
                    out.0.push(latency);
                    if !ok {
                        out.1 += 1;
                    }
                }
                out
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut run = Run {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for w in workers {
        let (latencies, errors) = w.await.unwrap();
        run.requests += latencies.len();
        run.errors += errors;
        run.latencies.extend(latencies);
    }
    run.elapsed = started.elapsed();
    run.latencies.sort();
    run
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let bouncer = PgBouncer::start().await.unwrap();
    println!("library query, {concurrency} clients, {seconds} s per setup, pool of 10");
    println!("| setup | req/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|");
    for (name, through_bouncer, pooler) in [
        ("direct", false, Pooler::None),
        ("direct+transaction", false, Pooler::Transaction),
        ("pgbouncer+transaction", true, Pooler::Transaction),
    ] {
        let app = TestApp::with_config(|c| {
            c.database.pool_size = 10;
            if through_bouncer {
                bouncer.route(c, pooler);
            } else {
                c.database.listen_url = Some(c.database.url.clone());
                c.database.pooler = pooler;
            }
        })
        .await;
        let user = app.user().await;
        for i in 0..20 {
            let v = app
                .gql(
                    "mutation($i: GeneratePodcastInput!) { generatePodcast(input: $i) { id } }",
                    json!({"i": {"topic": format!("Topic number {i}")}}),
                    Some(&user.token),
                )
                .await;
            assert!(v["errors"].is_null(), "{v}");
        }
        let run = measure(&app, &user.token, seconds, concurrency).await;
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} |",
            run.requests as f64 / run.elapsed.as_secs_f64(),
            percentile(&run.latencies, 0.50),
            percentile(&run.latencies, 0.99),
            run.errors
        );
        app.stop().await;
    }
}

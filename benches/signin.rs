//! Sign-in flood benchmark (not a test): what a burst of parallel sign-ins
//! does to a `podforge serve` process's memory and answers.
//!
//! Starts a real server with the production Argon2id cost (19 MiB, 2
//! iterations), registers one account, then sends two bursts of N parallel
//! `login` mutations with a wrong password, and reports each burst's answers
//! (codes), duration and the server's RSS after it, and the peak.
//!
//!   cargo bench --profile dev --bench signin -- [parallel] [--unthrottled]
//!   --unthrottled: sign-in throttling off, so every attempt hashes (the
//!   hashing budget alone bounds memory); PODFORGE_BIN=/path/to/podforge
//!   measures another build (scripts/bench-signin.sh runs the variants)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark fails loudly"
)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podforge::testing::TestDb;
use serde_json::{Value, json};

/// `VmRSS` and `VmHWM` of `pid`, KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn gql(client: &reqwest::Client, base: &str, query: &str, variables: Value) -> Value {
    client
        .post(format!("{base}/graphql"))
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::main]
async fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let unthrottled = raw.iter().any(|a| a == "--unthrottled");
    let args: Vec<&String> = raw.iter().filter(|a| !a.starts_with("--")).collect();
    let parallel: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(64);
    let binary = std::env::var("PODFORGE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_podforge").to_owned());

    let db = TestDb::new().await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(&binary);
    command
        .args(["serve", "--workers", "0"])
        .env("DATABASE_URL", &db.url)
        .env("PODFORGE_BIND", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", "bench-secret-bench-secret-bench-secret")
        .env("PODFORGE_LLM", "none")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null());
    if unthrottled {
        command
            .env("PODFORGE_SIGNIN_ACCOUNT_LIMIT", "0")
            .env("PODFORGE_SIGNIN_ADDRESS_LIMIT", "0");
    }
    let server = KillOnDrop(command.spawn().unwrap());
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    while !reqwest::get(format!("{base}/readyz"))
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(parallel)
        .build()
        .unwrap();
    let reg = gql(
        &client,
        &base,
        "mutation { register(input: {email: \"flood@example.com\", password: \"the right password\"}) { accessToken } }",
        json!({}),
    )
    .await;
    assert!(reg["data"]["register"].is_object(), "{reg}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cold, _) = memory_kib(pid);
    println!("server {binary}");
    println!(
        "{parallel} parallel logins per burst, wrong password, Argon2id 19 MiB x 2, throttling {}",
        if unthrottled { "off" } else { "on (defaults)" }
    );
    println!("cold: RSS {:.1} MiB, {} threads", mib(cold), threads(pid));
    println!("| burst | answers | duration | RSS after (MiB) | vs cold | threads |");
    println!("|---|---|---|---|---|---|");
    for burst in 1..=2 {
        let started = Instant::now();
        let attempts = (0..parallel).map(|_| {
            gql(
                &client,
                &base,
                "mutation { login(input: {email: \"flood@example.com\", password: \"a wrong password\"}) { accessToken } }",
                json!({}),
            )
        });
        let answers = futures_util::future::join_all(attempts).await;
        let took = started.elapsed();
        let mut codes: BTreeMap<String, usize> = BTreeMap::new();
        for a in &answers {
            let code = a["errors"][0]["extensions"]["code"].as_str().unwrap_or("ok").to_owned();
            *codes.entry(code).or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (rss, _) = memory_kib(pid);
        let codes: Vec<String> = codes.iter().map(|(c, n)| format!("{n} {c}")).collect();
        println!(
            "| {burst} | {} | {} ms | {:.1} | {:+.0}% | {} |",
            codes.join(", "),
            took.as_millis(),
            mib(rss),
            (rss as f64 / cold as f64 - 1.0) * 100.0,
            threads(pid)
        );
    }
    let (rss, hwm) = memory_kib(pid);
    println!("end: RSS {:.1} MiB, peak {:.1} MiB", mib(rss), mib(hwm));
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

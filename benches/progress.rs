//! Progress fan-out benchmark (not a test): a real `podforge serve` process,
//! N websocket subscribers on one podcast, and events committed by this
//! process as another instance's worker would (so each event takes the whole
//! cross-process path: commit, NOTIFY, the server's LISTEN connection, one
//! table read per event batch, fan-out to N sockets).
//!
//! Reports commit-to-client latency (p50, p99), events/s written by
//! concurrent writers, messages/s delivered, and server memory per idle socket.
//!
//!   cargo bench --bench progress -- [subscribers] [events]
//!   (scripts/bench-progress.sh runs 100 and 1,000 subscribers)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark fails loudly"
)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use podforge::domain::PodcastId;
use podforge::progress::{EventKind, NewEvent};
use podforge::testing::TestDb;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn gql(base: &str, query: &str, variables: Value, token: Option<&str>) -> Value {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&json!({"query": query, "variables": variables}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().json().await.unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let subscribers: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let events: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);

    let db = TestDb::new().await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Command::new(env!("CARGO_BIN_EXE_podforge"))
        .args(["serve", "--workers", "0"])
        .env("DATABASE_URL", &db.url)
        .env("PODFORGE_BIND", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", "bench-secret-bench-secret-bench-secret")
        .env("PODFORGE_ARGON2_MEMORY_KIB", "1024")
        .env("PODFORGE_ARGON2_ITERATIONS", "1")
        .env("PODFORGE_WS_MAX_SUBSCRIPTIONS", "10")
        .env("PODFORGE_MAX_ACTIVE_GENERATIONS", "100")
        .env("PODFORGE_LLM", "none")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let server = KillOnDrop(server);
    let base = format!("http://127.0.0.1:{port}");
    loop {
        if reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reg = gql(&base, "mutation { register(input: {email: \"fanout@example.com\", password: \"benchmark password\"}) { accessToken } }", json!({}), None).await;
    let token = reg["data"]["register"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{reg}"))
        .to_owned();
    let created = gql(
        &base,
        "mutation { generatePodcast(input: {topic: \"Benchmark\"}) { id } }",
        json!({}),
        Some(&token),
    )
    .await;
    let podcast: PodcastId = created["data"]["generatePodcast"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Let the server settle, then measure memory before and after the sockets.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(server.id());
    let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, i64)>();
    let ready = Arc::new(tokio::sync::Barrier::new(subscribers + 1));
    let acked = Arc::new(tokio::sync::Barrier::new(subscribers + 1));
    let go = Arc::new(tokio::sync::Barrier::new(subscribers + 1));
    let url = format!("ws://127.0.0.1:{port}/graphql/ws");
    for i in 0..subscribers {
        let (url, token, lat_tx, ready) = (url.clone(), token.clone(), lat_tx.clone(), ready.clone());
        let (acked, go) = (acked.clone(), go.clone());
        tokio::spawn(async move {
            let mut request = url.into_client_request().unwrap();
            request
                .headers_mut()
                .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
            ws.send(Message::Text(
                json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}})
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
            let _ack = ws.next().await;
            acked.wait().await;
            go.wait().await;
            let sub = json!({"id": "1", "type": "subscribe", "payload": {
                "query": "subscription($id: ID!) { generationProgress(podcastId: $id) { seq message } }",
                "variables": {"id": podcast.to_string()}}});
            ws.send(Message::Text(sub.to_string().into())).await.unwrap();
            ready.wait().await;
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(t) = msg else { continue };
                let received = now_micros();
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "next"
                    && let Some(sent) = v["payload"]["data"]["generationProgress"]["message"]
                        .as_str()
                        .and_then(|m| m.parse::<i64>().ok())
                {
                    let _ = lat_tx.send((i, received - sent));
                } else if v["type"] == "ping" {
                    let _ = ws.send(Message::Text(json!({"type": "pong"}).to_string().into())).await;
                }
            }
        });
    }
    acked.wait().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_kib(server.id());
    let per_idle_socket = (rss_idle.saturating_sub(rss_before) as f64 * 1024.0) / subscribers as f64;
    go.wait().await;
    ready.wait().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_kib(server.id());
    let per_subscription = (rss_after.saturating_sub(rss_idle) as f64 * 1024.0) / subscribers as f64;

    // Commit events one after another (a worker's pace is far slower), each
    // stamped with its commit time, then NOTIFY on its own.
    let mut config = podforge::testing::test_config(&db.url);
    config.database.pool_size = 24;
    let (pool, _) = podforge::db::connect::build_pool(&config.database).unwrap();
    let mut conn = pool.get().await.unwrap();
    let started = Instant::now();
    let mut delivered = 0usize;
    let mut latencies = Vec::with_capacity(events * subscribers);
    for _ in 0..events {
        let mut e = NewEvent::new(EventKind::Artifact, "");
        let written = {
            e.message = now_micros().to_string();
            podforge::progress::append(&mut conn, podcast, &e)
                .await
                .unwrap()
                .unwrap()
        };
        podforge::jobs::queue::notify(
            &mut conn,
            podforge::progress::EVENTS_CHANNEL,
            &format!("{podcast}:{}", written.seq),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        while let Ok((_, l)) = lat_rx.try_recv() {
            latencies.push(l);
            delivered += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered < events * subscribers && Instant::now() < deadline {
        if let Ok(Some((_, l))) = tokio::time::timeout(Duration::from_secs(1), lat_rx.recv()).await {
            latencies.push(l);
            delivered += 1;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();

    // Writer throughput: 16 concurrent writers, each on its own podcast.
    let mut podcasts = Vec::new();
    for i in 0..16 {
        let g = gql(
            &base,
            &format!("mutation {{ generatePodcast(input: {{topic: \"writer {i}\"}}) {{ id }} }}"),
            json!({}),
            Some(&token),
        )
        .await;
        if let Some(id) = g["data"]["generatePodcast"]["id"].as_str() {
            podcasts.push(id.parse::<PodcastId>().unwrap());
        }
    }
    // As workers write: append (one statement), then publish through a hub,
    // whose notifications are sent in batches outside the write.
    let hub = podforge::progress::hub::Hub::new(pool.clone());
    let per_writer = 500;
    let write_started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for id in podcasts.clone() {
        let (pool, hub) = (pool.clone(), hub.clone());
        writers.spawn(async move {
            let mut conn = pool.get().await.unwrap();
            for _ in 0..per_writer {
                let e = podforge::progress::append(&mut conn, id, &NewEvent::new(EventKind::Warning, "w"))
                    .await
                    .unwrap()
                    .unwrap();
                hub.publish(e);
            }
        });
    }
    while writers.join_next().await.is_some() {}
    let write_rate = (podcasts.len() * per_writer) as f64 / write_started.elapsed().as_secs_f64();

    println!("subscribers: {subscribers}, events: {events}");
    println!(
        "delivered: {delivered} of {} messages in {:.2} s ({:.0} messages/s)",
        events * subscribers,
        elapsed.as_secs_f64(),
        delivered as f64 / elapsed.as_secs_f64()
    );
    println!(
        "commit-to-client latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "server RSS: {rss_before} KiB before, {rss_idle} KiB with {subscribers} idle (acknowledged) sockets: {per_idle_socket:.0} bytes per idle socket"
    );
    println!("server RSS: {rss_after} KiB once each subscribed: {per_subscription:.0} bytes per active subscription");
    println!(
        "events written by {} concurrent writers (append, then batched NOTIFY): {write_rate:.0} events/s",
        podcasts.len()
    );
    drop(server);
}

/// The server process, killed however the benchmark ends.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

//! Disconnect benchmark (not a test): is the memory a `podforge serve`
//! process keeps after websocket clients vanish a leak, or the allocator
//! holding on to freed memory?
//!
//! Runs a real server, then `cycles` times: opens N websocket subscribers
//! (graphql-transport-ws, each with a `generationProgress` subscription on a
//! queued podcast and a `libraryUpdates` one), then kills them all abruptly
//! (TCP reset, no close frame), waits until the server has released their
//! sockets, and records its RSS. A leak grows with every cycle; allocator
//! retention jumps on the first cycle and then stays flat, the freed memory
//! being reused by the next cycle.
//!
//!   cargo bench --profile dev --bench disconnect -- [subscribers] [cycles]
//!   PODFORGE_BIN=/path/to/podforge to measure another build of the server
//!   (scripts/bench-disconnect.sh runs 300 subscribers, 10 cycles)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark fails loudly"
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use podforge::testing::TestDb;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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

/// Sockets `pid` holds open other than its PostgreSQL connections: the
/// listener and every client socket it has not closed yet (a socket reset by
/// its client stays among the process's descriptors until the server drops it).
fn client_sockets(pid: u32) -> usize {
    let mut postgres = std::collections::HashSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // remote address "ADDR:PORT" (hex); inode is column 9.
            if cols.len() > 9 && cols[2].ends_with(":1538") {
                postgres.insert(cols[9].to_owned());
            }
        }
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_owned)
        })
        .filter(|inode| !postgres.contains(inode))
        .count()
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

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A subscriber with its two subscriptions running (acknowledged by the
/// server's first message on the library stream being absent is not
/// observable, so it waits for the ack and a ping round trip instead).
async fn subscriber(url: &str, token: &str, podcast: &str) -> Socket {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}}),
    ))
    .await
    .unwrap();
    let _ack = ws.next().await;
    ws.send(send(json!({"id": "p", "type": "subscribe", "payload": {
        "query": "subscription($id: ID!) { generationProgress(podcastId: $id) { seq kind } }",
        "variables": {"id": podcast}}})))
        .await
        .unwrap();
    ws.send(send(json!({"id": "l", "type": "subscribe", "payload": {
        "query": "subscription { libraryUpdates { change podcastId } }"}})))
        .await
        .unwrap();
    // The server handles a socket's messages in order: the pong means both
    // subscriptions were started.
    ws.send(send(json!({"type": "ping"}))).await.unwrap();
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg
            && t.as_str().contains("\"pong\"")
        {
            break;
        }
    }
    ws
}

/// Drops the socket with SO_LINGER 0: the kernel sends a reset, as when a
/// client process is killed mid-connection, and no close frame.
fn kill(ws: Socket) {
    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        #[allow(deprecated, reason = "set_linger is what an abrupt reset needs")]
        let _ = tcp.set_linger(Some(Duration::ZERO));
    }
    drop(ws);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let subscribers: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(300);
    let cycles: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let binary = std::env::var("PODFORGE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_podforge").to_owned());

    let db = TestDb::new().await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Command::new(&binary)
        .args(["serve", "--workers", "0"])
        .env("DATABASE_URL", &db.url)
        .env("PODFORGE_BIND", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", "bench-secret-bench-secret-bench-secret")
        .env("PODFORGE_ARGON2_MEMORY_KIB", "1024")
        .env("PODFORGE_ARGON2_ITERATIONS", "1")
        .env("PODFORGE_LLM", "none")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let server = KillOnDrop(server);
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    while !reqwest::get(format!("{base}/readyz"))
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reg = gql(&base, "mutation { register(input: {email: \"disconnect@example.com\", password: \"benchmark password\"}) { accessToken } }", json!({}), None).await;
    let token = reg["data"]["register"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{reg}"))
        .to_owned();
    let created = gql(
        &base,
        "mutation { generatePodcast(input: {topic: \"Disconnects\"}) { id } }",
        json!({}),
        Some(&token),
    )
    .await;
    let podcast = created["data"]["generatePodcast"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cold, _) = memory_kib(pid);
    let cold_sockets = client_sockets(pid);
    let url = format!("ws://127.0.0.1:{port}/graphql/ws");
    println!("server {binary}");
    println!("{subscribers} subscribers per cycle, 2 subscriptions each, killed with a TCP reset");
    println!(
        "cold: RSS {:.1} MiB, {cold_sockets} sockets besides PostgreSQL's",
        cold as f64 / 1024.0
    );
    println!(
        "| cycle | RSS with sockets open (MiB) | RSS after the kill (MiB) | vs cold | client sockets after | released in |"
    );
    println!("|---|---|---|---|---|---|");
    let mut after_first = 0;
    // Later cycles wait until the server holds no more client sockets than
    // when it was cold.
    let base_sockets = cold_sockets;
    for cycle in 1..=cycles {
        let mut sockets = Vec::with_capacity(subscribers);
        for chunk in (0..subscribers).collect::<Vec<_>>().chunks(50) {
            let batch = futures_util::future::join_all(chunk.iter().map(|_| subscriber(&url, &token, &podcast))).await;
            sockets.extend(batch);
        }
        let (open_rss, _) = memory_kib(pid);
        let killed = Instant::now();
        for ws in sockets {
            kill(ws);
        }
        // Released: the server is back to the descriptors it had before.
        while client_sockets(pid) > base_sockets {
            assert!(killed.elapsed() < Duration::from_secs(30), "sockets not released");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let released = killed.elapsed();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (rss, _) = memory_kib(pid);
        if cycle == 1 {
            after_first = rss;
        }
        println!(
            "| {cycle} | {:.1} | {:.1} | {:+.0}% | {} | {} ms |",
            open_rss as f64 / 1024.0,
            rss as f64 / 1024.0,
            (rss as f64 / cold as f64 - 1.0) * 100.0,
            client_sockets(pid),
            released.as_millis()
        );
    }
    let (last, hwm) = memory_kib(pid);
    println!(
        "after {cycles} cycles: RSS {:.1} MiB ({:+.1} MiB since cycle 1), peak {:.1} MiB",
        last as f64 / 1024.0,
        (last as f64 - after_first as f64) / 1024.0,
        hwm as f64 / 1024.0
    );
    // The server still serves.
    let me = gql(&base, "{ me { email } }", json!({}), Some(&token)).await;
    assert_eq!(me["data"]["me"]["email"], "disconnect@example.com", "{me}");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

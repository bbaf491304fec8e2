//! The real binary: `podforge serve` as a process, driven over HTTP the way a
//! client would, then stopped with SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podforge::testing::{TestDb, error_code};
use serde_json::{Value, json};

/// A `podforge serve` child process on a free port, killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub async fn start(db: &TestDb, extra_env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_podforge"));
        cmd.arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("PODFORGE_BIND", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", "process-test-secret-process-test-secret")
            .env("PODFORGE_ARGON2_MEMORY_KIB", "1024")
            .env("PODFORGE_ARGON2_ITERATIONS", "1")
            .env("RUST_LOG", "warn")
            // No speech unless a test asks (extra_env comes after and wins).
            .env("PODFORGE_TTS", "none")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(format!("{base}/readyz")).await
                && r.status() == 200
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "podforge serve did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, base }
    }

    pub async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let mut req = reqwest::Client::new()
            .post(format!("{}/graphql", self.base))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const AUTH: &str = "accessToken refreshToken user { id email }";

#[tokio::test]
async fn scripted_session_against_podforge_serve() {
    let db = TestDb::new().await.unwrap();
    let mut server = Server::start(&db, &[]).await;
    let register = |email: &'static str| {
        let q = format!(
            "mutation($e: String!) {{ register(input: {{email: $e, password: \"a long enough secret\"}}) {{ {AUTH} }} }}"
        );
        let server = &server;
        async move { server.gql(&q, json!({"e": email}), None).await["data"]["register"].clone() }
    };
    let a = register("alice@example.com").await;
    let b = register("bob@example.com").await;
    assert!(a["accessToken"].is_string() && b["accessToken"].is_string());

    // Log in, me.
    let login = server
        .gql(&format!("mutation {{ login(input: {{email: \"alice@example.com\", password: \"a long enough secret\"}}) {{ {AUTH} }} }}"), json!({}), None)
        .await;
    let alice = login["data"]["login"]["accessToken"].as_str().unwrap().to_owned();
    let alice_refresh = login["data"]["login"]["refreshToken"].as_str().unwrap().to_owned();
    let bob = b["accessToken"].as_str().unwrap().to_owned();
    let me = server.gql("{ me { email } }", json!({}), Some(&alice)).await;
    assert_eq!(me["data"]["me"]["email"], "alice@example.com");

    // Refresh, then reuse detection.
    let refresh = "mutation($t: String!) { refreshToken(token: $t) { accessToken refreshToken } }";
    let r = server.gql(refresh, json!({"t": alice_refresh}), None).await;
    let alice2 = r["data"]["refreshToken"]["accessToken"].as_str().unwrap().to_owned();
    let reuse = server.gql(refresh, json!({"t": alice_refresh}), None).await;
    assert_eq!(error_code(&reuse), Some("UNAUTHENTICATED"));
    assert_eq!(
        error_code(&server.gql("{ me { id } }", json!({}), Some(&alice2)).await),
        Some("UNAUTHENTICATED")
    );
    // Alice's first session (from register) still works.
    let alice = a["accessToken"].as_str().unwrap().to_owned();

    // Libraries: empty, then with podcasts.
    let count = "{ podcasts { totalCount edges { node { id topic } } } }";
    assert_eq!(
        server.gql(count, json!({}), Some(&alice)).await["data"]["podcasts"]["totalCount"],
        0
    );
    assert_eq!(
        server.gql(count, json!({}), Some(&bob)).await["data"]["podcasts"]["totalCount"],
        0
    );
    let generate = "mutation($t: String!) { generatePodcast(input: {topic: $t}) { id status } }";
    let p1 = server
        .gql(generate, json!({"t": "Tides and the moon"}), Some(&alice))
        .await;
    let id = p1["data"]["generatePodcast"]["id"].as_str().unwrap().to_owned();
    server.gql(generate, json!({"t": "Volcanoes"}), Some(&alice)).await;
    server.gql(generate, json!({"t": "Bob's episode"}), Some(&bob)).await;
    assert_eq!(
        server.gql(count, json!({}), Some(&alice)).await["data"]["podcasts"]["totalCount"],
        2
    );
    assert_eq!(
        server.gql(count, json!({}), Some(&bob)).await["data"]["podcasts"]["totalCount"],
        1
    );

    // Bob can't see, change or delete Alice's podcast.
    let get = "query($id: ID!) { podcast(id: $id) { id title } }";
    assert_eq!(
        server.gql(get, json!({"id": id}), Some(&bob)).await["data"]["podcast"],
        Value::Null
    );
    let update = "mutation($id: ID!) { updatePodcast(id: $id, input: {title: \"Mine now\"}) { title } }";
    assert_eq!(
        error_code(&server.gql(update, json!({"id": id}), Some(&bob)).await),
        Some("NOT_FOUND")
    );
    let delete = "mutation($id: ID!) { deletePodcast(id: $id) }";
    assert_eq!(
        error_code(&server.gql(delete, json!({"id": id}), Some(&bob)).await),
        Some("NOT_FOUND")
    );

    // Alice can.
    let upd = server.gql(update, json!({"id": id}), Some(&alice)).await;
    assert_eq!(upd["data"]["updatePodcast"]["title"], "Mine now");
    assert_eq!(
        server.gql(delete, json!({"id": id}), Some(&alice)).await["data"]["deletePodcast"],
        id.as_str()
    );
    assert_eq!(
        server.gql(count, json!({}), Some(&alice)).await["data"]["podcasts"]["totalCount"],
        1
    );

    // Hostile documents are refused fast and the server keeps serving.
    let deep = format!(
        "{{ __schema {{ types {}{{ name }}{} }} }}",
        "{ fields { type ".repeat(25),
        " } }".repeat(25)
    );
    let aliases = format!(
        "{{ {} }}",
        (0..1000)
            .map(|i| format!("a{i}: me {{ id }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let directives = format!("{{ me {} {{ id }} }}", "@include(if: true) ".repeat(10_000));
    for q in [&deep, &aliases, &directives] {
        let v = server.gql(q, json!({}), Some(&alice)).await;
        assert_eq!(error_code(&v), Some("GRAPHQL_VALIDATION_FAILED"), "{v}");
    }
    assert!(server.gql("{ me { id } }", json!({}), Some(&alice)).await["data"]["me"].is_object());

    // SIGTERM: graceful exit.
    assert!(server.terminate().success());
}

/// SIGKILL during a generation, then a restart: the generation completes,
/// and a subscriber that reconnects with its last seq gets every event once.
#[tokio::test]
async fn a_generation_survives_sigkill_of_the_server() {
    use crate::wsclient::WsClient;
    use podforge::testing::mock_provider::MockProvider;

    let mock = MockProvider::start().await.unwrap();
    mock.set_latency(std::time::Duration::from_millis(400));
    let db = TestDb::new().await.unwrap();
    let openai = mock.openai_url();
    let env: Vec<(&str, &str)> = vec![
        ("PODFORGE_LLM", "openai"),
        ("OPENAI_BASE_URL", &openai),
        ("PODFORGE_JOB_LEASE_SECS", "2"),
        ("PODFORGE_JOB_POLL_MS", "200"),
        ("PODFORGE_SCRIPT_CONCURRENCY", "1"),
    ];
    let mut server = Server::start(&db, &env).await;
    let reg = server
        .gql("mutation { register(input: {email: \"operator@example.com\", password: \"survives a kill -9\"}) { accessToken } }", json!({}), None)
        .await;
    let token = reg["data"]["register"]["accessToken"].as_str().unwrap().to_owned();
    let created = server
        .gql(
            "mutation { generatePodcast(input: {topic: \"Tides\", targetMinutes: 6, sources: [{title: \"Tides\", text: \"Tides are caused by the moon. The sun matters too. Spring tides are higher.\"}]}) { id } }",
            json!({}),
            Some(&token),
        )
        .await;
    let id = created["data"]["generatePodcast"]["id"].as_str().unwrap().to_owned();
    let ws_url = server.base.replace("http://", "ws://") + "/graphql/ws";
    let subscribe = |after: Option<i64>| {
        json!({"id": "p", "type": "subscribe", "payload": {
            "query": "subscription($id: ID!, $after: Int) { generationProgress(podcastId: $id, afterSeq: $after) { seq kind stage } }",
            "variables": {"id": id, "after": after}}})
    };
    let mut ws = WsClient::connect(&ws_url, "graphql-transport-ws").await;
    ws.init(&token).await;
    ws.send(subscribe(None)).await;
    // Follow until the script stage is under way, then kill the server.
    let mut seen: Vec<i64> = Vec::new();
    loop {
        let m = ws.next().await;
        assert_eq!(m["type"], "next", "{m}");
        let e = &m["payload"]["data"]["generationProgress"];
        seen.push(e["seq"].as_i64().unwrap());
        if e["kind"] == "ARTIFACT" && e["stage"] == "SCRIPT" {
            break;
        }
    }
    Command::new("kill")
        .args(["-KILL", &server.child.id().to_string()])
        .status()
        .unwrap();
    let _ = server.child.wait();
    let _ = ws.closed().await;

    // A new process on another port; the old lease expires and it resumes.
    let server = Server::start(&db, &env).await;
    let ws_url = server.base.replace("http://", "ws://") + "/graphql/ws";
    let mut ws = WsClient::connect(&ws_url, "graphql-transport-ws").await;
    ws.init(&token).await;
    ws.send(subscribe(seen.last().copied())).await;
    loop {
        let m = ws.next().await;
        if m["type"] == "complete" {
            break;
        }
        assert_eq!(m["type"], "next", "{m}");
        seen.push(m["payload"]["data"]["generationProgress"]["seq"].as_i64().unwrap());
    }
    let p = server
        .gql(
            "query($id: ID!) { podcast(id: $id) { status script { segments { index } } } }",
            json!({"id": id}),
            Some(&token),
        )
        .await;
    assert_eq!(p["data"]["podcast"]["status"], "COMPLETED", "{p}");
    // Every stored event exactly once, in order; one checkpoint per stage.
    let mut conn = podforge::db::DbTarget::parse(&db.url, None, std::time::Duration::from_secs(5))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let stored: Vec<i64> = podforge::progress::after(&mut conn, id.parse().unwrap(), 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| i64::from(e.seq))
        .collect();
    assert_eq!(seen, stored);
    let stages: i64 = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(format!(
            "SELECT count(*) AS n FROM podcast_stages WHERE podcast_id = '{id}'"
        ))
        .into_boxed::<diesel::pg::Pg>(),
        &mut conn,
    )
    .await
    .map(|r: Count| r.n)
    .unwrap();
    assert_eq!(stages, 4);
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Two instances migrating an empty database at once: the advisory lock
/// makes one wait for the other, and both succeed.
#[tokio::test]
async fn two_instances_migrate_an_empty_database_together() {
    let admin = podforge::db::DbTarget::parse(&podforge::testing::admin_url(), None, std::time::Duration::from_secs(5))
        .unwrap();
    let client = admin.connect_raw().await.unwrap();
    let name = format!("podforge_empty_{}", uuid::Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let mut url = url::Url::parse(&podforge::testing::admin_url()).unwrap();
    url.set_path(&format!("/{name}"));
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_podforge"))
            .arg("migrate")
            .env("DATABASE_URL", url.as_str())
            .env("RUST_LOG", "warn")
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    client
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let outputs = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().join("up.sql").exists()))
        .count();
    assert!(
        outputs.contains(&format!("applied {migrations} migration(s)")),
        "one applied everything: {outputs}"
    );
    assert!(
        outputs.contains("is up to date"),
        "the other found nothing left: {outputs}"
    );
}

/// Ctrl-C during `podforge generate` cancels the generation cleanly.
#[tokio::test]
async fn ctrl_c_cancels_a_generation_from_the_command_line() {
    use podforge::testing::mock_provider::MockProvider;
    let mock = MockProvider::start().await.unwrap();
    mock.set_latency(std::time::Duration::from_secs(3));
    let db = TestDb::new().await.unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_podforge"))
        .args(["generate", "--topic", "Tides", "--minutes", "3", "--out"])
        .arg(std::env::temp_dir().join(&db.name))
        .env("DATABASE_URL", &db.url)
        .env("PODFORGE_LLM", "openai")
        .env("OPENAI_BASE_URL", mock.openai_url())
        .env("PODFORGE_ARGON2_MEMORY_KIB", "1024")
        .env("PODFORGE_ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the outline call to be under way, then press Ctrl-C.
    let started = std::time::Instant::now();
    while mock.calls().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "no provider call");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    let mut conn = podforge::db::DbTarget::parse(&db.url, None, Duration::from_secs(5))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status: Status =
        diesel_async::RunQueryDsl::get_result(diesel::sql_query("SELECT status FROM podcasts"), &mut conn)
            .await
            .unwrap();
    assert_eq!(status.status, "cancelled");
    let files = std::fs::read_dir(std::env::temp_dir().join(&db.name))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(files, 0, "nothing written for a cancelled episode");
}

#[derive(diesel::QueryableByName)]
struct Status {
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
}

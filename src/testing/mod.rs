//! Test support: isolated databases from a migrated template, a
//! [`TestApp`] that serves the real router on a real port, and mock servers
//! of the providers' HTTP protocols ([`mock_provider`]).
//!
//! Used by the integration tests and the benchmarks; not part of the
//! service: it is compiled only with the `test-support` feature, which the
//! crate's own dev-dependency on itself turns on for tests and benches, so
//! release binaries do not contain it.
//!
//! Each test gets its own database, copied from a template that is migrated
//! once per migration set (`podforge_tpl_<hash of migrations/>`), so tests run
//! in parallel (nextest runs each in its own process) without sharing state.
//! The template is created under an advisory lock so concurrent processes
//! don't race, and the test database is dropped when the [`TestDb`] is.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

pub mod documents;
pub mod mock_provider;
pub mod mock_speech;
pub mod pgbouncer;

use crate::app::{self, App};
use crate::config::Config;
use crate::db::DbTarget;

/// Server URL tests connect to: `PODFORGE_TEST_DATABASE_URL`, default the local
/// Postgres (`postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable`).
pub fn admin_url() -> String {
    std::env::var("PODFORGE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_owned())
}

fn url_with_db(admin: &str, db: &str) -> anyhow::Result<String> {
    let mut u = url::Url::parse(admin).context("PODFORGE_TEST_DATABASE_URL must be a URL")?;
    u.set_path(&format!("/{db}"));
    Ok(u.to_string())
}

fn migrations_hash() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut entries: Vec<_> = walk(&dir);
    entries.sort();
    let mut h = Sha256::new();
    for path in entries {
        h.update(path.to_string_lossy().as_bytes());
        h.update(std::fs::read(&path).unwrap_or_default());
    }
    let digest = h.finalize();
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A database of one's own, dropped (with `FORCE`) when this is dropped.
pub struct TestDb {
    /// Database name.
    pub name: String,
    /// URL to it.
    pub url: String,
    admin: String,
}

impl TestDb {
    /// Creates a fresh, migrated database.
    pub async fn new() -> anyhow::Result<Self> {
        app::install_crypto_provider();
        let admin = admin_url();
        let admin_target = DbTarget::parse(&admin, None, std::time::Duration::from_secs(5))?;
        let client = admin_target
            .connect_raw()
            .await
            .with_context(|| format!("tests need PostgreSQL at {}", admin_target.describe()))?;
        let template = format!("podforge_tpl_{}", migrations_hash());
        // One process creates the template; the others wait on the lock.
        client.execute("SELECT pg_advisory_lock(7405119)", &[]).await?;
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await?
            .is_some();
        let created = if exists {
            Ok(())
        } else {
            build_template(&client, &admin, &template).await
        };
        client.execute("SELECT pg_advisory_unlock(7405119)", &[]).await?;
        created?;
        let name = format!("podforge_test_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .context("creating the test database")?;
        Ok(Self {
            url: url_with_db(&admin, &name)?,
            name,
            admin,
        })
    }
}

async fn build_template(client: &tokio_postgres::Client, admin: &str, template: &str) -> anyhow::Result<()> {
    let building = format!("{template}_building");
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
        .await?;
    client.batch_execute(&format!("CREATE DATABASE {building}")).await?;
    let target = DbTarget::parse(&url_with_db(admin, &building)?, None, std::time::Duration::from_secs(5))?;
    crate::db::migrate::run(&target).await?;
    // Renaming needs no open connection to it; the migration's has closed.
    client
        .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
        .await?;
    Ok(())
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop cannot await; do it on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(target) = DbTarget::parse(&admin, None, std::time::Duration::from_secs(5))
                    && let Ok(client) = target.connect_raw().await
                {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Configuration for tests: a fixed JWT secret, cheap Argon2, the test database.
pub fn test_config(database_url: &str) -> Config {
    let mut vars = std::collections::HashMap::new();
    vars.insert("DATABASE_URL", database_url.to_owned());
    vars.insert("JWT_SECRET", "test-secret-test-secret-test-secret!".to_owned());
    vars.insert("PODFORGE_ARGON2_MEMORY_KIB", "1024".to_owned());
    vars.insert("PODFORGE_ARGON2_ITERATIONS", "1".to_owned());
    vars.insert("PODFORGE_BIND", "127.0.0.1:0".to_owned());
    vars.insert("PODFORGE_DB_POOL_SIZE", "5".to_owned());
    vars.insert("PODFORGE_MAX_ACTIVE_GENERATIONS", "100".to_owned());
    // Tests sign many users in from one address; those about the throttle set their own.
    vars.insert("PODFORGE_SIGNIN_ADDRESS_LIMIT", "100000".to_owned());
    // No model and no speech unless a test sets them up.
    vars.insert("PODFORGE_LLM", "none".to_owned());
    vars.insert("PODFORGE_TTS", "none".to_owned());
    // Media objects in a directory of this test's own (the URL names its database).
    let digest = Sha256::digest(database_url.as_bytes());
    let dir = std::env::temp_dir().join(format!(
        "podforge-test-media-{:x}",
        u64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
    ));
    vars.insert("PODFORGE_MEDIA_DIR", dir.display().to_string());
    #[expect(clippy::expect_used, reason = "test support: the fixed configuration is valid")]
    Config::from_lookup(&move |k| vars.get(k).cloned()).expect("test configuration")
}

/// A signed-in test user.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// User id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
    /// Access token.
    pub token: String,
    /// Refresh token.
    pub refresh_token: String,
}

/// The real router served on 127.0.0.1:0 over its own database.
pub struct TestApp {
    /// The app state.
    pub app: Arc<App>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// HTTP client.
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    background: Option<(tokio::task::JoinHandle<()>, tokio_util::sync::CancellationToken)>,
    /// The database (dropped last).
    pub db: TestDb,
}

impl TestApp {
    /// A server with the test configuration.
    pub async fn new() -> Self {
        Self::with_config(|_| {}).await
    }

    /// A server whose configuration `edit` may change first.
    pub async fn with_config(edit: impl FnOnce(&mut Config)) -> Self {
        #[expect(clippy::expect_used, reason = "test support")]
        let db = TestDb::new().await.expect("test database");
        let mut config = test_config(&db.url);
        edit(&mut config);
        Self::start(db, config).await
    }

    /// A server that also runs workers over `pipeline` (jobs settings for
    /// fast tests: 2 s leases, 50 ms backoff), after `edit`.
    pub async fn with_pipeline(pipeline: crate::pipeline::Pipeline, edit: impl FnOnce(&mut Config)) -> Self {
        Self::running(Some(pipeline), edit).await
    }

    /// A server running workers over the pipeline its configuration selects
    /// (providers from `edit`), with the fast job settings of [`Self::with_pipeline`].
    pub async fn with_workers(edit: impl FnOnce(&mut Config)) -> Self {
        Self::running(None, edit).await
    }

    async fn running(pipeline: Option<crate::pipeline::Pipeline>, edit: impl FnOnce(&mut Config)) -> Self {
        #[expect(clippy::expect_used, reason = "test support")]
        let db = TestDb::new().await.expect("test database");
        let mut config = test_config(&db.url);
        config.jobs.lease = std::time::Duration::from_secs(2);
        config.jobs.backoff_base = std::time::Duration::from_millis(50);
        config.jobs.poll_interval = std::time::Duration::from_millis(500);
        edit(&mut config);
        let mut app = Self::start_with(db, config, pipeline).await;
        let token = tokio_util::sync::CancellationToken::new();
        app.background = Some((app.app.start_background(token.clone(), true), token));
        app
    }

    /// Serves `config` over `db`.
    pub async fn start(db: TestDb, config: Config) -> Self {
        Self::start_with(db, config, None).await
    }

    async fn start_with(db: TestDb, config: Config, pipeline: Option<crate::pipeline::Pipeline>) -> Self {
        #[expect(clippy::expect_used, reason = "test support")]
        let app = App::build(
            config,
            crate::app::AppOptions {
                migrate: false,
                pipeline,
                ..Default::default()
            },
        )
        .await
        .expect("app");
        #[expect(clippy::expect_used, reason = "test support")]
        let (listener, addr) = crate::server::bind(app.config.bind).await.expect("bind");
        app.serving_at(addr);
        let (tx, rx) = oneshot::channel::<()>();
        let router = crate::server::router(app.clone());
        let server = tokio::spawn(async move {
            let _ = crate::server::serve(listener, router, async move {
                let _ = rx.await;
            })
            .await;
        });
        Self {
            app,
            addr,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            server: Some(server),
            background: None,
            db,
        }
    }

    /// Also returns a freshly registered, signed-in user.
    pub async fn with_user(self) -> (Self, TestUser) {
        let user = self.user().await;
        (self, user)
    }

    /// `http://127.0.0.1:port/graphql`.
    pub fn graphql_url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// `ws://127.0.0.1:port/graphql/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/graphql/ws", self.addr)
    }

    /// Posts one operation; returns the response JSON (data and errors).
    pub async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        self.post_json(json!({ "query": query, "variables": variables }), token)
            .await
            .1
    }

    /// Posts any JSON body; returns the HTTP status and response JSON.
    pub async fn post_json(&self, body: Value, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(self.graphql_url()).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        #[expect(clippy::expect_used, reason = "test support")]
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        #[expect(clippy::expect_used, reason = "test support")]
        let json = resp.json().await.expect("JSON response");
        (status, json)
    }

    /// Registers a new user with a random email.
    pub async fn user(&self) -> TestUser {
        let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
        let password = "correct horse battery staple".to_owned();
        let v = self
            .gql(
                "mutation($e: String!, $p: String!) { register(input: {email: $e, password: $p}) { accessToken refreshToken user { id } } }",
                json!({ "e": email, "p": password }),
                None,
            )
            .await;
        let r = &v["data"]["register"];
        assert!(r.is_object(), "register failed: {v}");
        TestUser {
            id: r["user"]["id"].as_str().unwrap_or_default().to_owned(),
            email,
            password,
            token: r["accessToken"].as_str().unwrap_or_default().to_owned(),
            refresh_token: r["refreshToken"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// Stops the server and waits for it (workers hand back their jobs).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some((handle, token)) = self.background.take() {
            token.cancel();
            let _ = handle.await;
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some((handle, token)) = self.background.take() {
            token.cancel();
            handle.abort();
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The `extensions.code` of the first error in a response, if any.
pub fn error_code(response: &Value) -> Option<&str> {
    response["errors"][0]["extensions"]["code"].as_str()
}

/// What a [`ScriptedStage`] does on its next runs.
#[derive(Debug, Clone, Default)]
pub struct StageScript {
    /// Wait this long before finishing (cancellable).
    pub delay: std::time::Duration,
    /// Fail the next this-many runs with this error, then succeed.
    pub failures: Vec<crate::pipeline::StageError>,
    /// Panic on the next this-many runs.
    pub panics: u32,
}

/// Shared control and observation of scripted stages.
#[derive(Debug, Default)]
pub struct StageControl {
    scripts: std::sync::Mutex<std::collections::HashMap<crate::pipeline::StageKind, StageScript>>,
    /// Runs started, per stage.
    pub runs: std::sync::Mutex<std::collections::HashMap<crate::pipeline::StageKind, u32>>,
    /// Stages running now, per podcast (to catch two workers on one job).
    pub active: std::sync::Mutex<std::collections::HashMap<crate::domain::PodcastId, u32>>,
    /// Most stages seen running at once for one podcast.
    pub max_active_per_podcast: std::sync::atomic::AtomicU32,
}

impl StageControl {
    /// Sets what `stage` does next.
    pub fn script(&self, stage: crate::pipeline::StageKind, script: StageScript) {
        self.scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stage, script);
    }

    /// How many times `stage` started.
    pub fn runs(&self, stage: crate::pipeline::StageKind) -> u32 {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&stage)
            .copied()
            .unwrap_or(0)
    }
}

/// A stage whose delay, failures and panics a test controls; its output
/// names the stage and echoes the podcast's topic, and the last stage returns
/// episode metadata.
pub struct ScriptedStage {
    kind: crate::pipeline::StageKind,
    control: Arc<StageControl>,
}

/// A pipeline of four scripted stages sharing `control` (the text stages;
/// no synthesis).
pub fn scripted_pipeline(control: Arc<StageControl>) -> crate::pipeline::Pipeline {
    crate::pipeline::Pipeline {
        llm: None,
        unavailable: None,
        stages: crate::pipeline::StageKind::ALL
            .iter()
            .filter(|k| **k != crate::pipeline::StageKind::Synthesis)
            .map(|k| {
                Arc::new(ScriptedStage {
                    kind: *k,
                    control: control.clone(),
                }) as Arc<dyn crate::pipeline::Stage>
            })
            .collect(),
    }
}

struct ActiveGuard<'a> {
    control: &'a StageControl,
    podcast: crate::domain::PodcastId,
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        if let Some(n) = self
            .control
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&self.podcast)
        {
            *n = n.saturating_sub(1);
        }
    }
}

#[async_trait::async_trait]
impl crate::pipeline::Stage for ScriptedStage {
    fn kind(&self) -> crate::pipeline::StageKind {
        self.kind
    }

    async fn run(
        &self,
        ctx: &crate::pipeline::StageContext<'_>,
    ) -> Result<crate::pipeline::StageOutput, crate::pipeline::StageError> {
        use std::sync::atomic::Ordering;
        *self
            .control
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(self.kind)
            .or_default() += 1;
        {
            let mut active = self.control.active.lock().unwrap_or_else(|e| e.into_inner());
            let n = active.entry(ctx.podcast.id).or_default();
            *n += 1;
            self.control.max_active_per_podcast.fetch_max(*n, Ordering::SeqCst);
        }
        let _guard = ActiveGuard {
            control: &self.control,
            podcast: ctx.podcast.id,
        };
        let (delay, failure, panic) = {
            let mut scripts = self.control.scripts.lock().unwrap_or_else(|e| e.into_inner());
            let script = scripts.entry(self.kind).or_default();
            let failure = if script.failures.is_empty() {
                None
            } else {
                Some(script.failures.remove(0))
            };
            let panic = script.panics > 0;
            if panic {
                script.panics -= 1;
            }
            (script.delay, failure, panic)
        };
        tokio::time::sleep(delay).await;
        assert!(!panic, "scripted panic in {}", self.kind.as_str());
        if let Some(f) = failure {
            return Err(f);
        }
        let _ = ctx
            .artifact(
                "part:1",
                &format!("{} part", self.kind.as_str()),
                json!({ "stage": self.kind.as_str() }),
                0.5,
            )
            .await;
        let output = if self.kind == crate::pipeline::StageKind::Assembly {
            json!({ "title": format!("Episode: {}", ctx.podcast.topic), "description": "scripted", "tags": ["test"],
                    "showNotes": "notes", "wordCount": 100, "estimatedDurationSeconds": 40 })
        } else {
            json!({ "stage": self.kind.as_str(), "topic": ctx.podcast.topic })
        };
        Ok(crate::pipeline::StageOutput {
            output,
            usage: crate::pipeline::Usage {
                calls: 1,
                ..Default::default()
            },
        })
    }
}

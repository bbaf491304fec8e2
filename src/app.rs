//! The application state and the HTTP router.
//!
//! [`App`] holds everything a request or a worker needs, shared as `Arc<App>`.
//! [`router`] builds the axum router; [`bind`] and [`serve`] are split so tests
//! bind port 0 and learn the address before serving.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_graphql::http::GraphiQLSource;
use async_graphql::{BatchRequest, BatchResponse};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::RequestAuth;
use crate::auth::password::HashParams;
use crate::auth::token::TokenKeys;
use crate::config::Config;
use crate::db::{DbPool, DbTarget, connect, migrate};
use crate::error::ApiResult;
use crate::graphql::{self, PodforgeSchema, error::request_error};
use crate::jobs::{WorkerConfig, Workers, queue};
use crate::pipeline::{GeneratePodcast, Pipeline};
use crate::progress::{self, hub::Hub};
use tokio_util::sync::CancellationToken;

/// Shared state of one process.
///
/// Fields are documented one by one; nothing here is global, so tests build
/// an `App` with any configuration and pipeline.
pub struct App {
    /// The configuration it was built from.
    pub config: Config,
    /// Connection pool for requests and workers.
    pub pool: DbPool,
    /// Where the pool connects (for dedicated connections such as LISTEN).
    pub db_target: DbTarget,
    /// Access-token keys.
    pub tokens: TokenKeys,
    /// Newest embedded migration, checked by `/readyz`.
    pub latest_migration: String,
    /// In-process fan-out of progress events and library changes.
    pub hub: Arc<Hub>,
    /// The stages generations run.
    pub pipeline: Arc<Pipeline>,
    /// This process's job workers (running only when started).
    pub workers: Arc<Workers>,
    dummy_hash: OnceCell<String>,
}

/// How to build an [`App`].
pub struct AppOptions {
    /// Apply pending migrations first.
    pub migrate: bool,
    /// The generation pipeline; `None` picks it from the configuration.
    pub pipeline: Option<Pipeline>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            migrate: true,
            pipeline: None,
        }
    }
}

impl App {
    /// Connects to the database (creating it when missing and allowed), applies
    /// migrations when `migrate` is set, and builds the state.
    ///
    /// Errors: one line naming the database target and the fix when it cannot be reached.
    pub async fn new(config: Config, run_migrations: bool) -> anyhow::Result<Arc<Self>> {
        Self::build(
            config,
            AppOptions {
                migrate: run_migrations,
                pipeline: None,
            },
        )
        .await
    }

    /// [`Self::new`] with every option.
    pub async fn build(config: Config, options: AppOptions) -> anyhow::Result<Arc<Self>> {
        let run_migrations = options.migrate;
        install_crypto_provider();
        if config.auth.jwt_secret_is_ephemeral {
            tracing::warn!(
                "JWT_SECRET is not set: using a random secret for this process only. \
                 Tokens stop working on restart and are not shared between instances. \
                 Set JWT_SECRET (32+ bytes) for anything but local development."
            );
        }
        let (pool, db_target) = connect::build_pool(&config.database)?;
        connect::check_reachable(&db_target, config.database.create_if_missing).await?;
        if run_migrations {
            migrate::run(&db_target).await?;
        }
        let tokens = TokenKeys::new(
            &config.auth.jwt_secret,
            config.auth.access_token_ttl,
            config.auth.leeway,
        )?;
        let hub = Hub::new(pool.clone());
        let pipeline = Arc::new(match options.pipeline {
            Some(p) => p,
            None => pipeline_from_config(&config)?,
        });
        let generate = GeneratePodcast::new(pool.clone(), hub.clone(), pipeline.clone());
        let workers = Workers::new(
            pool.clone(),
            vec![generate],
            WorkerConfig {
                concurrency: config.jobs.workers,
                lease: config.jobs.lease,
                poll_interval: config.jobs.poll_interval,
                backoff_base: config.jobs.backoff_base,
                ..WorkerConfig::default()
            },
        );
        Ok(Arc::new(Self {
            config,
            pool,
            db_target,
            tokens,
            latest_migration: migrate::latest_version(),
            hub,
            pipeline,
            workers,
            dummy_hash: OnceCell::new(),
        }))
    }

    /// Starts the process's background tasks: the LISTEN connection (feeding
    /// the hub and the workers) and, when `run_workers`, the job workers. They
    /// stop when `shutdown` is cancelled; await the handle to let running jobs
    /// hand back their leases.
    pub fn start_background(
        self: &Arc<Self>,
        shutdown: CancellationToken,
        run_workers: bool,
    ) -> tokio::task::JoinHandle<()> {
        let listen_target = match &self.config.database.listen_url {
            Some(url) => {
                match DbTarget::parse(
                    url,
                    self.config.database.ca_file.as_deref(),
                    self.config.database.connect_timeout,
                ) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(error = %e, "PODFORGE_LISTEN_DATABASE_URL is invalid; using DATABASE_URL");
                        self.db_target.clone()
                    }
                }
            }
            None => self.db_target.clone(),
        };
        let (hub, workers) = (self.hub.clone(), self.workers.clone());
        let dispatch: crate::listen::Dispatch = Arc::new(move |channel, payload| match channel {
            queue::JOBS_CHANNEL => workers.wake(),
            queue::CANCEL_CHANNEL => {
                if let Ok(id) = payload.parse() {
                    workers.cancel_local(id);
                }
            }
            _ => hub.on_notification(channel, payload),
        });
        let (hub, workers) = (self.hub.clone(), self.workers.clone());
        let on_reconnect: crate::listen::OnReconnect = Arc::new(move || {
            hub.refresh_all();
            workers.wake();
        });
        let listener = tokio::spawn(crate::listen::run(
            listen_target,
            vec![
                queue::JOBS_CHANNEL,
                queue::CANCEL_CHANNEL,
                progress::EVENTS_CHANNEL,
                progress::LIBRARY_CHANNEL,
            ],
            dispatch,
            on_reconnect,
            shutdown.clone(),
        ));
        let workers =
            (run_workers && self.config.jobs.workers > 0).then(|| tokio::spawn(self.workers.clone().run(shutdown)));
        tokio::spawn(async move {
            if let Some(w) = workers {
                let _ = w.await;
            }
            let _ = listener.await;
        })
    }

    /// After a commit that enqueued jobs: wakes this process's workers and,
    /// through NOTIFY, the others'.
    pub async fn jobs_enqueued(&self, conn: &mut crate::db::AsyncPgConnection) {
        self.workers.wake();
        if let Err(e) = queue::notify_enqueued(conn, crate::pipeline::JOB_KIND).await {
            tracing::warn!(error = %e, "job notification failed; workers will find the job by polling");
        }
    }

    /// Argon2 settings from the configuration.
    pub fn hash_params(&self) -> HashParams {
        HashParams {
            memory_kib: self.config.auth.argon2_memory_kib,
            iterations: self.config.auth.argon2_iterations,
        }
    }

    /// A hash to verify against for unknown emails (computed once).
    pub async fn dummy_hash(&self) -> ApiResult<String> {
        self.dummy_hash
            .get_or_try_init(|| crate::auth::password::dummy_hash(self.hash_params()))
            .await
            .cloned()
    }
}

/// Builds the generation pipeline the configuration asks for: the standard
/// stages over an OpenAI-compatible model (and Perplexity research when
/// configured), or, with no language model, a pipeline that fails every
/// generation with PROVIDER_NOT_CONFIGURED rather than invent content.
///
/// Errors: when a provider client cannot be built.
pub fn pipeline_from_config(config: &Config) -> anyhow::Result<Pipeline> {
    use crate::config::LlmChoice;
    use crate::providers::http::HttpPolicy;
    let p = &config.providers;
    let http = HttpPolicy {
        connect_timeout: p.connect_timeout,
        read_timeout: p.read_timeout,
        request_timeout: p.request_timeout,
        max_retries: p.max_retries,
        backoff_base: p.backoff_base,
        ..HttpPolicy::default()
    };
    let llm: Option<Arc<dyn crate::providers::LanguageModel>> = match p.llm {
        LlmChoice::OpenAi => Some(Arc::new(crate::providers::openai::OpenAiClient::new(
            crate::providers::openai::OpenAiConfig {
                base_url: p.openai_base_url.clone(),
                api_key: p.openai_api_key.clone(),
                model: p.llm_model.clone(),
                context_tokens: p.llm_context_tokens,
                http: http.clone(),
            },
        )?)),
        LlmChoice::Local => {
            let model_path = p
                .model_path
                .clone()
                .unwrap_or_else(|| crate::providers::local_llm::default_model_path(&p.data_dir));
            match crate::providers::local_llm::LocalLlm::load(crate::providers::local_llm::LocalLlmConfig {
                model_path,
                context_tokens: p.local_context_tokens,
                temperature: 0.4,
                seed: 7,
            }) {
                Ok(model) => Some(Arc::new(model)),
                Err(e) => {
                    tracing::warn!(error = %e, "the local model is unavailable: generations will fail with MODEL_MISSING");
                    return Ok(Pipeline::unavailable("MODEL_MISSING", e.to_string()));
                }
            }
        }
        LlmChoice::None => None,
    };
    let Some(llm) = llm else {
        tracing::warn!("no language model configured: generations will fail with PROVIDER_NOT_CONFIGURED");
        return Ok(Pipeline::unconfigured());
    };
    let research: Option<Arc<dyn crate::providers::ResearchProvider>> = match &p.perplexity_base_url {
        Some(base) => Some(Arc::new(crate::providers::perplexity::PerplexityClient::new(
            crate::providers::perplexity::PerplexityConfig {
                base_url: base.clone(),
                api_key: p.perplexity_api_key.clone(),
                model: p.research_model.clone(),
                http,
            },
        )?)),
        None => None,
    };
    tracing::info!(llm.model = %llm.name(), research = research.is_some(), "generation pipeline ready");
    Ok(Pipeline::standard(crate::pipeline::stages::Providers {
        llm: Some(llm),
        research,
        fetch: crate::sources::FetchLimits {
            max_bytes: p.fetch_max_bytes,
            timeout: p.fetch_timeout,
            allow_private: p.allow_private_urls,
            ..crate::sources::FetchLimits::default()
        },
        script_concurrency: p.script_concurrency,
    }))
}

/// Installs rustls's ring provider as the process default (reqwest is built
/// without one, to avoid aws-lc-sys). Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Clone)]
struct HttpState {
    app: Arc<App>,
    schema: PodforgeSchema,
}

/// The HTTP router: `POST /graphql`, GraphiQL at `GET /graphql`, websockets at
/// `/graphql/ws`, `/healthz`, `/readyz`.
pub fn router(app: Arc<App>) -> Router {
    let schema = graphql::build(app.clone());
    let state = HttpState {
        app: app.clone(),
        schema,
    };
    let mut graphql_route = axum::routing::post(graphql_post);
    if app.config.graphiql {
        graphql_route = graphql_route.get(graphiql);
    }
    let (ws_app, ws_schema) = (app.clone(), state.schema.clone());
    let ws_route = get(move |headers: HeaderMap, ws: axum::extract::WebSocketUpgrade| {
        graphql::ws::upgrade(ws_app.clone(), ws_schema.clone(), headers, ws)
    });
    Router::new()
        .route("/graphql", graphql_route)
        .route("/graphql/ws", ws_route)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .layer(cors(&app.config.cors_origins))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", http.method = %req.method(), http.path = %req.uri().path(), request_id = %request_id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .expose_headers([header::HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(AllowOrigin::any())
    } else {
        let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
        layer.allow_origin(AllowOrigin::list(list))
    }
}

fn graphql_error(status: StatusCode, message: &str, code: &str) -> Response {
    (status, Json(request_error(message, code))).into_response()
}

/// `POST /graphql`: one operation or a batch (JSON array), with the body and
/// batch limits checked before anything is parsed or run.
async fn graphql_post(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let limits = &state.app.config.limits;
    let bytes = match axum::body::to_bytes(body, limits.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return graphql_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body exceeds {} bytes", limits.max_body_bytes),
                "BAD_REQUEST",
            );
        }
    };
    let batch: BatchRequest = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => {
            return graphql_error(
                StatusCode::BAD_REQUEST,
                &format!("the body is not a GraphQL request: {e}"),
                "BAD_REQUEST",
            );
        }
    };
    let missing_query = match &batch {
        BatchRequest::Single(r) => r.query.trim().is_empty(),
        BatchRequest::Batch(list) => list.iter().any(|r| r.query.trim().is_empty()),
    };
    if missing_query {
        return graphql_error(StatusCode::BAD_REQUEST, "the request has no query", "BAD_REQUEST");
    }
    if let BatchRequest::Batch(list) = &batch
        && (list.len() > limits.max_batch || list.is_empty())
    {
        return graphql_error(
            StatusCode::BAD_REQUEST,
            &format!("a batch must hold 1 to {} operations", limits.max_batch),
            "BAD_REQUEST",
        );
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let auth = Arc::new(RequestAuth::from_header(authorization, &state.app.tokens));
    let batch = match batch {
        BatchRequest::Single(r) => BatchRequest::Single(r.data(auth)),
        BatchRequest::Batch(list) => BatchRequest::Batch(list.into_iter().map(|r| r.data(auth.clone())).collect()),
    };
    let response: BatchResponse = state.schema.execute_batch(batch).await;
    let mut http = Json(response).into_response();
    http.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    http
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("Podforge GraphiQL")
            .finish(),
    )
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers and the newest migration is applied.
async fn readyz(State(state): State<HttpState>) -> Response {
    let check = async {
        let mut conn = state.app.pool.get().await.context("no database connection")?;
        migrate::is_current(&mut conn, &state.app.latest_migration).await
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok(true)) => (StatusCode::OK, "ready").into_response(),
        Ok(Ok(false)) => (StatusCode::SERVICE_UNAVAILABLE, "migrations pending").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database check timed out").into_response(),
    }
}

/// Binds the listener (port 0 picks a free port) and returns it with its address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (is another process using it? set PODFORGE_BIND)"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

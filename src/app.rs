//! The application state: everything a request or a worker needs, shared as
//! `Arc<App>`.
//!
//! This module knows the parts the state is made of (pool, tokens, hub,
//! pipeline, workers) and how they start, but nothing of HTTP or GraphQL:
//! the router lives in [`crate::server`], the API in [`crate::graphql`], and
//! both depend on this module, never the other way round. Which providers a
//! configuration asks for is decided in [`crate::wiring`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::auth::hasher::Hasher;
use crate::auth::password::HashParams;
use crate::auth::token::TokenKeys;
use crate::config::Config;
use crate::db::pool::run;
use crate::db::{DbPool, DbTarget, connect, migrate};
use crate::error::ApiResult;
use crate::jobs::{WorkerConfig, Workers, queue};
use crate::media::signing::UrlSigner;
use crate::media::store::MediaStore;
use crate::pipeline::{GeneratePodcast, Pipeline};
use crate::progress::{self, hub::Hub};
use crate::providers::speech::SpeechProvider;

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
    /// Live websocket gauges (open sockets, running operations), kept by the
    /// websocket endpoint; to be exported as metrics.
    pub ws_stats: Arc<WsStats>,
    /// Where password hashes run, within `PODFORGE_HASH_MEMORY_BUDGET_MIB`.
    pub hasher: Hasher,
    /// The speech provider reading scripts aloud (`PODFORGE_TTS`); `None`
    /// when speech is off.
    pub speech: Option<Arc<dyn SpeechProvider>>,
    /// Where media objects (clips, episode MP3s) live.
    pub media: MediaStore,
    /// Signs and checks media URLs (key derived from the JWT secret).
    pub signer: UrlSigner,
    /// The origin media URLs start with: `PODFORGE_PUBLIC_URL`, else set
    /// from the bound address by [`App::serving_at`].
    public_origin: std::sync::OnceLock<String>,
    dummy_hash: OnceCell<String>,
}

/// Gauges of this process's websockets, updated as sockets and operations
/// start and end (an abrupt disconnect included: the counts are released
/// when the socket's task ends, however it ends). Read them at any time;
/// they are plain counters, no lock.
#[derive(Debug, Default)]
pub struct WsStats {
    open: AtomicUsize,
    subscriptions: AtomicUsize,
}

impl WsStats {
    /// Websockets open now: upgraded and not yet closed.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Operations running on those sockets now: active subscriptions (a
    /// query or mutation sent over a socket counts until its result is sent).
    pub fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// Counts an open socket until the returned guard is dropped.
    pub fn socket_opened(self: &Arc<Self>) -> Gauge {
        Gauge::raise(self.clone(), |s| &s.open)
    }

    /// Counts a running operation until the returned guard is dropped.
    pub fn subscription_started(self: &Arc<Self>) -> Gauge {
        Gauge::raise(self.clone(), |s| &s.subscriptions)
    }
}

/// One unit of a [`WsStats`] gauge, released on drop.
#[derive(Debug)]
pub struct Gauge {
    stats: Arc<WsStats>,
    counter: fn(&WsStats) -> &AtomicUsize,
}

impl Gauge {
    fn raise(stats: Arc<WsStats>, counter: fn(&WsStats) -> &AtomicUsize) -> Self {
        counter(&stats).fetch_add(1, Ordering::Relaxed);
        Self { stats, counter }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        (self.counter)(&self.stats).fetch_sub(1, Ordering::Relaxed);
    }
}

/// How to build an [`App`].
pub struct AppOptions {
    /// Apply pending migrations first.
    pub migrate: bool,
    /// The generation pipeline; `None` picks it from the configuration.
    pub pipeline: Option<Pipeline>,
    /// The speech provider; `None` picks it from the configuration.
    pub speech: Option<Option<Arc<dyn SpeechProvider>>>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            migrate: true,
            pipeline: None,
            speech: None,
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
                ..AppOptions::default()
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
        config.database.check()?;
        let (pool, db_target) = connect::build_pool(&config.database)?;
        let session_target = connect::session_target(&config.database)?;
        // The database is created and migrated through the session URL (a
        // transaction pooler cannot hold the migration's advisory lock);
        // then the pool's own URL must answer too.
        connect::check_reachable(&session_target, config.database.create_if_missing).await?;
        if config.database.listen_url.is_some() {
            connect::check_reachable(&db_target, false).await?;
        }
        if run_migrations {
            migrate::run(&session_target).await?;
        }
        let tokens = TokenKeys::new(
            &config.auth.jwt_secret,
            config.auth.access_token_ttl,
            config.auth.leeway,
        )?;
        let hasher = Hasher::new(config.auth.hash_memory_budget_kib, config.auth.argon2_memory_kib)?;
        let hub = Hub::new(pool.clone());
        let speech = match options.speech {
            Some(s) => s,
            None => crate::wiring::speech_from_config(&config)?,
        };
        let media = MediaStore::from_config(&config.media)?;
        let pipeline = Arc::new(match options.pipeline {
            Some(p) => p,
            None => {
                let audio = speech
                    .clone()
                    .map(|s| crate::wiring::audio_from_config(&config, s, media.clone()));
                crate::wiring::pipeline_from_config(&config, audio)?
            }
        });
        let signer = UrlSigner::new(&config.auth.jwt_secret);
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
            ws_stats: Arc::new(WsStats::default()),
            hasher,
            speech,
            media,
            signer,
            public_origin: std::sync::OnceLock::new(),
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
        // Parsed once already by `build`, so this cannot fail there.
        let listen_target = connect::session_target(&self.config.database).unwrap_or_else(|_| self.db_target.clone());
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
        let purge = tokio::spawn(self.clone().purge_throttle(shutdown.clone()));
        let workers =
            (run_workers && self.config.jobs.workers > 0).then(|| tokio::spawn(self.workers.clone().run(shutdown)));
        tokio::spawn(async move {
            if let Some(w) = workers {
                let _ = w.await;
            }
            let _ = listener.await;
            let _ = purge.await;
        })
    }

    /// Every minute until `shutdown`: deletes sign-in throttle buckets that
    /// have refilled (each instance does; deleting twice is harmless).
    async fn purge_throttle(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let purged = run!(self.pool, anyhow::Error, async |conn| {
                Ok(crate::db::throttle::purge_expired(conn).await?)
            });
            match purged {
                Ok(n) if n > 0 => tracing::debug!(buckets = n, "sign-in throttle buckets purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging sign-in throttle buckets failed"),
            }
        }
    }

    /// After a commit that enqueued jobs: wakes this process's workers and,
    /// through NOTIFY (a checkout of its own, so that behind a transaction
    /// pooler too it is sent after the commit), the others'.
    pub async fn jobs_enqueued(&self) {
        self.workers.wake();
        let sent = run!(self.pool, anyhow::Error, async |conn| {
            Ok(queue::notify_enqueued(conn, crate::pipeline::JOB_KIND).await?)
        });
        if let Err(e) = sent {
            tracing::warn!(error = %e, "job notification failed; workers will find the job by polling");
        }
    }

    /// Records the address the server bound, the origin of media URLs when
    /// `PODFORGE_PUBLIC_URL` is unset (the first call wins).
    pub fn serving_at(&self, addr: std::net::SocketAddr) {
        let _ = self.public_origin.set(format!("http://{addr}"));
    }

    /// The origin media URLs start with, e.g. `https://podforge.fly.dev`
    /// (empty, so URLs are relative, before the server binds).
    pub fn public_origin(&self) -> &str {
        match &self.config.media.public_url {
            Some(url) => url,
            None => self.public_origin.get().map_or("", String::as_str),
        }
    }

    /// A signed URL of the media object `key`, valid for `ttl`.
    pub fn media_url(&self, key: &str, ttl: std::time::Duration) -> String {
        let expires = chrono::Utc::now().timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        format!(
            "{}/media/{key}?{}",
            self.public_origin(),
            self.signer.sign(key, expires)
        )
    }

    /// After a commit that asked the running job `job` to stop: tells the
    /// other processes (this one's workers are told directly). A lost
    /// notification costs only latency: the job's heartbeat sees the request.
    pub async fn notify_cancel(&self, job: uuid::Uuid) {
        let sent = run!(self.pool, anyhow::Error, async |conn| {
            Ok(queue::notify(conn, queue::CANCEL_CHANNEL, &job.to_string()).await?)
        });
        if let Err(e) = sent {
            tracing::warn!(error = %e, job.id = %job, "cancel notification failed; the job's heartbeat will see it");
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
            .get_or_try_init(|| crate::auth::password::dummy_hash(&self.hasher, self.hash_params()))
            .await
            .cloned()
    }
}

/// Installs rustls's ring provider as the process default (reqwest is built
/// without one, to avoid aws-lc-sys). Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

//! Environment -> typed configuration.
//!
//! Every setting comes from an environment variable (a `.env` file in the working
//! directory is read first by `main`, without overriding the real environment).
//! Defaults work on a developer machine with the local PostgreSQL; production
//! (`PODFORGE_ENV=production`) refuses to start without the secrets it needs.
//!
//! This module knows nothing of the database, HTTP or GraphQL: it only parses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};

/// The local development database: the machine's PostgreSQL, database `podforge`
/// (created when missing). TLS off because it is loopback.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/podforge?sslmode=disable";

/// Which rules apply: development is forgiving, production is strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Random per-process JWT secret with a warning, GraphiQL and introspection on.
    Development,
    /// `JWT_SECRET` required, GraphiQL and introspection off unless enabled.
    Production,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable single lines (development default).
    Compact,
    /// One JSON object per line (production default).
    Json,
}

/// How pooled connections are checked before reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recycling {
    /// Only check that no transaction is open.
    Fast,
    /// Also run a test query (`SELECT 1`) before handing a connection out.
    Verified,
}

/// What sits between the pool and PostgreSQL (`PODFORGE_DB_POOLER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooler {
    /// `DATABASE_URL` is a session: the server itself, or a pooler in
    /// session mode (`none`, the default). Statements are prepared once per
    /// connection and cached.
    None,
    /// `DATABASE_URL` is a transaction-mode pooler (PgBouncer
    /// `pool_mode=transaction`, Supabase's pooler on port 6543, Neon's
    /// `-pooler` host): each transaction may run on another server
    /// connection. Every checkout's work runs in one transaction, prepared
    /// statements are not cached (none outlives its transaction), and
    /// session settings are set per transaction (`transaction`).
    Transaction,
}

/// Database settings (`DATABASE_URL` and `PODFORGE_DB_*`).
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// libpq-style URL or key=value string. Understood TLS parameters:
    /// `sslmode` (disable, prefer, require, verify-ca, verify-full) and `sslrootcert`.
    pub url: String,
    /// Session-mode URL for the process's LISTEN connection and for
    /// migrations (which hold a session advisory lock). Transaction-mode
    /// poolers (PgBouncer, Supabase's pooler on 6543) drop LISTEN
    /// registrations and session locks, so point this at the direct or
    /// session port. Defaults to `url`; required when `pooler` is
    /// [`Pooler::Transaction`].
    pub listen_url: Option<String>,
    /// What `url` points at (`PODFORGE_DB_POOLER`).
    pub pooler: Pooler,
    /// PEM bundle of the roots trusted for the server's certificate instead of
    /// the system roots (`PODFORGE_DB_CA_FILE`); `sslrootcert` in the URL wins.
    pub ca_file: Option<PathBuf>,
    /// Maximum open connections in the pool.
    pub pool_size: usize,
    /// How long a request waits for a free connection before UNAVAILABLE.
    pub pool_wait_timeout: Duration,
    /// Connect (TCP + TLS + startup) deadline for a new connection.
    pub connect_timeout: Duration,
    /// Connections older than this are closed instead of reused.
    pub max_lifetime: Duration,
    /// Check performed before a pooled connection is reused.
    pub recycling: Recycling,
    /// `statement_timeout` set on every pooled connection; zero disables.
    pub statement_timeout: Duration,
    /// Create the database when the server says it does not exist.
    pub create_if_missing: bool,
}

/// Token settings (`JWT_SECRET`, `PODFORGE_*_TOKEN_TTL_SECS`).
#[derive(Clone)]
pub struct AuthConfig {
    /// HMAC key for HS256 access tokens (at least 32 bytes in production).
    pub jwt_secret: Vec<u8>,
    /// True when the secret was generated for this process only.
    pub jwt_secret_is_ephemeral: bool,
    /// Access token lifetime.
    pub access_token_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_token_ttl: Duration,
    /// Clock skew tolerated when checking `exp`.
    pub leeway: Duration,
    /// Argon2id memory cost in KiB (OWASP: 19456).
    pub argon2_memory_kib: u32,
    /// Argon2id iterations (OWASP: 2).
    pub argon2_iterations: u32,
    /// Memory password hashes may use at once, KiB
    /// (`PODFORGE_HASH_MEMORY_BUDGET_MIB`): hashes beyond it wait.
    pub hash_memory_budget_kib: u32,
    /// Sign-in throttling (`PODFORGE_SIGNIN_*`).
    pub throttle: ThrottleConfig,
}

/// Sign-in throttling of `login`, `register` and `refreshToken`, per account
/// and per client address, shared by every instance (state in PostgreSQL).
/// Each limit allows a burst of that many attempts, then refills evenly over
/// its window. A limit of 0 turns that throttle off.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Attempts per account (email; the session's user for `refreshToken`)
    /// per `account_window` (`PODFORGE_SIGNIN_ACCOUNT_LIMIT`).
    pub account_limit: u32,
    /// `PODFORGE_SIGNIN_ACCOUNT_WINDOW_SECS`.
    pub account_window: Duration,
    /// Attempts per client address (IPv6: per /64) per `address_window`
    /// (`PODFORGE_SIGNIN_ADDRESS_LIMIT`).
    pub address_limit: u32,
    /// `PODFORGE_SIGNIN_ADDRESS_WINDOW_SECS`.
    pub address_window: Duration,
}

/// Where the client's address comes from (`PODFORGE_TRUSTED_PROXY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustedProxy {
    /// No proxy is trusted: the socket's peer address (`none`, the default).
    None,
    /// The last address in `X-Forwarded-For`, as appended by one trusted
    /// proxy in front of every instance (`x-forwarded-for`).
    XForwardedFor,
    /// Fly.io's `Fly-Client-IP` header (`fly-client-ip`).
    FlyClientIp,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("AuthConfig")
            .field("jwt_secret", &"<redacted>")
            .field("jwt_secret_is_ephemeral", &self.jwt_secret_is_ephemeral)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("leeway", &self.leeway)
            .field("hash_memory_budget_kib", &self.hash_memory_budget_kib)
            .field("throttle", &self.throttle)
            .finish_non_exhaustive()
    }
}

/// Limits that protect the service from hostile or accidental overload.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted HTTP request body, in bytes.
    pub max_body_bytes: usize,
    /// Most operations in one batched HTTP request.
    pub max_batch: usize,
    /// Largest GraphQL document (the `query` text), in bytes. Larger values
    /// belong in variables: the document parser takes about 60 ns a byte,
    /// JSON variables a few.
    pub max_query_bytes: usize,
    /// Deepest selection nesting, fragments inlined.
    pub max_depth: usize,
    /// Highest cost of a document: fields and fragment spreads with fragments
    /// inlined (aliases counted), selections under a paged field counted once
    /// per item of its page (see `graphql::cost`).
    pub max_complexity: usize,
    /// Most directives on one field or fragment.
    pub max_directives_per_field: usize,
    /// Most generations a user may have running (not terminal) at once.
    pub max_active_generations: usize,
}

/// Job queue and worker settings (`PODFORGE_WORKERS`, `PODFORGE_JOB_*`).
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Jobs run at once by `serve` (0: this process runs none) and by `worker`.
    pub workers: usize,
    /// Lease length; a worker silent this long loses its job to another.
    pub lease: Duration,
    /// Poll interval when no notification arrives.
    pub poll_interval: Duration,
    /// Attempts before a generation fails for good.
    pub max_attempts: i32,
    /// First retry delay (doubling per attempt, capped at 5 minutes).
    pub backoff_base: Duration,
}

/// Which language model generations use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmChoice {
    /// An OpenAI-compatible server (`OPENAI_BASE_URL`, `OPENAI_API_KEY`).
    OpenAi,
    /// The embedded local model.
    Local,
    /// None: generations fail with PROVIDER_NOT_CONFIGURED.
    None,
}

/// Provider settings (`OPENAI_*`, `PERPLEXITY_*`, `PODFORGE_LLM*`, `PODFORGE_PROVIDER_*`, `PODFORGE_FETCH_*`).
#[derive(Clone)]
pub struct ProvidersConfig {
    /// The language model in use.
    pub llm: LlmChoice,
    /// OpenAI-compatible base URL.
    pub openai_base_url: String,
    /// Its key (none for servers without auth).
    pub openai_api_key: Option<String>,
    /// Model name.
    pub llm_model: String,
    /// Context window to plan prompts for, tokens.
    pub llm_context_tokens: usize,
    /// Perplexity-compatible base URL; research is on when this or the key is set.
    pub perplexity_base_url: Option<String>,
    /// Its key.
    pub perplexity_api_key: Option<String>,
    /// Research model.
    pub research_model: String,
    /// Connect deadline of provider calls.
    pub connect_timeout: Duration,
    /// Longest silence while reading a provider's response.
    pub read_timeout: Duration,
    /// Deadline of one provider call attempt.
    pub request_timeout: Duration,
    /// Retries of a transient provider failure.
    pub max_retries: u32,
    /// First retry delay, doubling.
    pub backoff_base: Duration,
    /// Largest fetched source, bytes.
    pub fetch_max_bytes: usize,
    /// Deadline for fetching one source.
    pub fetch_timeout: Duration,
    /// Fetch URLs that resolve to loopback, private or link-local addresses.
    pub allow_private_urls: bool,
    /// Segments written at once.
    pub script_concurrency: usize,
    /// Context window the local model's prompts are planned for, tokens
    /// (`PODFORGE_LOCAL_CONTEXT_TOKENS`; smaller is faster).
    pub local_context_tokens: usize,
    /// GGUF file of the local model (`PODFORGE_MODEL_PATH`).
    pub model_path: Option<std::path::PathBuf>,
    /// Where downloaded models live (`PODFORGE_DATA_DIR`).
    pub data_dir: std::path::PathBuf,
}

impl std::fmt::Debug for ProvidersConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are secrets: say only whether they are set.
        f.debug_struct("ProvidersConfig")
            .field("llm", &self.llm)
            .field("openai_base_url", &self.openai_base_url)
            .field("openai_api_key", &self.openai_api_key.as_ref().map(|_| "<set>"))
            .field("llm_model", &self.llm_model)
            .field("perplexity_base_url", &self.perplexity_base_url)
            .field("perplexity_api_key", &self.perplexity_api_key.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

/// Websocket settings (`PODFORGE_WS_*`).
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Time a client has to send `connection_init` (then close 4408).
    pub init_timeout: Duration,
    /// Interval of server pings (`ping` / legacy `ka`).
    pub keepalive: Duration,
    /// Most active subscriptions on one socket.
    pub max_subscriptions: usize,
    /// Largest accepted message, bytes.
    pub max_message_bytes: usize,
}

/// The whole service configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Development or production rules.
    pub environment: Environment,
    /// Address the HTTP server binds (`PODFORGE_BIND`).
    pub bind: SocketAddr,
    /// Database settings.
    pub database: DatabaseConfig,
    /// Token and password settings.
    pub auth: AuthConfig,
    /// Origins allowed by CORS; `*` allows any (`PODFORGE_CORS_ORIGINS`, comma separated).
    pub cors_origins: Vec<String>,
    /// Request headers a cross-origin client may send (`PODFORGE_CORS_HEADERS`,
    /// comma separated, lower case; `*` allows any). The default,
    /// [`DEFAULT_CORS_HEADERS`], includes Apollo Client's client-awareness
    /// headers.
    pub cors_headers: Vec<String>,
    /// Most documents the automatic persisted query cache holds (an LRU per
    /// process, `PODFORGE_APQ_CACHE_ENTRIES`); 0 turns APQ off, and hashed
    /// requests are then answered PERSISTED_QUERY_NOT_SUPPORTED.
    pub apq_cache_entries: usize,
    /// Request limits.
    pub limits: Limits,
    /// Job queue and workers.
    pub jobs: JobsConfig,
    /// Websockets.
    pub ws: WsConfig,
    /// Language model, research and source fetching.
    pub providers: ProvidersConfig,
    /// Serve GraphiQL at `GET /graphql`.
    pub graphiql: bool,
    /// Answer introspection queries.
    pub introspection: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Which proxy header, if any, names the client's address (the socket's
    /// peer otherwise).
    pub trusted_proxy: TrustedProxy,
    /// Speech synthesis.
    pub speech: SpeechConfig,
    /// Where media objects live and how their URLs are made.
    pub media: MediaConfig,
}

/// Which speech provider reads the scripts (`PODFORGE_TTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtsChoice {
    /// The embedded Kokoro-82M engine (assets from `podforge model fetch`).
    Local,
    /// An OpenAI-compatible `/audio/speech` server (OpenAI, Kokoro-FastAPI, Speaches).
    OpenAi,
    /// No audio: episodes complete with a script only.
    None,
}

/// Speech settings (`PODFORGE_TTS*`, `OPENAI_TTS_*`).
#[derive(Debug, Clone)]
pub struct SpeechConfig {
    /// The provider (`PODFORGE_TTS`: `local`, `openai` or `none`; default
    /// `openai` when `OPENAI_API_KEY` is set, else `local`).
    pub tts: TtsChoice,
    /// Base URL of the OpenAI-compatible speech server (`OPENAI_TTS_BASE_URL`,
    /// default `OPENAI_BASE_URL`, then `https://api.openai.com/v1`).
    pub openai_base_url: String,
    /// Its key (`OPENAI_TTS_API_KEY`, default `OPENAI_API_KEY`).
    pub openai_api_key: Option<String>,
    /// Its model (`PODFORGE_TTS_MODEL`, default `tts-1`).
    pub openai_model: String,
    /// Longest input per call, characters (`PODFORGE_TTS_MAX_CHARS`, 4096).
    pub openai_max_chars: usize,
    /// ONNX Runtime threads of the embedded engine (`PODFORGE_TTS_THREADS`, 1).
    pub threads: usize,
    /// Turns synthesized at once (`PODFORGE_TTS_CONCURRENCY`; default 1 for
    /// the embedded engine, whose inference is serialised anyway, 4 otherwise).
    pub concurrency: usize,
    /// Speaking rate, 1.0 normal (`PODFORGE_TTS_SPEED`).
    pub speed: f32,
    /// Attempts per turn for transient failures before the stage fails
    /// (`PODFORGE_TTS_ATTEMPTS`, 3; each attempt has the client's own retries).
    pub attempts: u32,
}

/// Media storage and URLs (`PODFORGE_MEDIA_*`, `PODFORGE_PUBLIC_URL`).
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Local directory of media objects (`PODFORGE_MEDIA_DIR`, default
    /// `<data dir>/media`), used unless an S3 bucket is set.
    pub dir: PathBuf,
    /// S3-compatible bucket (`PODFORGE_MEDIA_S3_BUCKET`); credentials come
    /// from the standard `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub s3_bucket: Option<String>,
    /// S3 endpoint for non-AWS stores (`PODFORGE_MEDIA_S3_ENDPOINT`, e.g.
    /// `https://fly.storage.tigris.dev`, a MinIO URL).
    pub s3_endpoint: Option<String>,
    /// S3 region (`PODFORGE_MEDIA_S3_REGION`, or `AWS_REGION`).
    pub s3_region: Option<String>,
    /// Origin that media URLs start with (`PODFORGE_PUBLIC_URL`, e.g.
    /// `https://podforge.fly.dev`); when unset, `http://` and the address
    /// the server bound.
    pub public_url: Option<String>,
    /// Default lifetime of a signed media URL (`PODFORGE_MEDIA_URL_TTL_SECS`, 3600).
    pub url_ttl: Duration,
}

/// The request headers CORS allows by default: what `fetch`-based GraphQL
/// clients send (Apollo Client's client-awareness and CSRF-prevention headers
/// included) and this service's request id.
pub const DEFAULT_CORS_HEADERS: &[&str] = &[
    "accept",
    "authorization",
    "content-type",
    "apollographql-client-name",
    "apollographql-client-version",
    "apollo-require-preflight",
    "x-apollo-operation-name",
    "x-request-id",
];

/// Reads one typed variable through `lookup`.
struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    fn parse<T: FromStr>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("{name}={v:?} is not valid: {e}")),
        }
    }

    fn secs(&self, name: &str, default: u64) -> anyhow::Result<Duration> {
        Ok(Duration::from_secs(self.parse(name, default)?))
    }

    fn millis(&self, name: &str, default: u64) -> anyhow::Result<Duration> {
        Ok(Duration::from_millis(self.parse(name, default)?))
    }

    fn flag(&self, name: &str, default: bool) -> anyhow::Result<bool> {
        match self.raw(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
            Some(v) => bail!("{name}={v:?} is not a boolean (use true or false)"),
        }
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// Errors name the variable at fault and what it must look like.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let env = Env { lookup };
        let environment = match env.raw("PODFORGE_ENV").as_deref().map(str::trim) {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => bail!("PODFORGE_ENV={other:?} must be development or production"),
        };
        let production = environment == Environment::Production;
        let cors_origins = env
            .raw("PODFORGE_CORS_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_else(|| if production { Vec::new() } else { vec!["*".to_owned()] });
        if let Some(Some(bad)) = env.raw("PODFORGE_CORS_HEADERS").map(|v| {
            v.split(',')
                .map(str::trim)
                .find(|h| {
                    !h.is_empty()
                        && *h != "*"
                        && !h
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b))
                })
                .map(str::to_owned)
        }) {
            bail!("PODFORGE_CORS_HEADERS: {bad:?} is not a header name");
        }
        let bind = env
            .parse("PODFORGE_BIND", SocketAddr::from(([127, 0, 0, 1], 8080)))
            .context("PODFORGE_BIND must be host:port, e.g. 0.0.0.0:8080")?;
        Ok(Self {
            environment,
            bind,
            database: DatabaseConfig::from_env(&env)?,
            auth: AuthConfig::from_env(&env, production)?,
            cors_origins,
            cors_headers: env
                .raw("PODFORGE_CORS_HEADERS")
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_else(|| DEFAULT_CORS_HEADERS.iter().map(|h| (*h).to_owned()).collect()),
            apq_cache_entries: env.parse("PODFORGE_APQ_CACHE_ENTRIES", 2000)?,
            limits: Limits::from_env(&env)?,
            jobs: JobsConfig::from_env(&env)?,
            ws: WsConfig::from_env(&env)?,
            speech: SpeechConfig::from_env(&env)?,
            media: MediaConfig::from_env(&env)?,
            providers: ProvidersConfig::from_env(&env)?,
            graphiql: env.flag("PODFORGE_GRAPHIQL", !production)?,
            introspection: env.flag("PODFORGE_INTROSPECTION", !production)?,
            log_format: match env.raw("PODFORGE_LOG_FORMAT").as_deref().map(str::trim) {
                None if production => LogFormat::Json,
                None => LogFormat::Compact,
                Some("json") => LogFormat::Json,
                Some("compact") | Some("text") => LogFormat::Compact,
                Some(other) => bail!("PODFORGE_LOG_FORMAT={other:?} must be json or compact"),
            },
            trusted_proxy: match env
                .raw("PODFORGE_TRUSTED_PROXY")
                .map(|v| v.trim().to_ascii_lowercase())
                .as_deref()
            {
                None | Some("none") => TrustedProxy::None,
                Some("x-forwarded-for") => TrustedProxy::XForwardedFor,
                Some("fly-client-ip") => TrustedProxy::FlyClientIp,
                Some(other) => {
                    bail!("PODFORGE_TRUSTED_PROXY={other:?} must be none, x-forwarded-for or fly-client-ip")
                }
            },
        })
    }
}

impl DatabaseConfig {
    fn from_env(env: &Env<'_>) -> anyhow::Result<Self> {
        let database = DatabaseConfig {
            url: env
                .raw("DATABASE_URL")
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            listen_url: env.raw("PODFORGE_LISTEN_DATABASE_URL"),
            pooler: match env.raw("PODFORGE_DB_POOLER").as_deref().map(str::trim) {
                None | Some("") | Some("none") => Pooler::None,
                Some("transaction") => Pooler::Transaction,
                Some(other) => bail!("PODFORGE_DB_POOLER={other:?} must be none or transaction"),
            },
            ca_file: env.raw("PODFORGE_DB_CA_FILE").map(PathBuf::from),
            pool_size: env.parse("PODFORGE_DB_POOL_SIZE", 10)?,
            pool_wait_timeout: env.millis("PODFORGE_DB_POOL_TIMEOUT_MS", 5_000)?,
            connect_timeout: env.millis("PODFORGE_DB_CONNECT_TIMEOUT_MS", 5_000)?,
            max_lifetime: env.secs("PODFORGE_DB_MAX_LIFETIME_SECS", 30 * 60)?,
            recycling: match env.raw("PODFORGE_DB_RECYCLING").as_deref().map(str::trim) {
                None | Some("verified") => Recycling::Verified,
                Some("fast") => Recycling::Fast,
                Some(other) => bail!("PODFORGE_DB_RECYCLING={other:?} must be fast or verified"),
            },
            statement_timeout: env.millis("PODFORGE_DB_STATEMENT_TIMEOUT_MS", 30_000)?,
            create_if_missing: env.flag("PODFORGE_DB_CREATE", true)?,
        };
        if database.pool_size == 0 {
            bail!("PODFORGE_DB_POOL_SIZE must be at least 1");
        }
        database.check()?;
        Ok(database)
    }

    /// Refuses settings that cannot work together: a transaction pooler
    /// without a direct (session) URL for LISTEN and migrations.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.pooler == Pooler::Transaction && self.listen_url.is_none() {
            bail!(
                "PODFORGE_DB_POOLER=transaction needs PODFORGE_LISTEN_DATABASE_URL: a direct or session-mode URL \
                 for LISTEN and migrations, which a transaction pooler cannot carry"
            );
        }
        Ok(())
    }

    /// The URL of a real session (LISTEN, migrations' advisory lock):
    /// `listen_url` when set, else `url`.
    pub fn session_url(&self) -> &str {
        self.listen_url.as_deref().unwrap_or(&self.url)
    }
}

impl AuthConfig {
    fn from_env(env: &Env<'_>, production: bool) -> anyhow::Result<Self> {
        let (jwt_secret, jwt_secret_is_ephemeral) = match env.raw("JWT_SECRET") {
            Some(secret) => {
                if production && secret.len() < 32 {
                    bail!("JWT_SECRET must be at least 32 bytes in production");
                }
                (secret.into_bytes(), false)
            }
            None if production => {
                bail!(
                    "JWT_SECRET is required when PODFORGE_ENV=production (32 bytes or more, e.g. `openssl rand -base64 48`)"
                )
            }
            None => {
                let secret: [u8; 32] = rand::random();
                (secret.to_vec(), true)
            }
        };
        Ok(AuthConfig {
            jwt_secret,
            jwt_secret_is_ephemeral,
            access_token_ttl: env.secs("PODFORGE_ACCESS_TOKEN_TTL_SECS", 15 * 60)?,
            refresh_token_ttl: env.secs("PODFORGE_REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?,
            leeway: env.secs("PODFORGE_TOKEN_LEEWAY_SECS", 30)?,
            argon2_memory_kib: env.parse("PODFORGE_ARGON2_MEMORY_KIB", 19_456)?,
            argon2_iterations: env.parse("PODFORGE_ARGON2_ITERATIONS", 2)?,
            hash_memory_budget_kib: env
                .parse::<u32>("PODFORGE_HASH_MEMORY_BUDGET_MIB", 64)?
                .saturating_mul(1024),
            throttle: ThrottleConfig {
                account_limit: env.parse("PODFORGE_SIGNIN_ACCOUNT_LIMIT", 10)?,
                account_window: env.secs("PODFORGE_SIGNIN_ACCOUNT_WINDOW_SECS", 300)?,
                address_limit: env.parse("PODFORGE_SIGNIN_ADDRESS_LIMIT", 60)?,
                address_window: env.secs("PODFORGE_SIGNIN_ADDRESS_WINDOW_SECS", 60)?,
            },
        })
    }
}

impl Limits {
    fn from_env(env: &Env<'_>) -> anyhow::Result<Self> {
        Ok(Limits {
            max_body_bytes: env.parse("PODFORGE_MAX_BODY_BYTES", 2 * 1024 * 1024)?,
            max_batch: env.parse("PODFORGE_MAX_BATCH", 10)?,
            max_query_bytes: env.parse("PODFORGE_MAX_QUERY_BYTES", 256 * 1024)?,
            max_depth: env.parse("PODFORGE_MAX_DEPTH", 12)?,
            max_complexity: env.parse("PODFORGE_MAX_COMPLEXITY", 500)?,
            max_directives_per_field: env.parse("PODFORGE_MAX_DIRECTIVES", 4)?,
            max_active_generations: env.parse("PODFORGE_MAX_ACTIVE_GENERATIONS", 3)?,
        })
    }
}

impl JobsConfig {
    fn from_env(env: &Env<'_>) -> anyhow::Result<Self> {
        let jobs = JobsConfig {
            workers: env.parse("PODFORGE_WORKERS", 2)?,
            lease: env.secs("PODFORGE_JOB_LEASE_SECS", 30)?,
            poll_interval: env.millis("PODFORGE_JOB_POLL_MS", 5_000)?,
            max_attempts: env.parse("PODFORGE_JOB_MAX_ATTEMPTS", 3)?,
            backoff_base: env.millis("PODFORGE_JOB_BACKOFF_MS", 5_000)?,
        };
        if jobs.lease < Duration::from_secs(1) || jobs.max_attempts < 1 {
            bail!("PODFORGE_JOB_LEASE_SECS must be at least 1 and PODFORGE_JOB_MAX_ATTEMPTS at least 1");
        }
        Ok(jobs)
    }
}

impl WsConfig {
    fn from_env(env: &Env<'_>) -> anyhow::Result<Self> {
        Ok(WsConfig {
            init_timeout: env.millis("PODFORGE_WS_INIT_TIMEOUT_MS", 10_000)?,
            keepalive: env.secs("PODFORGE_WS_KEEPALIVE_SECS", 15)?,
            max_subscriptions: env.parse("PODFORGE_WS_MAX_SUBSCRIPTIONS", 100)?,
            max_message_bytes: env.parse("PODFORGE_WS_MAX_MESSAGE_BYTES", 64 * 1024)?,
        })
    }
}

impl SpeechConfig {
    fn from_env(env: &Env<'_>) -> anyhow::Result<Self> {
        let openai_api_key = env.raw("OPENAI_TTS_API_KEY").or_else(|| env.raw("OPENAI_API_KEY"));
        let tts = match env.raw("PODFORGE_TTS").as_deref().map(str::trim) {
            Some("local") => TtsChoice::Local,
            Some("openai") => TtsChoice::OpenAi,
            Some("none") => TtsChoice::None,
            Some(other) => bail!("PODFORGE_TTS={other:?} must be local, openai or none"),
            None if env.raw("OPENAI_API_KEY").is_some() => TtsChoice::OpenAi,
            None => TtsChoice::Local,
        };
        let speed: f32 = env.parse("PODFORGE_TTS_SPEED", 1.0)?;
        if !(0.5..=2.0).contains(&speed) {
            bail!("PODFORGE_TTS_SPEED must be 0.5 to 2.0");
        }
        Ok(SpeechConfig {
            tts,
            openai_base_url: env
                .raw("OPENAI_TTS_BASE_URL")
                .or_else(|| env.raw("OPENAI_BASE_URL"))
                .unwrap_or_else(|| "https://api.openai.com/v1".to_owned()),
            openai_api_key,
            openai_model: env.raw("PODFORGE_TTS_MODEL").unwrap_or_else(|| "tts-1".to_owned()),
            openai_max_chars: env.parse("PODFORGE_TTS_MAX_CHARS", 4_096)?,
            threads: env.parse::<usize>("PODFORGE_TTS_THREADS", 1)?.max(1),
            concurrency: env
                .parse::<usize>("PODFORGE_TTS_CONCURRENCY", if tts == TtsChoice::Local { 1 } else { 4 })?
                .max(1),
            speed,
            attempts: env.parse::<u32>("PODFORGE_TTS_ATTEMPTS", 3)?.max(1),
        })
    }
}

impl MediaConfig {
    fn from_env(env: &Env<'_>) -> anyhow::Result<Self> {
        let data_dir = env
            .raw("PODFORGE_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(default_data_dir);
        Ok(MediaConfig {
            dir: env
                .raw("PODFORGE_MEDIA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join("media")),
            s3_bucket: env.raw("PODFORGE_MEDIA_S3_BUCKET"),
            s3_endpoint: env.raw("PODFORGE_MEDIA_S3_ENDPOINT"),
            s3_region: env.raw("PODFORGE_MEDIA_S3_REGION").or_else(|| env.raw("AWS_REGION")),
            public_url: env
                .raw("PODFORGE_PUBLIC_URL")
                .map(|u| u.trim_end_matches('/').to_owned()),
            url_ttl: env.secs("PODFORGE_MEDIA_URL_TTL_SECS", 3_600)?,
        })
    }
}

impl ProvidersConfig {
    fn from_env(env: &Env<'_>) -> anyhow::Result<Self> {
        let openai_api_key = env.raw("OPENAI_API_KEY");
        let openai_base_url = env.raw("OPENAI_BASE_URL");
        let llm = match env.raw("PODFORGE_LLM").as_deref().map(str::trim) {
            Some("openai") => LlmChoice::OpenAi,
            Some("local") => LlmChoice::Local,
            Some("none") => LlmChoice::None,
            Some(other) => bail!("PODFORGE_LLM={other:?} must be openai, local or none"),
            None if openai_api_key.is_some() || openai_base_url.is_some() => LlmChoice::OpenAi,
            None => LlmChoice::Local,
        };
        let perplexity_api_key = env.raw("PERPLEXITY_API_KEY");
        let perplexity_base_url = env.raw("PERPLEXITY_BASE_URL").or_else(|| {
            perplexity_api_key
                .as_ref()
                .map(|_| "https://api.perplexity.ai".to_owned())
        });
        let data_dir = env
            .raw("PODFORGE_DATA_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(default_data_dir);
        Ok(ProvidersConfig {
            llm,
            openai_base_url: openai_base_url.unwrap_or_else(|| "https://api.openai.com/v1".to_owned()),
            openai_api_key,
            llm_model: env
                .raw("PODFORGE_LLM_MODEL")
                .unwrap_or_else(|| "gpt-4o-mini".to_owned()),
            llm_context_tokens: env.parse("PODFORGE_LLM_CONTEXT_TOKENS", 32_000)?,
            perplexity_base_url,
            perplexity_api_key,
            research_model: env.raw("PODFORGE_RESEARCH_MODEL").unwrap_or_else(|| "sonar".to_owned()),
            connect_timeout: env.secs("PODFORGE_PROVIDER_CONNECT_TIMEOUT_SECS", 10)?,
            read_timeout: env.secs("PODFORGE_PROVIDER_READ_TIMEOUT_SECS", 60)?,
            request_timeout: env.secs("PODFORGE_PROVIDER_TIMEOUT_SECS", 180)?,
            max_retries: env.parse("PODFORGE_PROVIDER_MAX_RETRIES", 4)?,
            backoff_base: env.millis("PODFORGE_PROVIDER_BACKOFF_MS", 500)?,
            fetch_max_bytes: env.parse("PODFORGE_FETCH_MAX_BYTES", 5 * 1024 * 1024)?,
            fetch_timeout: env.secs("PODFORGE_FETCH_TIMEOUT_SECS", 20)?,
            allow_private_urls: env.flag("PODFORGE_ALLOW_PRIVATE_URLS", false)?,
            script_concurrency: env.parse("PODFORGE_SCRIPT_CONCURRENCY", 4)?,
            local_context_tokens: env.parse("PODFORGE_LOCAL_CONTEXT_TOKENS", 3_072)?,
            model_path: env.raw("PODFORGE_MODEL_PATH").map(std::path::PathBuf::from),
            data_dir,
        })
    }
}

/// `$XDG_DATA_HOME/podforge`, else `~/.local/share/podforge`, else `./.podforge`.
pub fn default_data_dir() -> std::path::PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return std::path::PathBuf::from(xdg).join("podforge");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => std::path::PathBuf::from(home).join(".local/share/podforge"),
        None => std::path::PathBuf::from(".podforge"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_lookup(&move |k| map.get(k).cloned())
    }

    #[test]
    fn development_defaults_work_without_any_variable() {
        let c = config(&[]).unwrap();
        assert_eq!(c.environment, Environment::Development);
        assert!(c.auth.jwt_secret_is_ephemeral);
        assert_eq!(c.auth.jwt_secret.len(), 32);
        assert_eq!(c.database.url, DEFAULT_DATABASE_URL);
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert!(c.graphiql && c.introspection);
        assert_eq!(c.cors_origins, vec!["*"]);
        assert_eq!(c.trusted_proxy, TrustedProxy::None);
        assert_eq!(c.auth.hash_memory_budget_kib, 64 * 1024);
        assert_eq!(c.auth.throttle.account_limit, 10);
    }

    #[test]
    fn cors_headers_default_to_what_graphql_clients_send_and_can_be_set() {
        let c = config(&[]).unwrap();
        assert!(
            c.cors_headers.iter().any(|h| h == "apollographql-client-name"),
            "{:?}",
            c.cors_headers
        );
        let c = config(&[("PODFORGE_CORS_HEADERS", "Authorization, Content-Type,x-trace")]).unwrap();
        assert_eq!(c.cors_headers, vec!["authorization", "content-type", "x-trace"]);
        assert!(config(&[("PODFORGE_CORS_HEADERS", "bad header")]).is_err());
        assert_eq!(config(&[]).unwrap().apq_cache_entries, 2000);
    }

    #[test]
    fn the_trusted_proxy_is_named() {
        let c = config(&[("PODFORGE_TRUSTED_PROXY", "X-Forwarded-For")]).unwrap();
        assert_eq!(c.trusted_proxy, TrustedProxy::XForwardedFor);
        let c = config(&[("PODFORGE_TRUSTED_PROXY", "fly-client-ip")]).unwrap();
        assert_eq!(c.trusted_proxy, TrustedProxy::FlyClientIp);
        let err = config(&[("PODFORGE_TRUSTED_PROXY", "yes")]).unwrap_err();
        assert!(err.to_string().contains("PODFORGE_TRUSTED_PROXY"), "{err}");
    }

    #[test]
    fn production_requires_a_long_jwt_secret() {
        let err = config(&[("PODFORGE_ENV", "production")]).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET is required"));
        let err = config(&[("PODFORGE_ENV", "production"), ("JWT_SECRET", "short")]).unwrap_err();
        assert!(err.to_string().contains("at least 32 bytes"));
        let c = config(&[
            ("PODFORGE_ENV", "production"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .unwrap();
        assert!(!c.graphiql && !c.introspection && c.cors_origins.is_empty());
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&[("PODFORGE_DB_POOL_SIZE", "many")]).unwrap_err();
        assert!(err.to_string().contains("PODFORGE_DB_POOL_SIZE"), "{err}");
        let err = config(&[("PODFORGE_BIND", "nowhere")]).unwrap_err();
        assert!(format!("{err:#}").contains("PODFORGE_BIND"), "{err:#}");
        let err = config(&[("PODFORGE_GRAPHIQL", "perhaps")]).unwrap_err();
        assert!(err.to_string().contains("PODFORGE_GRAPHIQL"));
    }
}

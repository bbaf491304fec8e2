//! Opening PostgreSQL connections: URL parsing, TLS with rustls, the pool.
//!
//! diesel-async connects without TLS on its own, and tokio-postgres only knows
//! `sslmode=disable|prefer|require`. Hosted Postgres (Supabase, Neon, Fly) needs
//! TLS and operators copy libpq URLs with `verify-full` and `sslrootcert`, so this
//! module reads those parameters itself and gives the pool a custom setup that
//! connects through tokio-postgres + rustls (ring provider, no OpenSSL, no libpq).
//!
//! `sslmode` follows libpq's meanings
//! (<https://www.postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-PROTECTION>):
//! - `disable`: plain TCP.
//! - `prefer` (libpq's default): TLS when the server offers it, certificate not checked.
//! - `require`: TLS or fail; certificate not checked unless a root CA file is given,
//!   in which case it is checked like `verify-ca`.
//! - `verify-ca`: TLS, chain checked against the trusted roots.
//! - `verify-full`: `verify-ca` plus the host name must match the certificate.
//!
//! Trusted roots: only the CA file when one is given (`sslrootcert` or
//! `PODFORGE_DB_CA_FILE`, as libpq's `sslrootcert` replaces its default), the
//! system's roots otherwise (libpq's `sslrootcert=system`).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use diesel::ConnectionError;
use diesel::connection::CacheSize;
use diesel_async::pooled_connection::deadpool::{Hook, HookError, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as PgSslMode;

use crate::config::{DatabaseConfig, Pooler, Recycling};

pub use super::pool::DbPool;

/// libpq `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if offered, unverified.
    Prefer,
    /// TLS required, unverified unless a root CA file is given.
    Require,
    /// TLS, chain verified.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

/// A parsed connection target: what tokio-postgres needs plus our TLS choice.
#[derive(Clone)]
pub struct DbTarget {
    /// tokio-postgres settings (host, port, user, password, dbname, ...).
    pub pg: tokio_postgres::Config,
    /// TLS mode from `sslmode`.
    pub ssl_mode: SslMode,
    /// Root CA bundle from `sslrootcert` or `PODFORGE_DB_CA_FILE`.
    pub root_cert: Option<PathBuf>,
    /// `statement_timeout` applied after connecting (per transaction behind a
    /// transaction pooler); zero leaves the server default.
    pub statement_timeout: Duration,
    /// What the URL points at: the server (or a session pooler), or a
    /// transaction pooler (see [`Self::connect`]).
    pub pooler: Pooler,
    tls: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl DbTarget {
    /// Parses a libpq URL (`postgres://user:pass@host:port/db?sslmode=...`) or a
    /// key=value string (`host=... dbname=... sslmode=...`).
    ///
    /// `ca_file` adds to (`sslrootcert` in the URL wins over) the trusted roots.
    /// Errors say which part of the URL is wrong; the password is never echoed.
    pub fn parse(url: &str, ca_file: Option<&Path>, connect_timeout: Duration) -> anyhow::Result<Self> {
        let (rest, params) = split_tls_params(url)?;
        let mut pg = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?;
        let ssl_mode = match params.sslmode.as_deref() {
            None | Some("prefer") | Some("allow") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            Some("require") => SslMode::Require,
            Some("verify-ca") => SslMode::VerifyCa,
            Some("verify-full") => SslMode::VerifyFull,
            Some(other) => {
                bail!("sslmode={other} is not supported (use disable, prefer, require, verify-ca or verify-full)")
            }
        };
        let root_cert = match params.sslrootcert.as_deref() {
            // libpq's keyword for the system's roots.
            Some("system") => None,
            Some(path) => Some(PathBuf::from(path)),
            None => ca_file.map(Path::to_path_buf),
        };
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(connect_timeout);
        }
        pg.ssl_mode(match ssl_mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        if pg.get_application_name().is_none() {
            pg.application_name("podforge");
        }
        let tls = match ssl_mode {
            SslMode::Disable => None,
            mode => Some(Arc::new(tls_config(mode, root_cert.as_deref())?)),
        };
        Ok(Self {
            pg,
            ssl_mode,
            root_cert,
            statement_timeout: Duration::ZERO,
            pooler: Pooler::None,
            tls,
        })
    }

    /// The same server, another database (used to create a missing database).
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut other = self.clone();
        other.pg.dbname(dbname);
        other
    }

    /// The database name, `postgres`'s default being the user name.
    pub fn dbname(&self) -> String {
        self.pg
            .get_dbname()
            .or(self.pg.get_user())
            .unwrap_or("postgres")
            .to_owned()
    }

    /// `user@host:port/db (sslmode=...)`, never the password: for error messages and logs.
    pub fn describe(&self) -> String {
        let host = self
            .pg
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".to_owned());
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        let user = self.pg.get_user().unwrap_or("(no user)");
        let mode = match self.ssl_mode {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        };
        format!("{user}@{host}:{port}/{} (sslmode={mode})", self.dbname())
    }

    /// Opens one tokio-postgres connection (no diesel) and spawns its driver.
    ///
    /// Errors are tokio-postgres's, so callers can read the SQLSTATE.
    pub async fn connect_raw(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        match &self.tls {
            None => {
                let (client, conn) = self.pg.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                Ok(client)
            }
            Some(tls) => {
                let make = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                let (client, conn) = self.pg.connect(make).await?;
                tokio::spawn(conn);
                Ok(client)
            }
        }
    }

    /// Opens one diesel-async connection with TLS as configured and applies the
    /// session settings (statement timeout).
    ///
    /// Behind a transaction pooler ([`Pooler::Transaction`]) the session
    /// settings diesel-async makes when it takes a connection over (time zone,
    /// client encoding: prepared statements each) run inside one transaction,
    /// so that they reach one server connection; PgBouncer then re-applies
    /// those two (it tracks them) on every server connection the client gets.
    /// The statement cache is disabled, and the statement timeout is left to
    /// each transaction ([`DbPool::begin`]).
    pub async fn connect(&self) -> Result<AsyncPgConnection, ConnectionError> {
        if self.pooler == Pooler::Transaction {
            return self.connect_through_pooler().await;
        }
        let bad = |e: tokio_postgres::Error| ConnectionError::BadConnection(error_chain(&e));
        let mut conn = match &self.tls {
            None => {
                let (client, conn) = self.pg.connect(tokio_postgres::NoTls).await.map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, conn).await?
            }
            Some(tls) => {
                let make = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                let (client, conn) = self.pg.connect(make).await.map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, conn).await?
            }
        };
        if !self.statement_timeout.is_zero() {
            conn.batch_execute(&format!(
                "SET statement_timeout = {}",
                self.statement_timeout.as_millis()
            ))
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
        }
        Ok(conn)
    }

    async fn connect_through_pooler(&self) -> Result<AsyncPgConnection, ConnectionError> {
        let bad = |e: tokio_postgres::Error| ConnectionError::BadConnection(error_chain(&e));
        // The client's driver is spawned by `connect_raw`, so the BEGIN can
        // run before diesel-async's set-up statements.
        let client = self.connect_raw().await.map_err(bad)?;
        client.batch_execute("BEGIN").await.map_err(bad)?;
        let mut conn = AsyncPgConnection::try_from(client).await?;
        conn.set_prepared_statement_cache_size(CacheSize::Disabled);
        conn.batch_execute("COMMIT")
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
        Ok(conn)
    }
}

/// The error and its sources on one line (tokio-postgres hides the cause, such
/// as "connection refused" or a certificate problem, in `source()`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

#[derive(Default)]
struct TlsParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

/// Removes the TLS parameters tokio-postgres does not understand from `url`.
fn split_tls_params(url: &str) -> anyhow::Result<(String, TlsParams)> {
    let mut params = TlsParams::default();
    let take = |params: &mut TlsParams, k: &str, v: &str| match k {
        "sslmode" => {
            params.sslmode = Some(v.to_owned());
            true
        }
        "sslrootcert" => {
            params.sslrootcert = Some(v.to_owned());
            true
        }
        // Client certificates are not supported; refuse rather than ignore them.
        _ => false,
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut parsed = url::Url::parse(url).context("DATABASE_URL is not a valid URL")?;
        let mut kept = Vec::new();
        for (k, v) in parsed.query_pairs() {
            if k == "sslcert" || k == "sslkey" {
                bail!("DATABASE_URL: client certificates ({k}) are not supported");
            }
            if !take(&mut params, &k, &v) {
                kept.push((k.into_owned(), v.into_owned()));
            }
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        Ok((parsed.to_string(), params))
    } else {
        let mut kept = Vec::new();
        for part in url.split_whitespace() {
            match part.split_once('=') {
                Some((k, v)) if take(&mut params, k, v) => {}
                _ => kept.push(part),
            }
        }
        Ok((kept.join(" "), params))
    }
}

/// Builds the rustls client configuration for `mode`.
fn tls_config(mode: SslMode, root_cert: Option<&Path>) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let verify_chain =
        matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) || (mode == SslMode::Require && root_cert.is_some());
    if !verify_chain {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LibpqVerifier { chain: None, provider }))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    if let Some(path) = root_cert {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read the database CA file {}", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("the database CA file {} is not PEM", path.display()))?;
        if certs.is_empty() {
            bail!("the database CA file {} holds no certificate", path.display());
        }
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("bad certificate in {}", path.display()))?;
        }
    }
    if root_cert.is_none() {
        // No CA file: the system roots (libpq's `sslrootcert=system`), which
        // cover hosted providers with public CAs (Neon, Fly).
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    if roots.is_empty() {
        bail!("no trusted root certificates: install ca-certificates or set PODFORGE_DB_CA_FILE");
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("building the certificate verifier")?;
    if mode == SslMode::VerifyFull {
        Ok(builder.with_webpki_verifier(webpki).with_no_client_auth())
    } else {
        Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LibpqVerifier {
                chain: Some(webpki),
                provider,
            }))
            .with_no_client_auth())
    }
}

/// The verifier of the libpq modes that check less than everything:
/// `sslmode=prefer|require` without a CA trusts any certificate (`chain:
/// None`), and `sslmode=verify-ca` requires the chain to lead to a trusted
/// root but not the name to match (`chain: Some`). Handshake signatures are
/// always verified, so the server must hold the certificate's key.
#[derive(Debug)]
struct LibpqVerifier {
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Builds the pool. Connections are opened lazily; call [`check_reachable`] first
/// for a clear start-up error.
///
/// Behind a transaction pooler (`config.pooler`), connections are opened as
/// [`DbTarget::connect`] says and checked with a simple query.
///
/// Pool settings: `pool_size` connections at most, callers wait `pool_wait_timeout`
/// for one (then the error maps to UNAVAILABLE), connections older than
/// `max_lifetime` are closed at their next checkout, and each is checked before
/// reuse as `recycling` says.
pub fn build_pool(config: &DatabaseConfig) -> anyhow::Result<(DbPool, DbTarget)> {
    let mut target = DbTarget::parse(&config.url, config.ca_file.as_deref(), config.connect_timeout)?;
    target.statement_timeout = config.statement_timeout;
    target.pooler = config.pooler;
    let setup_target = target.clone();
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    manager_config.custom_setup = Box::new(move |_url| {
        let target = setup_target.clone();
        async move { target.connect().await }.boxed()
    });
    manager_config.recycling_method = match (config.recycling, config.pooler) {
        (Recycling::Fast, _) => RecyclingMethod::Fast,
        (Recycling::Verified, Pooler::None) => RecyclingMethod::Verified,
        // diesel-async's check is a prepared `SELECT 1`, which a transaction
        // pooler may split from its execution; a simple query cannot be.
        (Recycling::Verified, Pooler::Transaction) => {
            RecyclingMethod::CustomFunction(Box::new(|conn| conn.batch_execute("SELECT 1").boxed()))
        }
    };
    let manager = AsyncDieselConnectionManager::new_with_config(config.url.clone(), manager_config);
    let max_lifetime = config.max_lifetime;
    let pool = Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(config.pool_wait_timeout))
        .create_timeout(Some(config.connect_timeout + Duration::from_secs(1)))
        .recycle_timeout(Some(config.connect_timeout))
        .pre_recycle(Hook::sync_fn(move |_, metrics| {
            if metrics.age() > max_lifetime {
                Err(HookError::message("connection reached its maximum lifetime"))
            } else {
                Ok(())
            }
        }))
        .build()
        .context("building the database pool")?;
    Ok((DbPool::new(pool, config.pooler, config.statement_timeout), target))
}

/// Where a real session is needed (LISTEN, migrations under an advisory
/// lock): `PODFORGE_LISTEN_DATABASE_URL` when set, else `DATABASE_URL`;
/// never through a transaction pooler's settings.
///
/// Errors: that URL does not parse.
pub fn session_target(config: &DatabaseConfig) -> anyhow::Result<DbTarget> {
    let mut target = DbTarget::parse(config.session_url(), config.ca_file.as_deref(), config.connect_timeout)
        .context("PODFORGE_LISTEN_DATABASE_URL")?;
    target.statement_timeout = config.statement_timeout;
    Ok(target)
}

/// Connects once to check the server is there; creates the database when it is
/// missing and `create_if_missing` is set.
///
/// The error is one line naming the target (never the password) and the fix.
pub async fn check_reachable(target: &DbTarget, create_if_missing: bool) -> anyhow::Result<()> {
    match target.connect_raw().await {
        Ok(_) => Ok(()),
        Err(e) if create_if_missing && e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) => {
            create_database(target).await?;
            target
                .connect_raw()
                .await
                .map(|_| ())
                .map_err(|e| unreachable_error(target, &e))
        }
        Err(e) => Err(unreachable_error(target, &e)),
    }
}

fn unreachable_error(target: &DbTarget, e: &tokio_postgres::Error) -> anyhow::Error {
    let hint = if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) {
        "create it or set PODFORGE_DB_CREATE=true"
    } else {
        "is PostgreSQL running? Start it (e.g. `pg_ctlcluster 15 main start`) or set DATABASE_URL"
    };
    anyhow::anyhow!(
        "cannot connect to the database {}: {}; {hint}",
        target.describe(),
        error_chain(e)
    )
}

/// `CREATE DATABASE` through the server's `postgres` database.
async fn create_database(target: &DbTarget) -> anyhow::Result<()> {
    let name = target.dbname();
    let admin = target.with_dbname("postgres");
    let client = admin.connect_raw().await.map_err(|e| unreachable_error(&admin, &e))?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match client.batch_execute(&format!("CREATE DATABASE {quoted}")).await {
        Ok(()) => {
            tracing::info!(db.name = %name, "created the database");
            Ok(())
        }
        // Another instance created it at the same moment.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "the database {name} does not exist and creating it failed: {}",
            error_chain(&e)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_urls() {
        let t = DbTarget::parse(
            "postgres://u:secret@db.example.com:6543/app?sslmode=verify-full&application_name=x",
            None,
            Duration::from_secs(1),
        );
        // verify-full needs roots; the machine has ca-certificates.
        let t = t.unwrap();
        assert_eq!(t.ssl_mode, SslMode::VerifyFull);
        assert_eq!(t.describe(), "u@db.example.com:6543/app (sslmode=verify-full)");
        assert!(!format!("{t:?}").contains("secret"));

        let t = DbTarget::parse("host=localhost dbname=x sslmode=disable", None, Duration::from_secs(1)).unwrap();
        assert_eq!(t.ssl_mode, SslMode::Disable);
        assert_eq!(t.dbname(), "x");
    }

    #[test]
    fn unknown_sslmode_and_client_certs_are_refused() {
        let err = DbTarget::parse("postgres://h/db?sslmode=sometimes", None, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("sslmode=sometimes"));
        let err = DbTarget::parse("postgres://h/db?sslcert=/x", None, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("client certificates"));
        let err = DbTarget::parse(
            "postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem",
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent.pem"));
    }
}

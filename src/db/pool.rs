//! The connection pool, and the one way to use it: [`run!`].
//!
//! diesel-async prepares every statement as a *named* statement
//! (tokio-postgres's `prepare_typed`: Parse and Describe, then Sync, then
//! Bind and Execute in a second round trip) and caches it on the connection
//! for the next time. A transaction-mode pooler (PgBouncer
//! `pool_mode=transaction`, Supabase's pooler on port 6543, Neon's `-pooler`
//! host) hands each transaction, and each round trip outside one, whichever
//! server connection is free, so the statement is later looked for on a
//! server that never saw it: `prepared statement "s93" does not exist`
//! (or, when another client used the same name there, `already exists`).
//!
//! With [`Pooler::Transaction`] the pool therefore
//! - disables the statement cache of each connection, so no statement
//!   outlives the work that prepared it (see [`super::connect`]), and
//! - runs all of one checkout's work in one transaction ([`run!`]), so the
//!   round trips that prepare and then use a statement reach the same server
//!   connection: the pooler keeps a server for a client while its
//!   transaction is open. The `statement_timeout` is set there too
//!   (`SET LOCAL`, in the same round trip as `BEGIN`), since a session
//!   setting would stay on whichever server connection received it.
//!
//! The cache alone cannot be turned off and be done with: a statement that is
//! not cached is still prepared in one round trip and executed in the next.
//!
//! Without the setting, those two errors are what a transaction pooler
//! looks like: they answer UNAVAILABLE (never INTERNAL), and the first one
//! is logged once with the fix ([`DbPool::diagnose`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::QueryResult;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};

use crate::config::Pooler;

/// The pool every request and worker borrows connections from; cheap to clone.
#[derive(Clone)]
pub struct DbPool {
    inner: Pool<AsyncPgConnection>,
    pooler: Pooler,
    /// `BEGIN` plus the per-transaction settings, for [`Pooler::Transaction`].
    begin_sql: Arc<str>,
    /// Whether the pooler hint was logged (once per pool).
    hinted: Arc<AtomicBool>,
}

impl DbPool {
    /// Wraps a built pool whose connections go to `pooler`;
    /// `statement_timeout` (zero: the server's) is set per transaction
    /// behind a transaction pooler.
    pub fn new(inner: Pool<AsyncPgConnection>, pooler: Pooler, statement_timeout: Duration) -> Self {
        let begin_sql = if statement_timeout.is_zero() {
            "BEGIN".to_owned()
        } else {
            format!("BEGIN; SET LOCAL statement_timeout = {}", statement_timeout.as_millis())
        };
        Self {
            inner,
            pooler,
            begin_sql: begin_sql.into(),
            hinted: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A connection as it is, with no transaction around it.
    ///
    /// Service code uses [`run!`] instead, which works behind a transaction
    /// pooler too; this is for tests and tools that talk to the server
    /// directly.
    pub async fn get(&self) -> Result<Object<AsyncPgConnection>, PoolError> {
        self.inner.get().await
    }

    /// What the pool's connections go to.
    pub fn pooler(&self) -> Pooler {
        self.pooler
    }

    /// Closes the pool: waiting and later checkouts fail.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Opens the transaction a checkout's work runs in, when the pool is
    /// behind a transaction pooler; true when it did. Used by [`run!`].
    pub async fn begin(&self, conn: &mut AsyncPgConnection) -> QueryResult<bool> {
        match self.pooler {
            Pooler::None => Ok(false),
            Pooler::Transaction => {
                AnsiTransactionManager::begin_transaction_sql(conn, &self.begin_sql).await?;
                Ok(true)
            }
        }
    }

    /// Logs, once per pool, the fix for the errors a transaction pooler
    /// causes when the pool does not know it is behind one. Used by [`run!`].
    pub fn diagnose<T, E: DieselSource>(&self, result: &Result<T, E>) {
        let Err(e) = result else { return };
        if self.pooler != Pooler::None || !e.diesel().is_some_and(is_pooler_error) {
            return;
        }
        if !self.hinted.swap(true, Ordering::Relaxed) {
            tracing::error!(
                error = %e.diesel().map(ToString::to_string).unwrap_or_default(),
                "DATABASE_URL looks like a transaction-mode pooler (PgBouncer pool_mode=transaction, \
                 Supabase port 6543, Neon -pooler host), which loses prepared statements between \
                 transactions: set PODFORGE_DB_POOLER=transaction (and PODFORGE_LISTEN_DATABASE_URL \
                 to a direct or session URL); these requests answer UNAVAILABLE until then"
            );
        }
    }
}

/// Ends the transaction [`DbPool::begin`] opened: commits after `Ok`, rolls
/// back after `Err` (whose error is kept). Used by [`run!`].
pub async fn end<R, E: From<DieselError>>(conn: &mut AsyncPgConnection, result: Result<R, E>) -> Result<R, E> {
    match result {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(conn).await?;
            Ok(value)
        }
        Err(e) => match AnsiTransactionManager::rollback_transaction(conn).await {
            // A broken connection is not taken back by the pool; the
            // original error is the one worth reporting.
            Ok(()) | Err(_) => Err(e),
        },
    }
}

/// Gives the body of [`run!`] its signature (so the closure's argument type
/// is known inside it). Used by [`run!`].
pub fn work<F, R, E>(f: F) -> F
where
    F: AsyncFnOnce(&mut AsyncPgConnection) -> Result<R, E>,
{
    f
}

/// `prepared statement "..." does not exist` or `... already exists`: a named
/// statement met a server connection other than the one it was prepared on.
pub fn is_pooler_error(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let m = info.message();
            m.starts_with("prepared statement \"") && (m.ends_with("does not exist") || m.ends_with("already exists"))
        }
        _ => false,
    }
}

/// An error that may carry a diesel error (for [`DbPool::diagnose`]).
pub trait DieselSource {
    /// The diesel error inside, if any.
    fn diesel(&self) -> Option<&DieselError>;
}

impl DieselSource for DieselError {
    fn diesel(&self) -> Option<&DieselError> {
        Some(self)
    }
}

impl DieselSource for anyhow::Error {
    fn diesel(&self) -> Option<&DieselError> {
        self.downcast_ref()
    }
}

/// `run!(pool, ErrorType, async |conn| { ... })`: checks a connection out of
/// `pool` (a [`DbPool`]) and runs the body with it; evaluates to the body's
/// `Result<_, ErrorType>`. Behind a transaction pooler the body runs in one
/// transaction (committed when it returns `Ok`, rolled back on `Err`), so
/// it must not wait on anything but the database (no provider call, no
/// sleep) and should do its side effects (publishing, notifying) after.
/// `ErrorType` converts from diesel's error and from the pool's (a
/// checkout that timed out).
///
/// A macro, like [`super::retry::transaction!`], because a generic function
/// awaiting an async closure over a borrowed connection runs into the
/// compiler's limits on proving such futures `Send`; expanded in place, the
/// future's type is concrete.
macro_rules! run {
    ($pool:expr, $error:ty, $body:expr) => {{
        let pool: &$crate::db::DbPool = &$pool;
        let work = $crate::db::pool::work::<_, _, $error>($body);
        let result: ::core::result::Result<_, $error> = match pool.get().await {
            Err(e) => Err(<$error as ::core::convert::From<_>>::from(e)),
            Ok(mut conn) => match pool.begin(&mut conn).await {
                Err(e) => Err(<$error as ::core::convert::From<_>>::from(e)),
                Ok(false) => work(&mut *conn).await,
                Ok(true) => {
                    let result = work(&mut *conn).await;
                    $crate::db::pool::end(&mut conn, result).await
                }
            },
        };
        pool.diagnose(&result);
        result
    }};
}
pub(crate) use run;

#[cfg(test)]
mod tests {
    use super::*;

    fn db_error(message: &str) -> DieselError {
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned()))
    }

    #[test]
    fn lost_and_duplicate_statements_are_recognised() {
        assert!(is_pooler_error(&db_error("prepared statement \"s93\" does not exist")));
        assert!(is_pooler_error(&db_error("prepared statement \"s4\" already exists")));
        assert!(!is_pooler_error(&db_error("relation \"podcasts\" does not exist")));
        assert!(!is_pooler_error(&DieselError::NotFound));
        let wrapped = anyhow::Error::new(db_error("prepared statement \"s1\" does not exist")).context("claiming");
        assert!(wrapped.diesel().is_some_and(is_pooler_error));
    }
}

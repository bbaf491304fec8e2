//! Transactions that PostgreSQL may abort to resolve contention, run again.
//!
//! PostgreSQL aborts a transaction with SQLSTATE 40P01 when it picks it as
//! the victim of a deadlock, and with 40001 when it cannot serialise it
//! (`SERIALIZABLE`/`REPEATABLE READ`, or a commit-time conflict). Both say
//! "nothing was written; the same transaction may well succeed now". The
//! lock order (see [`crate::db`]) keeps deadlocks from arising between our own
//! transactions; this helper is the backstop for the rest (another tool's
//! transaction, a path added later) and for serialisation failures, which no
//! lock order prevents.
//!
//! [`transaction!`] is the one helper: it runs the body in a transaction and,
//! when the transaction fails with one of those two errors, runs it again,
//! after a short jittered backoff, at most [`MAX_ATTEMPTS`] times in all.
//! The body must be safe to run again: it only reads and writes through the
//! connection it is given (which is rolled back between attempts), and does
//! its side effects (publishing, notifying) after the commit.

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::backoff::Backoff;

/// Attempts of a transaction, the first included.
pub const MAX_ATTEMPTS: u32 = 4;

/// Waits between attempts: 10 ms doubling, at most 200 ms, jittered (so the
/// two sides of a deadlock do not collide again in step).
const RETRY_BACKOFF: Backoff = Backoff::doubling(Duration::from_millis(10), Duration::from_millis(200));

/// An error that may go away when the same transaction runs again.
pub trait Transient {
    /// True for a deadlock victim (40P01) or a serialisation failure (40001).
    fn is_transient(&self) -> bool;
}

impl Transient for DieselError {
    fn is_transient(&self) -> bool {
        match self {
            Self::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
            // diesel has no kind for 40P01 and does not expose the SQLSTATE;
            // PostgreSQL's message for it is "deadlock detected" (servers
            // with translated messages are not recognised: the lock order
            // still holds for them, only this backstop is lost).
            Self::DatabaseError(DatabaseErrorKind::Unknown, info) => info.message().contains("deadlock detected"),
            _ => false,
        }
    }
}

/// Whether to run a transaction again after `result` of attempt `attempt`
/// (1-based): the delay to wait first, or `None` to return `result`. Logs the
/// retry. Used by [`transaction!`].
pub fn again<T, E: Transient>(result: &Result<T, E>, attempt: u32) -> Option<Duration> {
    match result {
        Err(e) if attempt < MAX_ATTEMPTS && e.is_transient() => {
            let delay = RETRY_BACKOFF.delay(attempt);
            tracing::warn!(
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                "transaction aborted by PostgreSQL (deadlock or serialisation failure); running it again"
            );
            Some(delay)
        }
        _ => None,
    }
}

/// `transaction!(conn, ErrorType, async |conn| { ... })`: runs the body in a
/// transaction on `conn` (`conn.transaction`), and again in a new one when it
/// fails with a [`Transient`] error, up to [`MAX_ATTEMPTS`] attempts;
/// evaluates to the last attempt's `Result<_, ErrorType>`.
///
/// A macro rather than a function: the body is an async closure created
/// anew for each attempt, which diesel-async's `transaction` accepts as it
/// is, where a generic function over a reusable async closure runs into the
/// compiler's limits on `Send` futures. The body must capture by reference
/// (a value it moves out of could not be given to a second attempt; the
/// compiler refuses that).
macro_rules! transaction {
    ($conn:expr, $error:ty, $body:expr) => {{
        let mut attempt = 1_u32;
        loop {
            let result = diesel_async::AsyncConnection::transaction::<_, $error, _>(&mut *$conn, $body).await;
            match $crate::db::retry::again(&result, attempt) {
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                None => break result,
            }
        }
    }};
}
pub(crate) use transaction;

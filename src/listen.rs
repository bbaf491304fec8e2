//! The process's one LISTEN connection.
//!
//! PostgreSQL delivers notifications only to a session that ran `LISTEN`, so
//! each process keeps one dedicated connection outside the pool (a pooled
//! connection would be handed to others, and transaction-mode poolers drop
//! LISTEN registrations; see `PODFORGE_LISTEN_DATABASE_URL`). Notifications
//! carry ids only and are handed to a dispatcher; when the connection drops it
//! is re-opened with backoff, and `on_reconnect` runs so that consumers
//! re-read the tables: notifications sent while disconnected are gone.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::db::DbTarget;

/// Receives notifications: `(channel, payload)`.
pub type Dispatch = Arc<dyn Fn(&str, &str) + Send + Sync>;
/// Called after every (re)connection, once `LISTEN` is in place.
pub type OnReconnect = Arc<dyn Fn() + Send + Sync>;

/// Listens on `channels` until `shutdown`, reconnecting with backoff (100 ms
/// doubling to 10 s).
pub async fn run(
    target: DbTarget,
    channels: Vec<&'static str>,
    dispatch: Dispatch,
    on_reconnect: OnReconnect,
    shutdown: CancellationToken,
) {
    let schedule = Backoff::doubling(Duration::from_millis(100), Duration::from_secs(10));
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        match listen_once(&target, &channels, &dispatch, &on_reconnect, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                failures += 1;
                let delay = schedule.delay(failures);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "LISTEN connection lost; reconnecting");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

async fn listen_once(
    target: &DbTarget,
    channels: &[&'static str],
    dispatch: &Dispatch,
    on_reconnect: &OnReconnect,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut conn: AsyncPgConnection = target.connect().await?;
    let sql: String = channels.iter().map(|c| format!("LISTEN {c};")).collect();
    conn.batch_execute(&sql).await?;
    tracing::debug!(channels = ?channels, "listening");
    on_reconnect();
    let mut stream = std::pin::pin!(conn.notifications_stream());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            item = stream.next() => match item {
                Some(Ok(n)) => dispatch(&n.channel, &n.payload),
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("notification stream ended"),
            },
        }
    }
}

//! The `signin_throttle` table: rate buckets shared by every instance.
//!
//! Each bucket follows the generic cell rate algorithm (GCRA, the "virtual
//! scheduling" form of a token bucket): `limit` attempts per `window` means
//! one attempt costs `window / limit`, a burst of `limit` is allowed from an
//! idle bucket, and the bucket refills continuously. The row holds only the
//! theoretical arrival time `tat`; an attempt is allowed when, after paying
//! for it, `tat` is at most one window ahead of now. One statement decides
//! and records an allowed attempt atomically (concurrent attempts on one
//! bucket serialise on its row), so the limit holds across processes. A
//! refused attempt changes nothing: a flood gets exactly `limit` per window.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::prelude::*;
use diesel::sql_types::{Interval, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

fn interval(d: Duration) -> diesel::pg::data_types::PgInterval {
    diesel::pg::data_types::PgInterval::from_microseconds(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[derive(QueryableByName)]
struct Tat {
    #[diesel(sql_type = Timestamptz)]
    tat: DateTime<Utc>,
}

/// Takes one attempt from `bucket` (at most `limit` per `window`). `Ok(None)`
/// when allowed; `Ok(Some(wait))` when refused, `wait` being how long until
/// the next attempt would be allowed.
pub async fn take(
    conn: &mut AsyncPgConnection,
    bucket: &str,
    limit: u32,
    window: Duration,
) -> QueryResult<Option<Duration>> {
    let cost = window / limit.max(1);
    let allowed: Option<Tat> = diesel::sql_query(
        "INSERT INTO signin_throttle AS t (bucket, tat) VALUES ($1, now() + $2)
         ON CONFLICT (bucket) DO UPDATE SET tat = GREATEST(t.tat, now()) + $2
          WHERE GREATEST(t.tat, now()) + $2 <= now() + $3
         RETURNING tat",
    )
    .bind::<Text, _>(bucket)
    .bind::<Interval, _>(interval(cost))
    .bind::<Interval, _>(interval(window))
    .get_result(conn)
    .await
    .optional()?;
    if allowed.is_some() {
        return Ok(None);
    }
    // Refused: the attempt would be allowed once `tat + cost - window` has come.
    let current: Option<Tat> = diesel::sql_query("SELECT tat FROM signin_throttle WHERE bucket = $1")
        .bind::<Text, _>(bucket)
        .get_result(conn)
        .await
        .optional()?;
    let now = Utc::now();
    let wait = current
        .map(|c| {
            c.tat + chrono::Duration::from_std(cost).unwrap_or_default()
                - chrono::Duration::from_std(window).unwrap_or_default()
                - now
        })
        .and_then(|d| d.to_std().ok())
        .unwrap_or(cost);
    Ok(Some(wait.max(Duration::from_millis(1))))
}

/// Deletes buckets that have refilled completely (their `tat` has passed:
/// such a row allows exactly what a missing one does). Returns how many.
pub async fn purge_expired(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::sql_query("DELETE FROM signin_throttle WHERE tat < now()")
        .execute(conn)
        .await
}

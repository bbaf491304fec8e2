//! Embedded migrations, applied under a PostgreSQL advisory lock.
//!
//! diesel_migrations takes no lock of its own: two instances starting together
//! on an empty database race to create the same tables and one crashes. So the
//! run holds `pg_advisory_lock` on the same connection it migrates with; the
//! second instance waits, then finds nothing pending.

use anyhow::Context;
use diesel::QueryableByName;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::connect::DbTarget;

/// Every migration under `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Advisory lock key for migrations: the bytes of "podforge" as a big-endian i64.
const MIGRATION_LOCK_KEY: i64 = 0x706f_6466_6f72_6765;

/// The newest embedded migration version, e.g. `20261130000002`.
pub fn latest_version() -> String {
    use diesel::migration::MigrationSource;
    let migrations: Vec<Box<dyn diesel::migration::Migration<diesel::pg::Pg>>> =
        MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS).unwrap_or_default();
    migrations
        .iter()
        .map(|m| m.name().version().to_string())
        .max()
        .unwrap_or_default()
}

/// Applies pending migrations. Returns the versions applied (empty when up to date).
///
pub async fn run(target: &DbTarget) -> anyhow::Result<Vec<String>> {
    let mut conn = target
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {} to migrate: {e}", target.describe()))?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(&mut conn)
        .await
        .context("taking the migration lock")?;
    // diesel's migration harness is synchronous: run it on the blocking pool
    // through AsyncConnectionWrapper (diesel-async's AsyncMigrationHarness uses
    // block_in_place, which panics on a current-thread runtime).
    let (result, mut conn) = tokio::task::spawn_blocking(move || {
        let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> = AsyncConnectionWrapper::from(conn);
        let result = wrapper
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(|v| v.to_string()).collect::<Vec<_>>())
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"));
        (result, wrapper.into_inner())
    })
    .await
    .context("migration task")?;
    // Closing the connection would release the lock too; unlock explicitly anyway.
    let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(&mut conn)
        .await;
    let applied = result?;
    for v in &applied {
        tracing::info!(migration.version = %v, "applied migration");
    }
    Ok(applied)
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    version: Option<String>,
}

/// True when the newest embedded migration has been applied (for `/readyz`).
pub async fn is_current(conn: &mut diesel_async::AsyncPgConnection, latest: &str) -> anyhow::Result<bool> {
    let row: Version = diesel::sql_query("SELECT max(version) AS version FROM __diesel_schema_migrations")
        .get_result(conn)
        .await
        .context("reading applied migrations")?;
    Ok(row.version.as_deref().is_some_and(|v| v >= latest))
}

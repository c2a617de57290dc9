//! The schema, as numbered SQL files embedded in the binary and applied in order, each once:
//! `schema_migrations` records what was applied. All of it runs in one transaction holding a
//! transaction-level advisory lock, so routers starting together against a new database apply
//! each migration once, and a failed migration leaves the schema as it was. A database whose
//! schema is newer than this build knows is refused rather than written to.

use super::{Shared, transaction};
use crate::{Result, StoreError};

/// The migrations in order: (version, name, SQL). Versions are dense from 1; a released one
/// is never edited, only followed by a new one.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] =
    &[(1, "init", include_str!("migrations/0001_init.sql"))];

/// The advisory lock key that serialises migrations ("fabrouter" in ASCII, truncated).
const LOCK_KEY: i64 = 0x6661_6272_6f75_7465;

pub(crate) async fn apply(s: &Shared) -> Result<()> {
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    let applied: Vec<(i32, &str)> = transaction!(s, |tx| {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 version integer PRIMARY KEY, \
                 name text NOT NULL, \
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let current: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await?
            .get(0);
        if current > newest {
            return Err(StoreError::backend(format!(
                "the database's schema is at version {current}, newer than this fabd knows \
                 ({newest}); run a newer fabd"
            ))
            .into());
        }
        let mut applied = Vec::new();
        for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await?;
            applied.push((version, name));
        }
        applied
    })?;
    for (version, name) in applied {
        tracing::info!(version, name, "applied a database migration");
    }
    Ok(())
}

pub(crate) async fn current_version(s: &Shared) -> Result<i32> {
    let client = s.client().await.map_err(super::TxError::into_store)?;
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(super::pg_error)?;
    Ok(row.get(0))
}

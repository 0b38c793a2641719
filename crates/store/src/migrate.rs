//! Embedded, ordered migrations per backend; each runs in its own transaction.
//!
//! Every applied migration's SHA-256 (of this backend's text of it) is recorded in
//! `schema_migrations.checksum`. At start, before anything is migrated, the recorded
//! checksums are compared with this binary's: a database on which a migration was applied
//! with other text than this binary carries (an edited migration, a build from another
//! branch) is refused, because the schema it describes is not the one the binary's SQL was
//! written for. A database from before checksums were kept is upgraded in place: its column
//! is added and the applied migrations get this binary's checksums, since there is nothing
//! else to compare them with.

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, Row};

use crate::{Db, StoreError};

/// The checksum recorded for a migration: lowercase hex SHA-256 of its exact text.
pub(crate) fn checksum(sql: &str) -> String {
    hex::encode(fedkey_crypto::sha256(sql.as_bytes()))
}

pub(crate) async fn run(db: &Db) -> Result<(), StoreError> {
    verify_applied(db).await?;
    for &(version, sql) in db.backend.migrations() {
        let mut tx = db.begin().await?;
        lock(db, &mut tx).await?;
        let done = sqlx::query("SELECT COUNT(*) AS n FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>("n")?;
        if done > 0 {
            continue;
        }
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at, checksum) VALUES ($1, 0, $2)")
            .bind(version)
            .bind(checksum(sql))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied migration");
    }
    Ok(())
}

/// Serialises concurrent migrators (several PostgreSQL nodes starting at once).
async fn lock(db: &Db, tx: &mut crate::db::Tx) -> Result<(), StoreError> {
    if let Some(lock) = db.backend.migration_lock() {
        sqlx::query(lock).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Creates or upgrades the bookkeeping table, refuses a database whose applied migrations
/// differ from this binary's, and records the checksums of migrations applied before they
/// were kept. One transaction: a refusal writes nothing.
async fn verify_applied(db: &Db) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    lock(db, &mut tx).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL, checksum TEXT)",
    )
    .execute(&mut *tx)
    .await?;
    let columns: Vec<String> = sqlx::query(db.backend.migration_columns())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("name"))
        .collect::<Result<_, _>>()?;
    if !columns.iter().any(|c| c == "checksum") {
        sqlx::query("ALTER TABLE schema_migrations ADD COLUMN checksum TEXT").execute(&mut *tx).await?;
        tracing::info!("schema_migrations now records a checksum per migration");
    }
    let ours: HashMap<i64, &str> = db.backend.migrations().iter().copied().collect();
    let applied =
        sqlx::query("SELECT version, checksum FROM schema_migrations ORDER BY version").fetch_all(&mut *tx).await?;
    let mut unrecorded = Vec::new();
    for row in &applied {
        let version: i64 = row.try_get("version")?;
        // A migration this binary does not know was applied by a newer one; whether this
        // binary may run on it is the upgrade procedure's call, not the checksum's.
        let Some(sql) = ours.get(&version) else { continue };
        let expected = checksum(sql);
        match row.try_get::<Option<String>, _>("checksum")? {
            Some(recorded) if recorded != expected => {
                tx.rollback().await?;
                return Err(StoreError::MigrationChanged { version, recorded, expected });
            }
            Some(_) => {}
            None => unrecorded.push((version, expected)),
        }
    }
    for (version, sum) in unrecorded {
        sqlx::query("UPDATE schema_migrations SET checksum = $1 WHERE version = $2 AND checksum IS NULL")
            .bind(sum)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, "recorded this binary's checksum for a migration applied before checksums were kept");
    }
    tx.commit().await?;
    Ok(())
}

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
//!
//! Each migration is written once (crates/store/migrations/NNNN_name.sql) and rendered per
//! backend by [`render`]; the checksum is the rendered text's.

mod render;

use std::collections::HashMap;
use std::sync::OnceLock;

use sqlx::{AssertSqlSafe, Row};

use crate::{Backend, Db, StoreError};

pub use render::{MigrationSourceError, SourceProblem};

/// Every migration, in order: its version and its source (see migrations/README.md).
const SOURCES: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_foundation.sql")),
    (2, include_str!("../migrations/0002_scim.sql")),
    (3, include_str!("../migrations/0003_trust_policy.sql")),
    (4, include_str!("../migrations/0004_rotation.sql")),
    (5, include_str!("../migrations/0005_federation.sql")),
    (6, include_str!("../migrations/0006_outbox.sql")),
    (7, include_str!("../migrations/0007_member_index.sql")),
    (8, include_str!("../migrations/0008_reconcile_schedule.sql")),
    (10, include_str!("../migrations/0010_planner.sql")),
    (11, include_str!("../migrations/0011_sync_bulk.sql")),
    (12, include_str!("../migrations/0012_users_follow_groups.sql")),
    (13, include_str!("../migrations/0013_target_allow_http.sql")),
    (14, include_str!("../migrations/0014_leak_response.sql")),
    (15, include_str!("../migrations/0015_overlap_cap.sql")),
    (17, include_str!("../migrations/0017_notifications.sql")),
    (18, include_str!("../migrations/0018_audit_sinks.sql")),
    (19, include_str!("../migrations/0019_oauth_clients.sql")),
    (20, include_str!("../migrations/0020_console_sessions.sql")),
    (21, include_str!("../migrations/0021_security_events.sql")),
    (22, include_str!("../migrations/0022_ssf_verifications.sql")),
    (25, include_str!("../migrations/0025_directory_password_policy.sql")),
];

type Rendered = Result<Vec<(i64, String)>, MigrationSourceError>;

/// This backend's text of every migration, rendered once per process.
fn migrations(backend: Backend) -> Result<&'static [(i64, String)], StoreError> {
    static RENDERED: [OnceLock<Rendered>; 2] = [OnceLock::new(), OnceLock::new()];
    let rendered = RENDERED[backend as usize].get_or_init(|| {
        SOURCES.iter().map(|&(version, source)| Ok((version, render::render(version, source, backend)?))).collect()
    });
    match rendered {
        Ok(list) => Ok(list),
        Err(e) => Err(StoreError::MigrationSource(e.clone())),
    }
}

/// The checksum recorded for a migration: lowercase hex SHA-256 of its exact text.
pub(crate) fn checksum(sql: &str) -> String {
    hex::encode(fedkey_crypto::sha256(sql.as_bytes()))
}

/// This binary's checksum of every migration on `backend`, in order: what
/// `schema_migrations.checksum` records once it is applied.
pub fn checksums(backend: Backend) -> Result<Vec<(i64, String)>, StoreError> {
    Ok(migrations(backend)?.iter().map(|(v, sql)| (*v, checksum(sql))).collect())
}

pub(crate) async fn run(db: &Db) -> Result<(), StoreError> {
    verify_applied(db).await?;
    for (version, sql) in migrations(db.backend)? {
        let (version, sql) = (*version, sql.as_str());
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
    let ours: HashMap<i64, &str> = migrations(db.backend)?.iter().map(|(v, sql)| (*v, sql.as_str())).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of every released migration as each backend applies it (0001–0020 as computed
    /// from the per-dialect files they were once written as): what existing databases
    /// recorded, so the rendered text must keep matching it byte for byte.
    const APPLIED: &[(i64, &str, &str)] = &[
        (
            1,
            "2f9a3ed7adec691a7a7ebaaaf0980d2ba3d31455347e56ca7c5ed0ea20f1c411",
            "b2729bd538425395280b6eceaf78a0bbf70c8b4eab0d4a824d673c602f9ed679",
        ),
        (
            2,
            "5db0a880bb724839e43b33543eb59022ceabe48f9dcdab8109d107036e5e2392",
            "5db0a880bb724839e43b33543eb59022ceabe48f9dcdab8109d107036e5e2392",
        ),
        (
            3,
            "46b9fc2eab9517c36bb1a39f7406db3f9dfbba88115df63f8599a194f40d60a2",
            "46b9fc2eab9517c36bb1a39f7406db3f9dfbba88115df63f8599a194f40d60a2",
        ),
        (
            4,
            "098fbec8180eab0296285a1bc2ab479cfd830baeb8193209e210a6ed62837429",
            "6070d994e8aa2d3912ed08587288019019b53e827fadd1192698846cd8146a0c",
        ),
        (
            5,
            "e6912699d7f275eea21623518f26da70b61c4757f33d5ca67f66c8d629560f78",
            "2947fe747fb45c36126f459bb327c3283db1da3ef8434ccc62e1f2b984d27cf1",
        ),
        (
            6,
            "9dc633084ba618f3b8fb496784345ccb0148da1e05a18098bf9048a1c3532c1f",
            "86fcef62855d4987dd0ec019ec2350281230ba8b8513e401b274046602ed2be2",
        ),
        (
            7,
            "e1c82b3d048c7344620650454d347cf66f15d9dade617f7728f39f1580ca87aa",
            "e1c82b3d048c7344620650454d347cf66f15d9dade617f7728f39f1580ca87aa",
        ),
        (
            8,
            "f0fa1b83ce613e0dc0844ec7945a376ccae4a6ccb230321ac22931e70d292aab",
            "f0fa1b83ce613e0dc0844ec7945a376ccae4a6ccb230321ac22931e70d292aab",
        ),
        (
            10,
            "7e511cb9d3e518f8aeffa51c0e687ddd0dd715a48dd64ddc06528cdd2ccd38cc",
            "6f31d40dcf54dee65b5e08a12acfdacc599281da91ecb0900b5b49afa7a338e2",
        ),
        (
            11,
            "6143f64be86be5633607924cd20e3d13ba6a5a7642d24a74086f2f5fd7648c32",
            "6143f64be86be5633607924cd20e3d13ba6a5a7642d24a74086f2f5fd7648c32",
        ),
        (
            12,
            "78d82797e8b29a5091129b1dcef641325145c50c529dd631603800576969e1be",
            "78d82797e8b29a5091129b1dcef641325145c50c529dd631603800576969e1be",
        ),
        (
            13,
            "c2d24d49911489e70597d2462536f9964ec670c6506dde36a631902e2e50e5d5",
            "c2d24d49911489e70597d2462536f9964ec670c6506dde36a631902e2e50e5d5",
        ),
        (
            14,
            "847890bf13e1dfe86f4dbc5951e8bafee7bbf366f15ab2895234fe780f3e88c6",
            "847890bf13e1dfe86f4dbc5951e8bafee7bbf366f15ab2895234fe780f3e88c6",
        ),
        (
            15,
            "393d3c6af6a5412f34765601579f5f316a92ea387eb656af94cf5344231a7073",
            "393d3c6af6a5412f34765601579f5f316a92ea387eb656af94cf5344231a7073",
        ),
        (
            17,
            "7098f2fb576f42d4249d749699ceef5b5c670b9eb6204b3a92f2da93c4c5e0f6",
            "7098f2fb576f42d4249d749699ceef5b5c670b9eb6204b3a92f2da93c4c5e0f6",
        ),
        (
            18,
            "32c9a27e78d7ab6487f94a9ea13632a9763eff7018e359a887903b61a448c216",
            "ce1537d94f6d23b55e9aaf4866d31a84cb2f0466d8198bc7ca953d5f8a93db89",
        ),
        (
            19,
            "095cba6894dac198da671b080b9c29f7b1b7b9a81d8edf23c20f69ac198b9c3f",
            "095cba6894dac198da671b080b9c29f7b1b7b9a81d8edf23c20f69ac198b9c3f",
        ),
        (
            20,
            "82c8b501f911c48057963de21ae0809be0cda4bf2310f0b28a9cd56d6fc6e21b",
            "707c7773744635a29c905c242835e8b1a5eb0116bafdfb5668a6824f68b64cfc",
        ),
        (
            21,
            "5edf49d573675932a089ed2c5e84898794e07441a21f36566a751e5cf23deabf",
            "c8a789123b420d99dc7817f58e48b05350900af58f0a0fae827382269faf442b",
        ),
        (
            22,
            "3ca2df25886a132b24aa3fc06f83699a9d223bf42a816b6c2888e2d100d9e164",
            "3ca2df25886a132b24aa3fc06f83699a9d223bf42a816b6c2888e2d100d9e164",
        ),
        (
            25,
            "d3fdc9db3cd864ec6d777a925f23cb702cdc506d0ee578f64927d766846ef196",
            "d3fdc9db3cd864ec6d777a925f23cb702cdc506d0ee578f64927d766846ef196",
        ),
    ];

    #[test]
    fn rendered_migrations_match_what_databases_recorded() {
        let versions: Vec<i64> = SOURCES.iter().map(|s| s.0).collect();
        let recorded: Vec<i64> = APPLIED.iter().map(|a| a.0).collect();
        assert_eq!(versions[..recorded.len()], recorded[..], "a migration was removed or renumbered");
        for &(version, sqlite, postgres) in APPLIED {
            for (backend, want) in [(Backend::Sqlite, sqlite), (Backend::Postgres, postgres)] {
                let list = migrations(backend).unwrap();
                let (_, sql) = list.iter().find(|m| m.0 == version).unwrap();
                assert_eq!(checksum(sql), want, "migration {version:04} on {backend:?}");
            }
        }
    }

    #[test]
    fn versions_are_ascending_and_unique() {
        assert!(SOURCES.windows(2).all(|w| w[0].0 < w[1].0));
    }
}

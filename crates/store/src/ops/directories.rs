use fedkey_audit::Outcome;
use fedkey_core::{PasswordPolicy, Timestamp, names};
use serde_json::json;
use sqlx::{Row, any::AnyRow};

use super::{Actor, Store, new_id};
use crate::{Directory, StoreError};

impl Store {
    pub async fn create_directory(&self, actor: &Actor, name: &str) -> Result<Directory, StoreError> {
        names::validate(name)?;
        let d = Directory {
            id: new_id(),
            name: name.to_owned(),
            created_at: self.now(),
            created_by: actor.id.clone(),
            password_policy: PasswordPolicy::Fingerprint,
        };
        let mut tx = self.db.begin().await?;
        sqlx::query("INSERT INTO directories (id, name, created_at, created_by) VALUES ($1, $2, $3, $4)")
            .bind(d.id.clone())
            .bind(d.name.clone())
            .bind(d.created_at.0)
            .bind(d.created_by.clone())
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from(e).conflict_or(format!("directory {name:?}")))?;
        let ev = self.event(actor, "directory.create", Outcome::Success).directory(name).details(json!({"after": d}));
        self.commit_with(tx, actor, ev).await?;
        Ok(d)
    }

    pub async fn list_directories(&self) -> Result<Vec<Directory>, StoreError> {
        let rows =
            sqlx::query("SELECT id, name, created_at, created_by, password_policy FROM directories ORDER BY name")
                .fetch_all(self.db.pool())
                .await?;
        rows.iter().map(directory_from_row).collect()
    }

    pub async fn directory(&self, name: &str) -> Result<Directory, StoreError> {
        names::validate(name)?;
        if let Some(d) = self.cached_directories().by_name.get(name) {
            return Ok(d.clone());
        }
        let row =
            sqlx::query("SELECT id, name, created_at, created_by, password_policy FROM directories WHERE name = $1")
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("directory {name:?}")))?;
        let d = directory_from_row(&row)?;
        let mut cache = self.cached_directories();
        if cache.by_name.len() >= DIRECTORY_CACHE_SIZE {
            cache.by_name.clear();
        }
        cache.by_name.insert(d.name.clone(), d.clone());
        Ok(d)
    }

    /// What a directory holds: trusts, SCIM users and groups, provisioning targets.
    pub async fn directory_contents(&self, name: &str) -> Result<(Directory, DirectoryContents), StoreError> {
        let d = self.directory(name).await?;
        let mut conn = self.db.pool().acquire().await?;
        let c = contents(&mut conn, &d.id).await?;
        Ok((d, c))
    }

    /// Deletes a directory. Unless `force`, refuses (`directory_not_empty`) while it holds
    /// anything; with `force`, its trusts (with their keys, connectors, targets and
    /// material), users, groups and pending deliveries go with it in one transaction. The
    /// audit record keeps what was deleted; the audit log keeps the history.
    pub async fn delete_directory(
        &self,
        actor: &Actor,
        name: &str,
        force: bool,
    ) -> Result<DirectoryContents, StoreError> {
        names::validate(name)?;
        let mut tx = self.db.begin().await?;
        // On PostgreSQL the row lock waits out writers that reference the directory (their
        // foreign-key check takes a share lock) and holds off new ones; SQLite's write
        // transaction is already exclusive.
        let lock = if self.db.backend == crate::Backend::Postgres { " FOR UPDATE" } else { "" };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, name, created_at, created_by, password_policy FROM directories WHERE name = $1{lock}"
        )))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("directory {name:?}")))?;
        let d = directory_from_row(&row)?;
        let c = contents(&mut tx, &d.id).await?;
        if !force && !c.is_empty() {
            return Err(StoreError::Refused {
                code: "directory_not_empty",
                message: format!(
                    "directory {name:?} is not empty ({} trusts, {} users, {} groups, {} targets): \
                     delete them first, or delete with force (`fedkey directory delete --force`)",
                    c.trusts, c.users, c.groups, c.targets
                ),
            });
        }
        for table in
            ["scim_values", "scim_members", "scim_resources", "sync_work", "sync_outbox", "sync_targets", "trusts"]
        {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE directory_id = $1")))
                .bind(d.id.clone())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM directories WHERE id = $1").bind(d.id.clone()).execute(&mut *tx).await?;
        let ev = self
            .event(actor, "directory.delete", Outcome::Success)
            .directory(name)
            .details(json!({"before": d, "force": force, "deleted": c}));
        self.commit_auth_change(tx, actor, ev).await?;
        self.cached_directories().by_name.remove(name);
        Ok(c)
    }

    /// Sets what the directory's SCIM service does with a `password` a client sends. Every
    /// node applies it from its next request: the change is announced like an
    /// authentication change, which empties the directory caches.
    pub async fn set_password_policy(
        &self,
        actor: &Actor,
        name: &str,
        policy: PasswordPolicy,
    ) -> Result<Directory, StoreError> {
        names::validate(name)?;
        let mut tx = self.db.begin().await?;
        let before =
            sqlx::query("SELECT id, name, created_at, created_by, password_policy FROM directories WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("directory {name:?}")))?;
        let before = directory_from_row(&before)?;
        sqlx::query("UPDATE directories SET password_policy = $1 WHERE id = $2")
            .bind(policy.as_str())
            .bind(before.id.clone())
            .execute(&mut *tx)
            .await?;
        let after = Directory { password_policy: policy, ..before.clone() };
        let ev = self.event(actor, "directory.settings", Outcome::Success).directory(name).details(
            json!({"before": {"password_policy": before.password_policy}, "after": {"password_policy": policy}}),
        );
        self.commit_auth_change(tx, actor, ev).await?;
        Ok(after)
    }

    /// The directory cache, emptied first when an authentication-relevant change (a
    /// directory's settings, deletion, …) was made here or announced by another node since
    /// it was filled.
    fn cached_directories(&self) -> std::sync::MutexGuard<'_, DirectoryCache> {
        // A panic elsewhere cannot leave an entry half-written: insert and clear are whole.
        let mut cache = self.directories.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let generation = self.generation();
        if cache.generation != generation {
            cache.by_name.clear();
            cache.generation = generation;
        }
        cache
    }
}

/// Directories by name, as of one cache generation.
#[derive(Default)]
pub(crate) struct DirectoryCache {
    generation: u64,
    pub(crate) by_name: std::collections::HashMap<String, Directory>,
}

/// Directories kept by [`Store::directory`] (found ones only; a miss is asked again).
const DIRECTORY_CACHE_SIZE: usize = 10_000;

fn directory_from_row(r: &AnyRow) -> Result<Directory, StoreError> {
    Ok(Directory {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_at: Timestamp(r.try_get("created_at")?),
        created_by: r.try_get("created_by")?,
        password_policy: r.try_get::<String, _>("password_policy")?.parse()?,
    })
}

/// Counts of what a directory holds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DirectoryContents {
    pub trusts: i64,
    pub users: i64,
    pub groups: i64,
    pub targets: i64,
}

impl DirectoryContents {
    pub fn is_empty(&self) -> bool {
        self.trusts + self.users + self.groups + self.targets == 0
    }
}

async fn contents(conn: &mut sqlx::AnyConnection, directory_id: &str) -> Result<DirectoryContents, StoreError> {
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).bind(directory_id.to_owned());
    Ok(DirectoryContents {
        trusts: count("SELECT COUNT(*) FROM trusts WHERE directory_id = $1").fetch_one(&mut *conn).await?,
        users: count("SELECT COUNT(*) FROM scim_resources WHERE directory_id = $1 AND resource_type = 'User'")
            .fetch_one(&mut *conn)
            .await?,
        groups: count("SELECT COUNT(*) FROM scim_resources WHERE directory_id = $1 AND resource_type = 'Group'")
            .fetch_one(&mut *conn)
            .await?,
        targets: count("SELECT COUNT(*) FROM sync_targets WHERE directory_id = $1").fetch_one(&mut *conn).await?,
    })
}

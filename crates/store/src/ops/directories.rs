use fedkey_audit::Outcome;
use fedkey_core::{Timestamp, names};
use serde_json::json;
use sqlx::{Row, any::AnyRow};

use super::{Actor, Store, new_id};
use crate::{Directory, StoreError};

impl Store {
    pub async fn create_directory(&self, actor: &Actor, name: &str) -> Result<Directory, StoreError> {
        names::validate(name)?;
        let d = Directory { id: new_id(), name: name.to_owned(), created_at: self.now(), created_by: actor.id.clone() };
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
        let rows = sqlx::query("SELECT id, name, created_at, created_by FROM directories ORDER BY name")
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(directory_from_row).collect()
    }

    pub async fn directory(&self, name: &str) -> Result<Directory, StoreError> {
        names::validate(name)?;
        if let Some(d) = self.cached_directories().get(name) {
            return Ok(d.clone());
        }
        let row = sqlx::query("SELECT id, name, created_at, created_by FROM directories WHERE name = $1")
            .bind(name)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("directory {name:?}")))?;
        let d = directory_from_row(&row)?;
        let mut cache = self.cached_directories();
        if cache.len() >= DIRECTORY_CACHE_SIZE {
            cache.clear();
        }
        cache.insert(d.name.clone(), d.clone());
        Ok(d)
    }

    fn cached_directories(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Directory>> {
        // A panic elsewhere cannot leave an entry half-written: insert and clear are whole.
        self.directories.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Directories kept by [`Store::directory`] (found ones only; a miss is asked again).
const DIRECTORY_CACHE_SIZE: usize = 10_000;

fn directory_from_row(r: &AnyRow) -> Result<Directory, StoreError> {
    Ok(Directory {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_at: Timestamp(r.try_get("created_at")?),
        created_by: r.try_get("created_by")?,
    })
}

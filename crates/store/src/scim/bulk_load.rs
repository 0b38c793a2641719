//! The import's store calls: finding resources by the keys an upsert matches on (typed
//! arguments: the server passes keys, never SQL), which keys of a batch are in use, and
//! creating many resources in one transaction.
//!
//! A bulk create is one unit of work: multi-row INSERTs for the resources, their indexed
//! values and their outbox rows, one audit record per resource (the same `scim.create`
//! record a single create writes), one commit. All or nothing: a uniqueness conflict or a
//! missing group member rolls back every resource of the call, and the caller decides
//! what to retry one by one. One commit instead of one per resource is what makes a bulk
//! load fast: each commit is an fsync (SQLite) or a WAL flush and a turn on the audit
//! chain head (PostgreSQL).

use std::collections::HashSet;

use sqlx::Row;

use super::{ListQuery, ResourceWrite, SqlFragment, SqlValue, query_document, uniqueness};
use crate::db::Tx;
use crate::ops::{Actor, Change, Store, new_id};
use crate::{Backend, Directory, StoreError};

/// A key an import row is matched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKey<'a> {
    /// `externalId`, exactly (it is case-exact in SCIM, and not unique).
    ExternalId(&'a str),
    /// `userName` or `displayName` folded with [`crate::scim_sql::fold`]: unique per
    /// directory and type.
    Name(&'a str),
}

/// Which of the keys asked about some stored resource already has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeysInUse {
    pub names: HashSet<String>,
    pub external_ids: HashSet<String>,
}

/// Most bound parameters in one statement ([`Backend::max_binds`]).
pub fn max_binds(backend: Backend) -> usize {
    backend.max_binds()
}

/// Rows per multi-row statement whose rows bind `per_row` parameters each after `shared`
/// parameters bound once.
fn rows_per_statement(backend: Backend, shared: usize, per_row: usize) -> usize {
    (max_binds(backend) - shared) / per_row
}

/// `($k, $k+1, …)` groups for `rows` rows of `per_row` parameters, numbered from `first`,
/// each row's own parameters followed by the shared `tail` text (`, $1, $2`).
fn value_rows(rows: usize, per_row: usize, first: usize, tail: &str) -> String {
    let mut out = String::with_capacity(rows * (per_row * 7 + tail.len() + 4));
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..per_row {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(first + r * per_row + c).to_string());
        }
        out.push_str(tail);
        out.push(')');
    }
    out
}

impl Store {
    /// Resources of `resource_type` in the directory with `key`, at most `limit`, in
    /// creation order.
    pub async fn scim_find(
        &self,
        directory_id: &str,
        resource_type: &str,
        key: ResourceKey<'_>,
        limit: i64,
    ) -> Result<Vec<super::StoredResource>, StoreError> {
        let (sql, value) = match key {
            ResourceKey::ExternalId(x) => ("r.external_id = $1", x),
            ResourceKey::Name(n) => ("r.name_key = $1", n),
        };
        let q = ListQuery {
            filter: Some(SqlFragment {
                sql: sql.to_owned(),
                binds: vec![SqlValue::Text(value.to_owned())],
                pins_id: false,
            }),
            limit,
            ..ListQuery::default()
        };
        Ok(self.scim_list(directory_id, resource_type, &q).await?.1)
    }

    /// Of `names` (folded) and `external_ids`, those a stored resource of `resource_type`
    /// in the directory has: two indexed `IN` lookups per chunk instead of two per row.
    pub async fn scim_keys_in_use(
        &self,
        directory_id: &str,
        resource_type: &str,
        names: &[&str],
        external_ids: &[&str],
    ) -> Result<KeysInUse, StoreError> {
        let mut found = KeysInUse::default();
        for (column, keys, into) in
            [("name_key", names, &mut found.names), ("external_id", external_ids, &mut found.external_ids)]
        {
            for chunk in keys.chunks(rows_per_statement(self.db.backend, 2, 1)) {
                let sql = format!(
                    "SELECT {column} AS k FROM scim_resources WHERE directory_id = $1 AND resource_type = $2 AND {column} IN ({})",
                    (3..3 + chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
                );
                let mut q =
                    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(directory_id.to_owned()).bind(resource_type.to_owned());
                for k in chunk {
                    q = q.bind((*k).to_owned());
                }
                for row in q.fetch_all(self.db.pool()).await? {
                    into.insert(row.try_get::<String, _>("k")?);
                }
            }
        }
        Ok(found)
    }

    /// Creates every resource of `writes` in one transaction, each with its indexed values,
    /// memberships (groups), outbox rows and `scim.create` audit record; returns their ids
    /// in order. Nothing is written unless everything is (see the module comment).
    pub async fn scim_create_many(
        &self,
        actor: &Actor,
        dir: &Directory,
        writes: &[ResourceWrite],
    ) -> Result<Vec<String>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = writes.iter().map(|_| new_id()).collect();
        let mut tx = self.db.begin().await?;
        self.insert_resources(&mut tx, dir, &ids, writes).await?;
        self.insert_values(&mut tx, dir, &ids, writes).await?;
        for (id, w) in ids.iter().zip(writes) {
            if w.members.as_ref().is_some_and(|m| !m.is_empty()) {
                // Groups with members are rare in a load: the single-write path, row by row.
                self.write_side_tables(&mut tx, dir, id, w, Some(&[]), &[]).await?;
            }
        }
        self.insert_create_outbox(&mut tx, dir, &ids, writes).await?;
        let events = ids
            .iter()
            .zip(writes)
            .map(|(id, w)| self.scim_event(actor, dir, "scim.create", w.resource_type, id, &w.changed))
            .collect();
        self.commit_with_events(tx, actor, events).await?;
        Ok(ids)
    }

    async fn insert_resources(
        &self,
        tx: &mut Tx,
        dir: &Directory,
        ids: &[String],
        writes: &[ResourceWrite],
    ) -> Result<(), StoreError> {
        const PER_ROW: usize = 6;
        let docs = writes.iter().map(query_document).collect::<Result<Vec<_>, _>>()?;
        let rows: Vec<usize> = (0..writes.len()).collect();
        for chunk in rows.chunks(rows_per_statement(self.db.backend, 2, PER_ROW)) {
            let sql = format!(
                "INSERT INTO scim_resources (id, resource_type, name_key, external_id, body, body_ci, \
                 directory_id, created_at, version, updated_at) VALUES {}",
                value_rows(chunk.len(), PER_ROW, 3, ", $1, $2, 1, $2")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(dir.id.clone()).bind(self.now().0);
            for &i in chunk {
                let w = &writes[i];
                q = q
                    .bind(ids[i].clone())
                    .bind(w.resource_type)
                    .bind(w.name_key.clone())
                    .bind(w.external_id.clone())
                    .bind(w.body.to_string())
                    .bind(docs[i].clone());
            }
            let kind = writes[chunk[0]].resource_type;
            q.execute(&mut **tx).await.map_err(|e| StoreError::from(e).conflict_or(uniqueness(kind)))?;
        }
        Ok(())
    }

    async fn insert_values(
        &self,
        tx: &mut Tx,
        dir: &Directory,
        ids: &[String],
        writes: &[ResourceWrite],
    ) -> Result<(), StoreError> {
        const PER_ROW: usize = 3;
        let rows: Vec<(&String, &(String, String))> =
            ids.iter().zip(writes).flat_map(|(id, w)| w.indexed.iter().map(move |v| (id, v))).collect();
        for chunk in rows.chunks(rows_per_statement(self.db.backend, 1, PER_ROW)) {
            let sql = format!(
                "INSERT INTO scim_values (resource_id, attr, value_key, directory_id) VALUES {} ON CONFLICT DO NOTHING",
                value_rows(chunk.len(), PER_ROW, 2, ", $1")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(dir.id.clone());
            for (id, (attr, key)) in chunk {
                q = q.bind((*id).clone()).bind(attr.clone()).bind(key.clone());
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The outbox rows a create writes: the resource (`create`) and, for a group, a
    /// `membership` row for each member.
    async fn insert_create_outbox(
        &self,
        tx: &mut Tx,
        dir: &Directory,
        ids: &[String],
        writes: &[ResourceWrite],
    ) -> Result<(), StoreError> {
        const PER_ROW: usize = 8;
        let rows: Vec<usize> = (0..writes.len()).collect();
        for chunk in rows.chunks(rows_per_statement(self.db.backend, 3, PER_ROW)) {
            let sql = format!(
                "INSERT INTO sync_outbox (resource_type, resource_id, display, leaver, events, attributes, external_id, \
                 version, directory_id, change, created_at) VALUES {}",
                value_rows(chunk.len(), PER_ROW, 4, ", $1, $2, $3")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(dir.id.clone())
                .bind(Change::Create.as_str())
                .bind(self.now().0);
            for &i in chunk {
                let w = &writes[i];
                let (display, leaver) = crate::ops::outbox_describe(w.resource_type, &w.body);
                // The `leaver` column: 1 inactive, 0 active, -1 no change (groups).
                let flag: i64 = leaver.map_or(-1, i64::from);
                // What a single create records for security events (version 1).
                let events = super::write_events(w, None, false, Some(1));
                q = q
                    .bind(w.resource_type)
                    .bind(ids[i].clone())
                    .bind(display)
                    .bind(flag)
                    .bind(serde_json::json!(events.kinds).to_string())
                    .bind(serde_json::json!(events.attributes).to_string())
                    .bind(events.external_id)
                    .bind(events.version);
            }
            q.execute(&mut **tx).await?;
        }
        for (id, w) in ids.iter().zip(writes) {
            let Some(members) = w.members.as_ref().filter(|m| !m.is_empty()) else { continue };
            let mut touched: Vec<&String> = members.iter().filter(|m| *m != id).collect();
            touched.sort();
            touched.dedup();
            self.outbox_insert_memberships(tx, &dir.id, &touched).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_rows_number_each_row_then_the_shared_tail() {
        assert_eq!(value_rows(2, 2, 3, ", $1"), "($3, $4, $1), ($5, $6, $1)");
        assert_eq!(value_rows(1, 1, 2, ""), "($2)");
    }

    #[test]
    fn statements_stay_under_the_bind_limits() {
        for b in [Backend::Sqlite, Backend::Postgres] {
            let n = rows_per_statement(b, 2, 6);
            assert!(2 + n * 6 <= max_binds(b));
            assert!(2 + (n + 1) * 6 > max_binds(b));
        }
    }
}

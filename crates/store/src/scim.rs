//! Persistence of SCIM resources: create, read, replace (optimistic versions), delete
//! and list, with memberships kept in their own table and every change committed with
//! its audit record. Protocol rules (schemas, PATCH, projection) live in `fedkey-scim`
//! and the server; this module stores what it is given and enforces uniqueness,
//! referential integrity of members, and version preconditions.

use std::collections::HashSet;

use fedkey_audit::Outcome;
use fedkey_core::Timestamp;
use serde_json::{Value, json};
use sqlx::{Row, any::AnyRow};

use crate::db::Tx;
use crate::ops::{Actor, Change, Store, WriteEvents, new_id};
use crate::{Backend, Directory, StoreError};

/// A member of a group, or a group a resource belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef {
    /// The member's (or group's) id.
    pub value: String,
    /// `User` or `Group`, as stored.
    pub kind: String,
    /// The member's userName / displayName, for `display`.
    pub display: Option<String>,
}

/// A resource as stored. `body` holds neither `meta` nor `members`/`groups`.
#[derive(Debug, Clone)]
pub struct StoredResource {
    pub id: String,
    pub resource_type: String,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub body: Value,
    /// Direct members (groups only).
    pub members: Vec<MemberRef>,
    /// Groups this resource is a direct member of.
    pub groups: Vec<MemberRef>,
}

/// What to store for a create or a replace, prepared by the protocol layer.
#[derive(Debug, Clone)]
pub struct ResourceWrite {
    pub resource_type: &'static str,
    /// `lower(userName)` or `lower(displayName)`: unique per directory and type.
    pub name_key: String,
    pub external_id: Option<String>,
    pub body: Value,
    /// Member ids of a group (`None`: a user, or leave memberships unchanged).
    pub members: Option<Vec<String>>,
    /// Lower-cased values of indexed multi-valued attributes, e.g. `("emails.value", "a@b.c")`.
    pub indexed: Vec<(String, String)>,
    /// Names (never values) of the attributes the request changed, for the audit record.
    pub changed: Vec<String>,
    /// For a replace: what the caller read of the resource at the version it expects.
    pub known: Option<Known>,
}

/// A resource as its writer read it, at the version the replace expects. The replace then
/// writes only what differs from it (a one-member group PATCH used to delete and re-insert
/// every membership, and re-read them first) inside the writers' turn that every SQLite
/// write waits for, and answers from it and the write instead of reading the resource back.
#[derive(Debug, Clone)]
pub struct Known {
    pub resource: StoredResource,
    /// The resource's [`ResourceWrite::indexed`] values at that version.
    pub indexed: Vec<(String, String)>,
}

/// A condition or ordering produced by the filter translator, with its bound values.
/// The SQL refers to the resource row as `r`.
#[derive(Debug, Clone, Default)]
pub struct SqlFragment {
    pub sql: String,
    pub binds: Vec<SqlValue>,
    /// A filter every match of which has one given id (`id eq "…"`, alone or and-ed).
    pub pins_id: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Text(String),
    Int(i64),
    Float(f64),
    Null,
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<SqlFragment>,
    /// An `ORDER BY` expression; `r.id` is always appended as the tie-breaker.
    pub order: Option<SqlFragment>,
    pub descending: bool,
    /// 0-based offset (SCIM `startIndex` − 1).
    pub offset: i64,
    pub limit: i64,
    /// Keyset pagination (RFC 9865 cursors): only resources after this one in the default
    /// order. Only with the default order (no `order`, ascending).
    pub after: Option<ListKey>,
}

/// A resource's place in the default list order: creation time, then id. The pair is
/// unique (the id is) and never changes after creation, so a walk that resumes after a
/// key neither skips nor repeats any resource that exists for the whole walk, whatever
/// is created or deleted meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListKey {
    /// Creation time (microseconds).
    pub created: i64,
    pub id: String,
}

impl ListKey {
    pub fn of(r: &StoredResource) -> ListKey {
        ListKey { created: r.created_at.0, id: r.id.clone() }
    }
}

const RESOURCE_COLUMNS: &str = "r.id, r.resource_type, r.version, r.created_at, r.updated_at, r.body";

/// What a read of `resource_type` selects: [`RESOURCE_COLUMNS`]; `groups_json`, the groups
/// the resource is a direct member of as one JSON array of `[group id, displayName]`; and
/// `members_json`, a group's members as `[member id, type, userName or displayName]`, both
/// sorted by id (NULL or `[]` for none). A read is then one statement instead of three; on
/// SQLite every statement is a round trip to the connection's worker thread. Users' reads
/// leave the members subquery out: PostgreSQL plans a list statement on every execution
/// (its `LIMIT` is a parameter), and planning that subquery halved `userName eq`.
pub fn read_columns(backend: Backend, resource_type: &str) -> String {
    let sqlite = backend == Backend::Sqlite;
    // An aggregate of JSON arrays, the JSON array constructor, and the text of a body's key.
    let agg = |items: &str, order: &str| match sqlite {
        true => format!("json_group_array({items}{order})"),
        false => format!("json_agg({items}{order})::text"),
    };
    let array = if sqlite { "json_array" } else { "json_build_array" };
    let text = |body: &str, key: &str| match sqlite {
        true => format!("json_extract({body}, '$.' || {key})"),
        false => format!("({body}::json ->> {key})"),
    };
    let groups = agg(&format!("{array}(m.group_id, {})", text("g.body", "'displayName'")), " ORDER BY m.group_id");
    let members = if resource_type == "Group" {
        let key = "CASE m.member_type WHEN 'User' THEN 'userName' ELSE 'displayName' END";
        // Unordered: sorted after parsing, in byte order (see `members_from_json`).
        let members = agg(&format!("{array}(m.member_id, m.member_type, {})", text("u.body", key)), "");
        format!(
            "(SELECT {members} FROM scim_members m \
             JOIN scim_resources u ON u.directory_id = m.directory_id AND u.id = m.member_id \
             WHERE m.directory_id = r.directory_id AND m.group_id = r.id)"
        )
    } else {
        "NULL".to_owned()
    };
    format!(
        "{RESOURCE_COLUMNS}, \
         (SELECT {groups} FROM scim_members m \
          JOIN scim_resources g ON g.directory_id = m.directory_id AND g.id = m.group_id \
          WHERE m.directory_id = r.directory_id AND m.member_id = r.id) AS groups_json, \
         {members} AS members_json"
    )
}

/// The statements of a list: one page, and the count of every match.
struct ListSql {
    page: String,
    page_binds: Vec<SqlValue>,
    count: String,
    binds: Vec<SqlValue>,
}

impl ListSql {
    fn new(backend: Backend, directory_id: &str, resource_type: &str, q: &ListQuery) -> ListSql {
        // A filter that pins the id is found through the primary key; the type is then tested
        // as an expression no index serves (see the note above `get_sql`).
        let pinned = q.filter.as_ref().is_some_and(|f| f.pins_id);
        let ty = if pinned { "r.resource_type || ''" } else { "r.resource_type" };
        let mut cond = format!("r.directory_id = $1 AND {ty} = $2");
        let mut binds = vec![SqlValue::Text(directory_id.to_owned()), SqlValue::Text(resource_type.to_owned())];
        if let Some(f) = &q.filter {
            cond.push_str(&format!(" AND ({})", renumber(&f.sql, binds.len())));
            binds.extend(f.binds.iter().cloned());
        }
        let count = format!("SELECT COUNT(*) AS n FROM scim_resources r WHERE {cond}");
        let dir = if q.descending { "DESC" } else { "ASC" };
        let mut order = String::new();
        let mut page_binds = binds.clone();
        let mut page_cond = cond.clone();
        if let Some(k) = &q.after {
            // A row-value comparison: both databases seek the (…, created_at, id) index to
            // the key, so a page deep in the walk costs what the first one does.
            let n = page_binds.len();
            page_cond.push_str(&format!(" AND (r.created_at, r.id) > (${}, ${})", n + 1, n + 2));
            page_binds.push(SqlValue::Int(k.created));
            page_binds.push(SqlValue::Text(k.id.clone()));
        }
        if let Some(o) = &q.order {
            order.push_str(&format!("{} {dir}, ", renumber(&o.sql, page_binds.len())));
            page_binds.extend(o.binds.iter().cloned());
        } else if q.filter.is_some() && backend == Backend::Sqlite {
            // `+` hides the (…, created_at, id) index from the ORDER BY: with a LIMIT,
            // SQLite would rather walk the whole directory in that order than sort the few
            // rows an indexed filter (`emails.value eq`, `members eq`) finds.
            order.push_str(&format!("+r.created_at {dir}, "));
        } else {
            order.push_str(&format!("r.created_at {dir}, "));
        }
        order.push_str(&format!("r.id {dir}"));
        let n = page_binds.len();
        let page = format!(
            "SELECT {} FROM scim_resources r WHERE {page_cond} ORDER BY {order} LIMIT ${} OFFSET ${}",
            read_columns(backend, resource_type),
            n + 1,
            n + 2
        );
        page_binds.push(SqlValue::Int(q.limit.max(0)));
        page_binds.push(SqlValue::Int(q.offset.max(0)));
        ListSql { page, page_binds, count, binds }
    }
}

// Finding one resource by id. The WHERE names only the primary key's columns (the type is
// checked apart): given `resource_type = $n` too, PostgreSQL without statistics — a
// directory's first load, before autovacuum has analysed the table — planned every lookup
// by id as a scan of all the directory's resources of that type through the
// `(directory_id, resource_type, …)` indexes, and kept that plan (86 ms per GET at 100,000
// users, measured). `scim_by_id_plans` shows the plans.

/// One resource with its groups (and members), by id; `resource_type` chooses the columns.
fn get_sql(backend: Backend, resource_type: &str) -> String {
    format!(
        "SELECT {} FROM scim_resources r WHERE r.directory_id = $1 AND r.id = $2",
        read_columns(backend, resource_type)
    )
}

/// A resource's version and type, by id. On PostgreSQL the row lock makes a concurrent
/// replace wait and then see the new version (412 or a retry), instead of both writing on
/// top of the same version — under READ COMMITTED the second would silently undo the first
/// (lost group PATCHes). SQLite's write transactions are serial already.
fn version_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SELECT version, resource_type FROM scim_resources WHERE directory_id = $1 AND id = $2",
        Backend::Postgres => {
            "SELECT version, resource_type FROM scim_resources WHERE directory_id = $1 AND id = $2 FOR UPDATE"
        }
    }
}

/// A replace, when the resource is of type `$8` and (with `$9`) at version `$9`. The type
/// test is an expression, not a column an index could serve (see above).
const REPLACE_SQL: &str = "UPDATE scim_resources SET version = version + 1, updated_at = $1, name_key = $2, external_id = $3, body = $4, body_ci = $7 \
     WHERE directory_id = $5 AND id = $6 AND resource_type || '' = $8 AND ($9 IS NULL OR version = $9)";

impl Store {
    pub async fn scim_create(
        &self,
        actor: &Actor,
        dir: &Directory,
        w: ResourceWrite,
    ) -> Result<StoredResource, StoreError> {
        let id = new_id();
        let now = self.now();
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO scim_resources (directory_id, id, resource_type, version, created_at, updated_at, name_key, external_id, body, body_ci) \
             VALUES ($1, $2, $3, 1, $4, $4, $5, $6, $7, $8)",
        )
        .bind(dir.id.clone())
        .bind(id.clone())
        .bind(w.resource_type)
        .bind(now.0)
        .bind(w.name_key.clone())
        .bind(w.external_id.clone())
        .bind(w.body.to_string())
        .bind(query_document(&w)?)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from(e).conflict_or(uniqueness(w.resource_type)))?;
        self.write_side_tables(&mut tx, dir, &id, &w, Some(&[]), &[]).await?;
        let events = write_events(&w, None, false, Some(1));
        self.outbox_for_write(&mut tx, dir, &id, &w, Change::Create, &[], &events).await?;
        let ev = self.scim_event(actor, dir, "scim.create", w.resource_type, &id, &w.changed);
        self.commit_with(tx, actor, ev).await?;
        self.scim_get(&dir.id, w.resource_type, &id).await
    }

    /// Replaces a resource (a PUT). `expected_version` (from `If-Match`) must match when given.
    pub async fn scim_replace(
        &self,
        actor: &Actor,
        dir: &Directory,
        id: &str,
        expected_version: Option<i64>,
        w: ResourceWrite,
    ) -> Result<StoredResource, StoreError> {
        self.scim_write_over(actor, dir, id, expected_version, w, true).await
    }

    /// [`scim_replace`](Self::scim_replace) of the resource a PATCH produced: the same
    /// write, recorded as a patch for the security events.
    pub async fn scim_patch(
        &self,
        actor: &Actor,
        dir: &Directory,
        id: &str,
        expected_version: Option<i64>,
        w: ResourceWrite,
    ) -> Result<StoredResource, StoreError> {
        self.scim_write_over(actor, dir, id, expected_version, w, false).await
    }

    async fn scim_write_over(
        &self,
        actor: &Actor,
        dir: &Directory,
        id: &str,
        expected_version: Option<i64>,
        w: ResourceWrite,
        put: bool,
    ) -> Result<StoredResource, StoreError> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        // The events tell activations and credential changes from what the resource was:
        // the caller's read when it is of the version replaced, else the stored body.
        let known_before = w.known.as_ref().filter(|k| expected_version == Some(k.resource.version));
        let reread = known_before.is_none()
            && w.changed.iter().any(|c| matches!(c.as_str(), "active" | "password" | "x509Certificates"));
        let stored_before = if reread { self.stored_body(&mut tx, &dir.id, id).await? } else { None };
        let before = known_before.map(|k| k.resource.body.clone()).or(stored_before).unwrap_or(Value::Null);
        // The version check is part of the UPDATE (one statement fewer in the writers'
        // turn). On PostgreSQL the UPDATE locks the row: a concurrent replace waits, then
        // re-checks the version against the committed row and updates nothing.
        let updated = sqlx::query(REPLACE_SQL)
            .bind(now.0)
            .bind(w.name_key.clone())
            .bind(w.external_id.clone())
            .bind(w.body.to_string())
            .bind(dir.id.clone())
            .bind(id.to_owned())
            .bind(query_document(&w)?)
            .bind(w.resource_type)
            .bind(expected_version)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from(e).conflict_or(uniqueness(w.resource_type)))?;
        if updated.rows_affected() == 0 {
            // Missing (404) or at another version (412).
            let version = self.current_version(&mut tx, &dir.id, w.resource_type, id).await;
            tx.rollback().await?;
            let version = version?;
            // The version found may be uncommitted yet (the writers' shared transaction):
            // a caller that reads again and retries must see it, not the one it had.
            self.db.settled().await;
            return Err(StoreError::PreconditionFailed(format!("{} {id} is at version {version}", w.resource_type)));
        }
        // The UPDATE matched `expected_version`: what the caller read at that version is
        // what is stored.
        let known = w.known.as_ref().filter(|k| expected_version == Some(k.resource.version));
        let old_members = match (&w.members, known) {
            (None, _) => Vec::new(),
            (Some(_), Some(k)) => k.resource.members.iter().map(|m| m.value.clone()).collect(),
            (Some(_), None) => self.member_ids(&mut tx, &dir.id, id).await?,
        };
        let old_values = known.map(|k| k.indexed.as_slice());
        self.write_side_tables(&mut tx, dir, id, &w, old_values, &old_members).await?;
        let events = write_events(&w, Some(&before), put, expected_version.map(|v| v + 1));
        self.outbox_for_write(&mut tx, dir, id, &w, Change::Update, &old_members, &events).await?;
        let ev = self.scim_event(actor, dir, "scim.replace", w.resource_type, id, &w.changed);
        let trusted = known.is_some();
        self.commit_with(tx, actor, ev).await?;
        let answer = match w.known {
            Some(k) if trusted => after_replace(k.resource, w.body, w.members.as_deref(), now),
            _ => None,
        };
        match answer {
            Some(r) => Ok(r),
            None => self.scim_get(&dir.id, w.resource_type, id).await,
        }
    }

    pub async fn scim_delete(
        &self,
        actor: &Actor,
        dir: &Directory,
        resource_type: &'static str,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        let version = self.current_version(&mut tx, &dir.id, resource_type, id).await?;
        if expected_version.is_some_and(|v| v != version) {
            return Err(StoreError::PreconditionFailed(format!("{resource_type} {id} is at version {version}")));
        }
        self.outbox_for_delete(&mut tx, dir, resource_type, id, version).await?;
        for sql in [
            "DELETE FROM scim_members WHERE directory_id = $1 AND (group_id = $2 OR member_id = $2)",
            "DELETE FROM scim_values WHERE directory_id = $1 AND resource_id = $2",
            "DELETE FROM scim_resources WHERE directory_id = $1 AND id = $2",
        ] {
            sqlx::query(sql).bind(dir.id.clone()).bind(id.to_owned()).execute(&mut *tx).await?;
        }
        let ev = self.scim_event(actor, dir, "scim.delete", resource_type, id, &[]);
        self.commit_with(tx, actor, ev).await
    }

    pub async fn scim_get(
        &self,
        directory_id: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<StoredResource, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(get_sql(self.db.backend, resource_type)))
            .bind(directory_id.to_owned())
            .bind(id.to_owned())
            .fetch_optional(self.db.pool())
            .await?;
        // The type is checked here, not in the WHERE (see the note above `get_sql`).
        match row.map(|r| resource_from_row(&r)).transpose()? {
            Some(r) if r.resource_type == resource_type => Ok(r),
            _ => Err(StoreError::NotFound(format!("{resource_type} {id:?}"))),
        }
    }

    /// Every group that holds group `id` as a member, directly or through other groups, as
    /// `(id, displayName)`. `UNION` keeps each group once, so a membership cycle ends.
    pub async fn scim_ancestor_groups(
        &self,
        directory_id: &str,
        id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "WITH RECURSIVE up(id) AS ( \
               SELECT group_id FROM scim_members WHERE directory_id = $1 AND member_id = $2 \
               UNION \
               SELECT m.group_id FROM scim_members m JOIN up ON m.member_id = up.id WHERE m.directory_id = $1) \
             SELECT r.id, r.body FROM up JOIN scim_resources r ON r.directory_id = $1 AND r.id = up.id",
        )
        .bind(directory_id.to_owned())
        .bind(id.to_owned())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let body: Value = serde_json::from_str(&r.try_get::<String, _>("body")?)
                    .map_err(|_| StoreError::Corrupt("body of a SCIM group".into()))?;
                let name = body.get("displayName").and_then(Value::as_str).unwrap_or_default().to_owned();
                Ok((r.try_get("id")?, name))
            })
            .collect()
    }

    /// The database's plans for the statements that find one resource by id (GET, the
    /// version check of a delete, a replace's `UPDATE`), as the database would run them
    /// from its plan cache (PostgreSQL: a generic plan): for tests.
    pub async fn scim_by_id_plans(&self, directory_id: &str, id: &str) -> Result<Vec<String>, StoreError> {
        let lit = |v: &str| format!("'{}'", v.replace('\'', "''"));
        let (d, i) = (lit(directory_id), lit(id));
        let by_id = "(text, text)";
        // (statement, its parameter types and values for PostgreSQL's EXPLAIN EXECUTE).
        let statements = [
            (get_sql(self.db.backend, "User"), by_id, format!("{d}, {i}")),
            (version_sql(self.db.backend).to_owned(), by_id, format!("{d}, {i}")),
            (
                REPLACE_SQL.to_owned(),
                "(bigint, text, text, text, text, text, text, text, bigint)",
                format!("0, '', NULL, '', {d}, {i}, '', 'User', NULL"),
            ),
        ];
        let mut tx = self.db.begin_snapshot().await?;
        let mut lines = Vec::new();
        let run = |text: String| sqlx::raw_sql(sqlx::AssertSqlSafe(text));
        match self.db.backend {
            Backend::Sqlite => {
                // Parameters left unbound are NULL; SQLite's plan does not depend on them.
                for (sql, _, _) in statements {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
                    for row in rows.fetch_all(&mut *tx).await? {
                        lines.push(row.try_get::<String, _>("detail")?);
                    }
                }
            }
            Backend::Postgres => {
                // The generic plan of a prepared statement: what a pooled connection runs
                // once PostgreSQL has decided custom plans do not pay.
                run("SET LOCAL plan_cache_mode = force_generic_plan".into()).execute(&mut *tx).await?;
                for (sql, types, args) in statements {
                    let name = format!("fk_plan_{}", uuid::Uuid::new_v4().simple());
                    run(format!("PREPARE {name} {types} AS {sql}")).execute(&mut *tx).await?;
                    let rows = run(format!("EXPLAIN EXECUTE {name}({args})")).fetch_all(&mut *tx).await;
                    run(format!("DEALLOCATE {name}")).execute(&mut *tx).await?;
                    for row in rows? {
                        lines.push(row.try_get::<String, _>("QUERY PLAN")?);
                    }
                }
            }
        }
        tx.rollback().await?;
        Ok(lines)
    }

    /// One page of a directory's resources of a type, and the total number that match.
    pub async fn scim_list(
        &self,
        directory_id: &str,
        resource_type: &str,
        q: &ListQuery,
    ) -> Result<(i64, Vec<StoredResource>), StoreError> {
        if q.after.is_some() && (q.order.is_some() || q.descending) {
            return Err(StoreError::Invalid("a keyset page is in the default order only".into()));
        }
        let sql = ListSql::new(self.db.backend, directory_id, resource_type, q);
        let rows =
            bind_all(sqlx::query(sqlx::AssertSqlSafe(sql.page)), &sql.page_binds).fetch_all(self.db.pool()).await?;
        let out = rows.iter().map(resource_from_row).collect::<Result<Vec<_>, _>>()?;
        // A first page that is not full holds every match (the common `userName eq` lookup):
        // no second query to count them.
        let first_page = q.offset <= 0 && q.after.is_none();
        let total = if q.limit > 0 && first_page && (out.len() as i64) < q.limit {
            out.len() as i64
        } else {
            bind_all(sqlx::query(sqlx::AssertSqlSafe(sql.count)), &sql.binds)
                .fetch_one(self.db.pool())
                .await?
                .try_get("n")?
        };
        Ok((total, out))
    }

    /// The database's plan for [`Store::scim_list`]'s page and count queries, one line per
    /// step (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL): for tests and
    /// diagnosing slow filters.
    pub async fn scim_list_plan(
        &self,
        directory_id: &str,
        resource_type: &str,
        q: &ListQuery,
    ) -> Result<Vec<String>, StoreError> {
        let sql = ListSql::new(self.db.backend, directory_id, resource_type, q);
        let (explain, column) = match self.db.backend {
            Backend::Sqlite => ("EXPLAIN QUERY PLAN", "detail"),
            Backend::Postgres => ("EXPLAIN", "QUERY PLAN"),
        };
        let mut lines = Vec::new();
        for (stmt, binds) in [(sql.page, &sql.page_binds), (sql.count, &sql.binds)] {
            let text = format!("{explain} {stmt}");
            for row in bind_all(sqlx::query(sqlx::AssertSqlSafe(text)), binds).fetch_all(self.db.pool()).await? {
                lines.push(row.try_get::<String, _>(column)?);
            }
        }
        Ok(lines)
    }

    async fn current_version(
        &self,
        tx: &mut Tx,
        directory_id: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(version_sql(self.db.backend))
            .bind(directory_id.to_owned())
            .bind(id.to_owned())
            .fetch_optional(&mut **tx)
            .await?;
        match row {
            Some(r) if r.try_get::<String, _>("resource_type")? == resource_type => Ok(r.try_get("version")?),
            _ => Err(StoreError::NotFound(format!("{resource_type} {id:?}"))),
        }
    }

    /// Outbox rows of a create or replace, in its transaction: the resource itself, and
    /// every member whose membership of this group changed (its `groups` changed).
    #[allow(clippy::too_many_arguments)]
    async fn outbox_for_write(
        &self,
        tx: &mut Tx,
        dir: &Directory,
        id: &str,
        w: &ResourceWrite,
        change: Change,
        old_members: &[String],
        events: &WriteEvents,
    ) -> Result<(), StoreError> {
        let (display, leaver) = crate::ops::outbox_describe(w.resource_type, &w.body);
        self.outbox_insert(tx, &dir.id, w.resource_type, id, change, display.as_deref(), leaver, events).await?;
        let Some(members) = &w.members else { return Ok(()) };
        let new: HashSet<&String> = members.iter().collect();
        let old: HashSet<&String> = old_members.iter().collect();
        let mut touched: Vec<&String> = members.iter().filter(|m| !old.contains(m)).collect();
        touched.extend(old_members.iter().filter(|m| !new.contains(m)));
        touched.sort();
        touched.dedup();
        self.outbox_insert_memberships(tx, &dir.id, &touched).await
    }

    /// Outbox rows of a delete, before the rows go: the groups it was a member of and
    /// (for a group) its members change too.
    async fn outbox_for_delete(
        &self,
        tx: &mut Tx,
        dir: &Directory,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<(), StoreError> {
        self.outbox_insert_related(tx, &dir.id, id).await?;
        let body = self.stored_body(tx, &dir.id, id).await?.unwrap_or(Value::Null);
        let (display, _) = crate::ops::outbox_describe(resource_type, &body);
        let events = WriteEvents {
            kinds: vec!["delete".into()],
            attributes: Vec::new(),
            external_id: body.get("externalId").and_then(Value::as_str).map(str::to_owned),
            version: Some(version),
        };
        self.outbox_insert(tx, &dir.id, resource_type, id, Change::Delete, display.as_deref(), Some(true), &events)
            .await
    }

    /// The stored body of a resource, in `tx` (`None`: missing or unreadable).
    async fn stored_body(&self, tx: &mut Tx, directory_id: &str, id: &str) -> Result<Option<Value>, StoreError> {
        Ok(sqlx::query("SELECT body FROM scim_resources WHERE directory_id = $1 AND id = $2")
            .bind(directory_id.to_owned())
            .bind(id.to_owned())
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.try_get::<String, _>("body"))
            .transpose()?
            .and_then(|b| serde_json::from_str::<Value>(&b).ok()))
    }

    async fn member_ids(&self, tx: &mut Tx, directory_id: &str, group_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT member_id FROM scim_members WHERE directory_id = $1 AND group_id = $2")
            .bind(directory_id.to_owned())
            .bind(group_id.to_owned())
            .fetch_all(&mut **tx)
            .await?;
        rows.iter().map(|r| r.try_get::<String, _>("member_id").map_err(StoreError::from)).collect()
    }

    /// Brings a resource's indexed values and (for groups) memberships up to `w`. Every
    /// added member must exist in the same directory; its type is taken from the store.
    /// `old_values` are the stored values when known (`None`: rewrite them all);
    /// `old_members` are the stored member ids.
    async fn write_side_tables(
        &self,
        tx: &mut Tx,
        dir: &Directory,
        id: &str,
        w: &ResourceWrite,
        old_values: Option<&[(String, String)]>,
        old_members: &[String],
    ) -> Result<(), StoreError> {
        if old_values.is_none_or(|old| !same_values(old, &w.indexed)) {
            self.write_values(tx, dir, id, w, old_values.is_some_and(<[_]>::is_empty)).await?;
        }
        let Some(members) = &w.members else { return Ok(()) };
        if members.iter().any(|m| m == id) {
            return Err(StoreError::Invalid("a group cannot be a member of itself".into()));
        }
        // Sets: an IdP's group can hold tens of thousands of members.
        let new: HashSet<&String> = members.iter().collect();
        let old: HashSet<&String> = old_members.iter().collect();
        let removed: Vec<&String> = old_members.iter().filter(|m| !new.contains(m)).collect();
        for chunk in removed.chunks(WRITE_CHUNK) {
            let sql = format!(
                "DELETE FROM scim_members WHERE directory_id = $1 AND group_id = $2 AND member_id IN ({})",
                (0..chunk.len()).map(|i| format!("${}", i + 3)).collect::<Vec<_>>().join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(dir.id.clone()).bind(id.to_owned());
            for m in chunk {
                q = q.bind((*m).clone());
            }
            q.execute(&mut **tx).await?;
        }
        let mut added: Vec<&String> = members.iter().filter(|m| !old.contains(m)).collect();
        added.sort();
        added.dedup();
        for chunk in added.chunks(WRITE_CHUNK) {
            // Each member's type comes from the directory; one outside it inserts nothing.
            let sql = format!(
                "INSERT INTO scim_members (directory_id, group_id, member_id, member_type) \
                 SELECT r.directory_id, $1, r.id, r.resource_type FROM scim_resources r \
                 WHERE r.directory_id = $2 AND r.id IN ({}) ON CONFLICT DO NOTHING",
                (0..chunk.len()).map(|i| format!("${}", i + 3)).collect::<Vec<_>>().join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_owned()).bind(dir.id.clone());
            for m in chunk {
                q = q.bind((*m).clone());
            }
            let inserted = q.execute(&mut **tx).await?.rows_affected();
            if inserted < chunk.len() as u64 {
                let missing = self.first_missing(tx, &dir.id, chunk).await?;
                return Err(StoreError::Invalid(format!(
                    "member {:?} does not exist in directory {}",
                    missing.unwrap_or_default(),
                    dir.name
                )));
            }
        }
        Ok(())
    }

    /// Replaces a resource's indexed values with `w.indexed` (`fresh`: it has none yet).
    /// Multi-row statements: a write holds the writers' turn, and each statement is a
    /// round trip to the database.
    async fn write_values(
        &self,
        tx: &mut Tx,
        dir: &Directory,
        id: &str,
        w: &ResourceWrite,
        fresh: bool,
    ) -> Result<(), StoreError> {
        if !fresh {
            sqlx::query("DELETE FROM scim_values WHERE directory_id = $1 AND resource_id = $2")
                .bind(dir.id.clone())
                .bind(id.to_owned())
                .execute(&mut **tx)
                .await?;
        }
        for chunk in w.indexed.chunks(WRITE_CHUNK) {
            let rows: Vec<String> =
                (0..chunk.len()).map(|i| format!("($1, $2, ${}, ${})", 3 + 2 * i, 4 + 2 * i)).collect();
            let sql = format!(
                "INSERT INTO scim_values (directory_id, resource_id, attr, value_key) VALUES {} ON CONFLICT DO NOTHING",
                rows.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(dir.id.clone()).bind(id.to_owned());
            for (attr, key) in chunk {
                q = q.bind(attr.clone()).bind(key.clone());
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The first of `ids` that is not a resource of the directory.
    async fn first_missing(
        &self,
        tx: &mut Tx,
        directory_id: &str,
        ids: &[&String],
    ) -> Result<Option<String>, StoreError> {
        for m in ids {
            let found = sqlx::query("SELECT id FROM scim_resources WHERE directory_id = $1 AND id = $2")
                .bind(directory_id.to_owned())
                .bind((*m).clone())
                .fetch_optional(&mut **tx)
                .await?;
            if found.is_none() {
                return Ok(Some((*m).clone()));
            }
        }
        Ok(None)
    }

    fn scim_event(
        &self,
        actor: &Actor,
        dir: &Directory,
        action: &str,
        rt: &str,
        id: &str,
        changed: &[String],
    ) -> fedkey_audit::Event {
        // Each attribute name once, in a stable order.
        let attributes: std::collections::BTreeSet<&String> = changed.iter().collect();
        let mut ev = self
            .event(actor, action, Outcome::Success)
            .directory(&dir.name)
            .details(json!({"resource_type": rt, "id": id, "attributes": attributes}));
        // The actor of a SCIM write is `key:DIR/TRUST#VERSION`; keep trust and version in their columns too.
        if let Some((trust, version)) =
            actor.id.strip_prefix("key:").and_then(|k| k.split_once('/')).and_then(|(_, t)| t.split_once('#'))
        {
            ev.trust = Some(trust.to_owned());
            ev.key_version = version.parse().ok();
        }
        ev
    }
}

/// The security-event record of a create (`before` = `None`) or a replace.
fn write_events(w: &ResourceWrite, before: Option<&Value>, put: bool, version: Option<i64>) -> WriteEvents {
    WriteEvents {
        kinds: crate::ops::events::write_kinds(w.resource_type, before, &w.body, &w.changed, put),
        attributes: w.changed.clone(),
        external_id: w.external_id.clone(),
        version,
    }
}

/// `body_ci`: the query document filters and `sortBy` read (see [`crate::scim_sql`]).
fn query_document(w: &ResourceWrite) -> Result<String, StoreError> {
    let rt = fedkey_scim::schema::resource_type(w.resource_type)
        .ok_or_else(|| StoreError::Invalid(format!("unknown resource type {:?}", w.resource_type)))?;
    Ok(crate::scim_sql::case_folded(rt, &w.body).to_string())
}

fn uniqueness(resource_type: &str) -> String {
    match resource_type {
        "User" => "a User with this userName".into(),
        _ => "a Group with this displayName".into(),
    }
}

/// The resource a replace of `before` (read at the version it replaced) wrote: one version
/// on, `body`, `members`. `None` when a member was added, whose type and display only the
/// store knows. `groups` are as read before the write: a membership that changed meanwhile
/// shows in the next read (a read after the commit would race with such a change too).
fn after_replace(
    before: StoredResource,
    body: Value,
    members: Option<&[String]>,
    now: Timestamp,
) -> Option<StoredResource> {
    let mut r = before;
    if let Some(ids) = members {
        let had: HashSet<&String> = r.members.iter().map(|m| &m.value).collect();
        if !ids.iter().all(|id| had.contains(id)) {
            return None;
        }
        let ids: HashSet<&String> = ids.iter().collect();
        r.members.retain(|m| ids.contains(&m.value));
    }
    r.version += 1;
    r.updated_at = now;
    r.body = body;
    Some(r)
}

/// Whether two lists of indexed values hold the same values (in any order).
fn same_values(a: &[(String, String)], b: &[(String, String)]) -> bool {
    a.len() == b.len() && a.iter().all(|v| b.contains(v)) && b.iter().all(|v| a.contains(v))
}

fn resource_from_row(row: &AnyRow) -> Result<StoredResource, StoreError> {
    let body: String = row.try_get("body")?;
    Ok(StoredResource {
        id: row.try_get("id")?,
        resource_type: row.try_get("resource_type")?,
        version: row.try_get("version")?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        body: serde_json::from_str(&body).map_err(|_| StoreError::Corrupt("scim_resources.body".into()))?,
        members: members_from_json(row.try_get("members_json")?)?,
        groups: groups_from_json(row.try_get("groups_json")?)?,
    })
}

/// The `groups_json` column of [`read_columns`].
fn groups_from_json(json: Option<String>) -> Result<Vec<MemberRef>, StoreError> {
    let Some(json) = json else { return Ok(Vec::new()) };
    let pairs: Vec<(String, Option<String>)> =
        serde_json::from_str(&json).map_err(|_| StoreError::Corrupt("groups of a SCIM resource".into()))?;
    Ok(pairs.into_iter().map(|(value, display)| MemberRef { value, kind: "Group".into(), display }).collect())
}

/// The `members_json` column of [`read_columns`], sorted by id (byte order: PostgreSQL's
/// `ORDER BY` follows the database collation).
fn members_from_json(json: Option<String>) -> Result<Vec<MemberRef>, StoreError> {
    let Some(json) = json else { return Ok(Vec::new()) };
    let triples: Vec<(String, String, Option<String>)> =
        serde_json::from_str(&json).map_err(|_| StoreError::Corrupt("members of a SCIM group".into()))?;
    let mut members: Vec<MemberRef> =
        triples.into_iter().map(|(value, kind, display)| MemberRef { value, kind, display }).collect();
    members.sort_by(|a, b| a.value.cmp(&b.value));
    Ok(members)
}

/// Shifts `$N` placeholders in a translator fragment by `offset` (fragments number their
/// binds from `$1`).
fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == '$' {
            let mut digits = String::new();
            while let Some(&(_, d)) = chars.peek() {
                if d.is_ascii_digit() {
                    digits.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            match digits.parse::<usize>() {
                // `$0` is the listed directory, always `$1` (scim_sql::LISTED_DIRECTORY).
                Ok(0) => out.push_str("$1"),
                Ok(n) => out.push_str(&format!("${}", n + offset)),
                Err(_) => {
                    out.push('$');
                    out.push_str(&digits);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    binds: &[SqlValue],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for b in binds {
        q = match b {
            SqlValue::Text(s) => q.bind(s.clone()),
            SqlValue::Int(i) => q.bind(*i),
            SqlValue::Float(f) => q.bind(*f),
            SqlValue::Null => q.bind(None::<String>),
        };
    }
    q
}

/// Rows per multi-row statement of a write (well under SQLite's parameter limit).
const WRITE_CHUNK: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumber_shifts_placeholders_only() {
        assert_eq!(renumber("a = $1 AND b LIKE $2 || '$'", 2), "a = $3 AND b LIKE $4 || '$'");
        assert_eq!(renumber("x = $10", 5), "x = $15");
        assert_eq!(renumber("d = $0 AND x = $1", 2), "d = $1 AND x = $3");
    }
}

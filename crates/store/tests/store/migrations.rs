//! Migration checksums (both backends) and the schema parity of the two backends.

use std::collections::{BTreeMap, BTreeSet};

use fedkey_store::{Db, StoreError};
use sqlx::{AssertSqlSafe, Row};

use super::{Kind, TestDb, exec, loud, pg_admin_url, redact};

/// The binary's migrations for `kind`: version → checksum.
fn migration_files(kind: Kind) -> BTreeMap<i64, String> {
    let backend = if kind == Kind::Sqlite { fedkey_store::Backend::Sqlite } else { fedkey_store::Backend::Postgres };
    let out: BTreeMap<i64, String> = fedkey_store::migration_checksums(backend).unwrap().into_iter().collect();
    assert!(out.len() >= 10, "found {} migrations", out.len());
    out
}

async fn connect(url: &str) -> Result<Db, StoreError> {
    Db::connect(url).await
}

/// version → recorded checksum (`None`: not recorded).
async fn recorded(pool: &sqlx::AnyPool) -> BTreeMap<i64, Option<String>> {
    sqlx::query("SELECT version, checksum FROM schema_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<i64, _>("version"), r.get::<Option<String>, _>("checksum")))
        .collect()
}

/// A fresh install records the checksum of every migration; a database migrated by
/// another build (a recorded checksum that differs) is refused with both checksums named,
/// before anything is written; a database from before checksums were kept is upgraded in
/// place with this binary's checksums.
pub async fn migration_checksums_are_recorded_and_checked(kind: Kind) {
    let t = TestDb::new(kind).await;
    let files = migration_files(kind);
    let db = connect(&t.url).await.unwrap();
    let all: BTreeMap<i64, Option<String>> = files.iter().map(|(v, c)| (*v, Some(c.clone()))).collect();
    assert_eq!(recorded(db.pool()).await, all, "a fresh install records every migration's checksum");

    // Another build's migration 2 (its checksum differs), and migration 3 applied before
    // checksums were kept: refused, and nothing written (3 stays unrecorded).
    let forged = "ab".repeat(32);
    exec(&db, &format!("UPDATE schema_migrations SET checksum = '{forged}' WHERE version = 2")).await;
    exec(&db, "UPDATE schema_migrations SET checksum = NULL WHERE version = 3").await;
    let before = recorded(db.pool()).await;
    db.close().await;
    let err = connect(&t.url).await.expect_err("a changed migration is refused");
    let StoreError::MigrationChanged { version, recorded: r, expected } = &err else { panic!("{err:?}") };
    assert_eq!((*version, r.as_str(), expected.as_str()), (2, forged.as_str(), files[&2].as_str()));
    let msg = err.to_string();
    for part in ["migration 0002", &forged, &files[&2], "Run the build that migrated it"] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
    let probe = raw_pool(&t.url).await;
    assert_eq!(recorded(&probe).await, before, "a refused start writes nothing");

    // Restored: migration 3 gets this binary's checksum.
    sqlx::query(AssertSqlSafe(format!("UPDATE schema_migrations SET checksum = '{}' WHERE version = 2", files[&2])))
        .execute(&probe)
        .await
        .unwrap();
    let db = connect(&t.url).await.unwrap();
    assert_eq!(recorded(db.pool()).await, all);
    db.close().await;

    // A database from before checksums were kept (no column) is upgraded in place.
    sqlx::query("ALTER TABLE schema_migrations DROP COLUMN checksum").execute(&probe).await.unwrap();
    let db = connect(&t.url).await.unwrap();
    assert_eq!(recorded(db.pool()).await, all, "the upgrade records the binary's checksums");
    db.close().await;
    // ...and checks them from then on.
    sqlx::query("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1").execute(&probe).await.unwrap();
    assert!(matches!(connect(&t.url).await, Err(StoreError::MigrationChanged { version: 1, .. })));
    probe.close().await;
}

/// A pool on the database that runs no migrations (to look at a refused database).
async fn raw_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url).await.unwrap()
}

// ------------------------------------------------------------------------- schema parity

/// One table as both backends are compared: columns (normalised type, NOT NULL), primary
/// key columns, and unique constraints and indexes (columns in order, partial or not).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Table {
    columns: BTreeMap<String, (String, bool)>,
    primary_key: Vec<String>,
    unique: BTreeSet<(Vec<String>, bool)>,
}

/// Normalises a declared type to the class both dialects store it as.
fn type_class(declared: &str) -> String {
    let t = declared.to_ascii_lowercase();
    let class = match t.as_str() {
        "integer" | "bigint" | "int" | "int8" | "int4" | "smallint" => "integer",
        "text" | "character varying" | "varchar" => "text",
        "blob" | "bytea" => "bytes",
        "real" | "double precision" | "float8" => "real",
        "boolean" => "boolean",
        "jsonb" | "json" => "json",
        other => other,
    };
    class.to_owned()
}

async fn sqlite_schema(db: &Db) -> BTreeMap<String, Table> {
    let pool = db.pool();
    let names: Vec<String> =
        sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("name"))
            .collect();
    let mut out = BTreeMap::new();
    for name in names {
        let mut t = Table::default();
        let cols = sqlx::query("SELECT name, type, \"notnull\" AS nn, pk FROM pragma_table_info($1) ORDER BY cid")
            .bind(name.clone())
            .fetch_all(pool)
            .await
            .unwrap();
        let mut pk: Vec<(i64, String)> = Vec::new();
        for c in &cols {
            let col: String = c.get("name");
            let in_pk = c.get::<i64, _>("pk");
            if in_pk > 0 {
                pk.push((in_pk, col.clone()));
            }
            // A primary key column is NOT NULL on PostgreSQL whatever it declares; SQLite
            // reports what was declared.
            let not_null = c.get::<i64, _>("nn") != 0 || in_pk > 0;
            t.columns.insert(col, (type_class(&c.get::<String, _>("type")), not_null));
        }
        pk.sort();
        t.primary_key = pk.into_iter().map(|(_, c)| c).collect();
        let indexes = sqlx::query("SELECT name, \"unique\" AS u, origin, partial FROM pragma_index_list($1)")
            .bind(name.clone())
            .fetch_all(pool)
            .await
            .unwrap();
        for i in indexes {
            if i.get::<i64, _>("u") == 0 || i.get::<String, _>("origin") == "pk" {
                continue;
            }
            let cols = sqlx::query("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                .bind(i.get::<String, _>("name"))
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<Option<String>, _>("name").unwrap_or_else(|| "<expression>".into()))
                .collect();
            t.unique.insert((cols, i.get::<i64, _>("partial") != 0));
        }
        out.insert(name, t);
    }
    out
}

async fn postgres_schema(db: &Db) -> BTreeMap<String, Table> {
    let pool = db.pool();
    let mut out: BTreeMap<String, Table> = BTreeMap::new();
    let cols = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS ty, is_nullable::text AS n \
         FROM information_schema.columns c WHERE table_schema = current_schema() \
         AND table_name IN (SELECT table_name FROM information_schema.tables \
                            WHERE table_schema = current_schema() AND table_type = 'BASE TABLE')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for c in cols {
        out.entry(c.get("t"))
            .or_default()
            .columns
            .insert(c.get("c"), (type_class(&c.get::<String, _>("ty")), c.get::<String, _>("n") == "NO"));
    }
    // Every unique index (constraints are backed by one), its key columns in order (0 is
    // an expression), and whether it has a predicate.
    let idx = sqlx::query(
        "SELECT t.relname::text AS t, i.indisprimary AS pk, i.indpred IS NOT NULL AS partial, \
         (SELECT string_agg(COALESCE(a.attname::text, '<expression>'), ',' ORDER BY k.ord) \
          FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
          LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum) AS cols \
         FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = current_schema() AND i.indisunique",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for i in idx {
        let cols: Vec<String> = i.get::<String, _>("cols").split(',').map(str::to_owned).collect();
        let t = out.entry(i.get("t")).or_default();
        if i.get::<bool, _>("pk") {
            t.primary_key = cols;
        } else {
            t.unique.insert((cols, i.get::<bool, _>("partial")));
        }
    }
    out
}

/// Intended differences between the dialects' schemas, each with its reason:
/// (table, what differs, detail as the comparison reports it).
const INTENDED: &[(&str, &str, &str)] = &[];

/// The two backends' migrations produce the same schema: the same tables, columns (types
/// normalised to the class both store), nullability, primary keys and unique
/// constraints. Any difference not in [`INTENDED`] is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_migrate_to_the_same_schema() {
    if pg_admin_url().await.is_none() {
        loud("*** SKIPPED sqlite_and_postgres_migrate_to_the_same_schema: no PostgreSQL server ***");
        return;
    }
    let (lt, pt) = (TestDb::new(Kind::Sqlite).await, TestDb::new(Kind::Postgres).await);
    let lite = Db::connect(&lt.url).await.unwrap();
    let pg = Db::connect(&pt.url).await.unwrap_or_else(|e| panic!("{}: {e}", redact(&pt.url)));
    let (a, b) = (sqlite_schema(&lite).await, postgres_schema(&pg).await);
    assert!(a.len() >= 20, "read the SQLite schema: {:?}", a.keys());
    let diffs = schema_differences(&a, &b);
    let unexpected: Vec<_> = diffs
        .iter()
        .filter(|(t, what, detail)| !INTENDED.iter().any(|i| (i.0, i.1, i.2) == (t.as_str(), *what, detail.as_str())))
        .collect();
    assert!(unexpected.is_empty(), "the backends' schemas differ:\n{unexpected:#?}");
    let stale: Vec<_> = INTENDED
        .iter()
        .filter(|i| !diffs.iter().any(|d| (d.0.as_str(), d.1, d.2.as_str()) == (i.0, i.1, i.2)))
        .collect();
    assert!(stale.is_empty(), "listed as intended but no longer different: {stale:?}");

    // The comparison notices what it is meant to: a type, a nullability, a unique index.
    let mut changed = b.clone();
    let tokens = changed.get_mut("admin_tokens").expect("admin_tokens on PostgreSQL");
    let (col, _) =
        tokens.columns.iter().find(|(_, (ty, _))| ty == "text").map(|(c, v)| (c.clone(), v.clone())).unwrap();
    tokens.columns.insert(col.clone(), ("bytes".into(), true));
    let first = tokens.unique.iter().next().cloned().expect("admin_tokens has unique columns");
    tokens.unique.remove(&first);
    let found: Vec<_> = schema_differences(&a, &changed).into_iter().map(|d| d.1).collect();
    assert!(found.contains(&"column type") && found.contains(&"unique"), "{found:?}");
    let mut nullable = b.clone();
    nullable.get_mut("admin_tokens").unwrap().columns.get_mut(&col).unwrap().1 ^= true;
    assert_eq!(schema_differences(&a, &nullable).len(), 1);
    lite.close().await;
    pg.close().await;
}

/// (table, aspect, detail) for every difference, SQLite on the left.
fn schema_differences(a: &BTreeMap<String, Table>, b: &BTreeMap<String, Table>) -> Vec<(String, &'static str, String)> {
    let mut out = Vec::new();
    for name in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        let (Some(x), Some(y)) = (a.get(name), b.get(name)) else {
            out.push((
                name.clone(),
                "table",
                format!("sqlite {}, postgres {}", a.contains_key(name), b.contains_key(name)),
            ));
            continue;
        };
        for col in x.columns.keys().chain(y.columns.keys()).collect::<BTreeSet<_>>() {
            match (x.columns.get(col), y.columns.get(col)) {
                (Some(p), Some(q)) if p.0 != q.0 => {
                    out.push((name.clone(), "column type", format!("{col}: sqlite {}, postgres {}", p.0, q.0)))
                }
                (Some(p), Some(q)) if p.1 != q.1 => {
                    out.push((name.clone(), "not null", format!("{col}: sqlite {}, postgres {}", p.1, q.1)))
                }
                (Some(_), Some(_)) => {}
                (p, q) => out.push((
                    name.clone(),
                    "column",
                    format!("{col}: sqlite {}, postgres {}", p.is_some(), q.is_some()),
                )),
            }
        }
        if x.primary_key != y.primary_key {
            out.push((
                name.clone(),
                "primary key",
                format!("sqlite {:?}, postgres {:?}", x.primary_key, y.primary_key),
            ));
        }
        for u in x.unique.symmetric_difference(&y.unique) {
            let side = if x.unique.contains(u) { "sqlite only" } else { "postgres only" };
            out.push((name.clone(), "unique", format!("{side}: {:?}{}", u.0, if u.1 { " (partial)" } else { "" })));
        }
    }
    out
}

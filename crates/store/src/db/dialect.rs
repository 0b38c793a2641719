//! Where SQLite and PostgreSQL differ: every dialect branch of the store is a method
//! here, returning the SQL piece for one backend, so call sites hold no `match` on it.
//! (`dialect_branches_stay_here` below fails when one appears elsewhere.)

mod filter;

pub(crate) use filter::Substring;

use crate::StoreError;

/// The two supported backends and the handful of places where their SQL differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Config("database URL must start with sqlite: or postgres://".into()))
        }
    }

    /// SQLite writers take the write lock up front; a deferred transaction that reads
    /// and then writes can fail with SQLITE_BUSY instead of waiting.
    pub(super) fn begin_statement(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// A read-only transaction that sees one consistent snapshot without blocking
    /// writers (SQLite in WAL mode: a deferred transaction's snapshot is taken at its
    /// first read and kept until it ends).
    pub(super) fn snapshot_statement(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN DEFERRED",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }

    /// Reads the audit chain head, locking it until commit. SQLite's `BEGIN IMMEDIATE`
    /// already serialises writers.
    pub(crate) fn lock_audit_head(self) -> &'static str {
        match self {
            Backend::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
            Backend::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
        }
    }

    /// Locks one trust row so concurrent rotations of it serialise.
    pub(crate) fn lock_trust(self) -> &'static str {
        match self {
            Backend::Sqlite => "SELECT id FROM trusts WHERE id = $1",
            Backend::Postgres => "SELECT id FROM trusts WHERE id = $1 FOR UPDATE",
        }
    }

    /// Locks the rows a `SELECT` reads until commit. SQLite's write transaction
    /// (`BEGIN IMMEDIATE`) is already exclusive.
    /// Most bound parameters in one statement: SQLite's default `SQLITE_MAX_VARIABLE_NUMBER`
    /// (32766) and PostgreSQL's wire protocol limit (65535).
    pub fn max_binds(self) -> usize {
        match self {
            Backend::Sqlite => 32_766,
            Backend::Postgres => 65_535,
        }
    }

    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// Claims rows of a queue: other PostgreSQL nodes skip the rows this transaction
    /// holds instead of waiting; SQLite has a single writer (`BEGIN IMMEDIATE`).
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Serialises concurrent migrators on PostgreSQL (several nodes starting at once).
    pub(crate) fn migration_lock(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("SELECT pg_advisory_xact_lock(4242424242)"),
        }
    }

    /// The names (column `name`) of `schema_migrations`' columns, which the migrator
    /// upgrades in place.
    pub(crate) fn migration_columns(self) -> &'static str {
        match self {
            Backend::Sqlite => "SELECT name FROM pragma_table_info('schema_migrations')",
            Backend::Postgres => {
                "SELECT column_name::text AS name FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
            }
        }
    }

    /// Tells the other nodes, when the transaction commits, that cached credentials may be
    /// stale (see `crate::invalidate`); `$1` names the node that sends it. SQLite has one
    /// node, which invalidates in-process.
    pub(crate) fn auth_change_notice(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("SELECT pg_notify('fedkey_auth', $1)"),
        }
    }

    /// The dialect's name in migration sources' `-- @sqlite` / `-- @postgres` sections.
    pub(crate) fn section_name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// The text of a `{{token}}` in a migration source (see crates/store/migrations/README.md);
    /// `None` for a token that is not defined.
    pub(crate) fn migration_token(self, token: &str) -> Option<&'static str> {
        let sqlite = self == Backend::Sqlite;
        Some(match token {
            "blob" if sqlite => "BLOB",
            "blob" => "BYTEA",
            // SQLite: a rowid alias when it is the primary key.
            "integer" if sqlite => "INTEGER",
            "integer" => "BIGINT",
            "serial_pk" if sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            "serial_pk" => "BIGSERIAL PRIMARY KEY",
            "zero_bytes_32" if sqlite => "zeroblob(32)",
            "zero_bytes_32" => "decode(repeat('00', 32), 'hex')",
            "dialect" if sqlite => "SQLite",
            "dialect" => "PostgreSQL",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Files that still branch on the backend, which other work in flight is changing:
    /// move their branches here once it lands, and empty this list.
    const NOT_YET_MOVED: &[&str] = &["audit.rs", "db/group.rs", "ops/outbox.rs", "scim.rs"];

    /// Where branching on the backend is expected: this module and the connection setup.
    const DIALECT_FILES: &[&str] = &["db.rs", "db/dialect.rs", "db/dialect/filter.rs"];

    /// What a branch on the backend looks like in this code base.
    const BRANCHES: &[&str] = &[
        "Backend::Sqlite =>",
        "Backend::Postgres =>",
        "Backend::Sqlite |",
        "Backend::Postgres |",
        "| Backend::",
        "== Backend::",
        "!= Backend::",
        "== crate::Backend::",
        "!= crate::Backend::",
        "crate::Backend::Sqlite =>",
        "crate::Backend::Postgres =>",
        "let Backend::",
        "backend == ",
        "backend != ",
    ];

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// `(file, line)` of every branch on the backend outside comments.
    fn branches() -> Vec<(String, usize)> {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut found = Vec::new();
        for path in files {
            let name = path.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
            for (n, line) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
                let code = line.trim_start();
                if !code.starts_with("//") && BRANCHES.iter().any(|b| code.contains(b)) {
                    found.push((name.clone(), n + 1));
                }
            }
        }
        assert!(found.iter().any(|(f, _)| f == "db/dialect.rs"), "the scan finds this module's own branches");
        found
    }

    #[test]
    fn dialect_branches_stay_here() {
        let found = branches();
        let stray: Vec<_> = found
            .iter()
            .filter(|(f, _)| !DIALECT_FILES.contains(&f.as_str()) && !NOT_YET_MOVED.contains(&f.as_str()))
            .collect();
        assert!(stray.is_empty(), "branch on the backend outside db/dialect.rs (add a method there): {stray:?}");
        for f in NOT_YET_MOVED {
            assert!(
                found.iter().any(|(g, _)| g == f),
                "{f} no longer branches on the backend: remove it from NOT_YET_MOVED"
            );
        }
    }
}

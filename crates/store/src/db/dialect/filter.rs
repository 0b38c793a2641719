//! The SQL pieces of the SCIM filter translator (`crate::scim_sql`) that differ between
//! the backends: reading the query document (`json_extract`/`json_each` on SQLite, `jsonb`
//! operators on PostgreSQL) and comparing its values in the evaluator's order (code points:
//! SQLite's default `BINARY` collation, PostgreSQL's `"C"`).
//!
//! Keys and column names passed here are the translator's own (registry names, URNs, `#`
//! keys), checked before they get here; literals are always bound by the caller.

use super::Backend;
use crate::scim::SqlValue;

/// The substring tests of `co`, `sw` and `ew`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Substring {
    Contains,
    StartsWith,
    EndsWith,
}

impl Backend {
    /// The query document in `column` as the JSON type this backend navigates.
    pub(crate) fn json_doc(self, column: &str) -> String {
        match self {
            Backend::Sqlite => column.to_owned(),
            Backend::Postgres => format!("({column}::jsonb)"),
        }
    }

    /// `doc` navigated by `keys`: the arguments of `json_extract`/`json_each` (SQLite), or a
    /// `->` chain (PostgreSQL).
    pub(crate) fn json_path(self, doc: &str, keys: &[&str]) -> String {
        match self {
            Backend::Sqlite => {
                let path: String = keys.iter().map(|k| format!(".\"{k}\"")).collect();
                format!("{doc}, '${path}'")
            }
            Backend::Postgres => {
                let chain: String = keys.iter().map(|k| format!(" -> '{k}'")).collect();
                format!("{doc}{chain}")
            }
        }
    }

    /// A FROM item over the array at `path` (from [`Backend::json_path`]) named `alias`,
    /// and the SQL of one element: strings as text, booleans as 1/0 (SQLite) or
    /// 'true'/'false' (PostgreSQL), objects as JSON when `objects`.
    pub(crate) fn json_elements(self, path: &str, alias: &str, objects: bool) -> (String, String) {
        match self {
            Backend::Sqlite => (format!("json_each({path}) {alias}"), format!("{alias}.value")),
            Backend::Postgres => {
                let f = if objects { "jsonb_array_elements" } else { "jsonb_array_elements_text" };
                (format!("{f}({path}) {alias}(v)"), format!("{alias}.v"))
            }
        }
    }

    /// Whether anything is at `path` (from [`Backend::json_path`]).
    pub(crate) fn json_is_set(self, path: &str) -> String {
        match self {
            Backend::Sqlite => format!("(json_extract({path}) IS NOT NULL)"),
            Backend::Postgres => format!("(({path}) IS NOT NULL)"),
        }
    }

    /// The text of top-level `key` of the query document in `column`.
    pub(crate) fn json_text(self, column: &str, key: &str) -> String {
        match self {
            Backend::Sqlite => format!("json_extract({column}, '$.\"{key}\"')"),
            Backend::Postgres => format!("(({column}::jsonb) ->> '{key}')"),
        }
    }

    /// The text under `object`'s key given by the SQL text expression `key_sql`.
    pub(crate) fn json_text_at_key(self, column: &str, object: &str, key_sql: &str) -> String {
        match self {
            Backend::Sqlite => format!("json_extract({column}, '$.\"{object}\".\"' || {key_sql} || '\"')"),
            Backend::Postgres => format!("(({column}::jsonb) -> '{object}' ->> {key_sql})"),
        }
    }

    /// `co`, `sw` or `ew` of the bound text `p` in `val`, on code points (no LIKE: nothing
    /// to escape).
    pub(crate) fn substring_test(self, test: Substring, val: &str, p: &str) -> String {
        match (self, test) {
            (Backend::Sqlite, Substring::Contains) => format!("(instr({val}, {p}) > 0)"),
            (Backend::Postgres, Substring::Contains) => format!("(strpos({val}, {p}) > 0)"),
            (Backend::Sqlite, Substring::StartsWith) => format!("(substr({val}, 1, length({p})) = {p})"),
            (Backend::Postgres, Substring::StartsWith) => format!("starts_with({val}, {p})"),
            (Backend::Sqlite, Substring::EndsWith) => format!("(substr({val}, length({val}) - length({p}) + 1) = {p})"),
            (Backend::Postgres, Substring::EndsWith) => format!("(right({val}, length({p})) = {p})"),
        }
    }

    /// `val op p` for text, in code point order.
    pub(crate) fn text_order_test(self, val: &str, op: &str, p: &str) -> String {
        match self {
            Backend::Sqlite => format!("({val} {op} {p})"),
            Backend::Postgres => format!("({val} COLLATE \"C\" {op} {p})"),
        }
    }

    /// Whether the JSON boolean element `val` (see [`Backend::json_elements`]) is `b`.
    pub(crate) fn json_bool_test(self, val: &str, b: bool) -> String {
        match self {
            Backend::Sqlite => format!("({val} = {})", u8::from(b)),
            Backend::Postgres => format!("({val} = '{b}')"),
        }
    }

    /// `val op literal` for a JSON number: SQLite compares the stored number with the bound
    /// one; PostgreSQL's element is text, compared as NUMERIC. `bind` binds a value and
    /// returns its placeholder.
    pub(crate) fn json_number_test(
        self,
        val: &str,
        op: &str,
        literal: &serde_json::Number,
        bind: &mut dyn FnMut(SqlValue) -> String,
    ) -> String {
        match self {
            Backend::Sqlite => {
                let p = match (literal.as_i64(), literal.as_f64()) {
                    (Some(i), _) => bind(SqlValue::Int(i)),
                    (None, Some(f)) => bind(SqlValue::Float(f)),
                    (None, None) => bind(SqlValue::Text(literal.to_string())),
                };
                format!("({val} {op} {p})")
            }
            Backend::Postgres => {
                let p = bind(SqlValue::Text(literal.to_string()));
                format!("(CAST({val} AS NUMERIC) {op} CAST({p} AS NUMERIC))")
            }
        }
    }

    /// The JSON integer element `val` (epoch microseconds) as an integer.
    pub(crate) fn json_integer(self, val: &str) -> String {
        match self {
            Backend::Sqlite => val.to_owned(),
            Backend::Postgres => format!("CAST({val} AS BIGINT)"),
        }
    }

    /// A text sort key in code point order; with `nullable`, NULL (missing) sorts after
    /// every value, as the evaluator orders.
    pub(crate) fn sort_text(self, sql: &str, nullable: bool) -> String {
        match (self, nullable) {
            // x'ff' is a blob, which SQLite orders after all text.
            (Backend::Sqlite, true) => format!("COALESCE({sql}, x'ff')"),
            (Backend::Sqlite, false) => sql.to_owned(),
            // PostgreSQL already sorts NULLs last ascending (first descending).
            (Backend::Postgres, _) => format!("({sql} COLLATE \"C\")"),
        }
    }

    /// The sort key stored at `sort.key` of the query document in `column` (`numeric`:
    /// the key holds numbers), missing last.
    pub(crate) fn json_sort_key(self, column: &str, sort: &str, key: &str, numeric: bool) -> String {
        let doc = self.json_doc(column);
        match (self, numeric) {
            (Backend::Sqlite, _) => format!("COALESCE(json_extract({}), x'ff')", self.json_path(&doc, &[sort, key])),
            (Backend::Postgres, true) => format!("({})", self.json_path(&doc, &[sort, key])),
            // `->>` of the last key: text of strings, 'false' < 'true' for booleans.
            (Backend::Postgres, false) => {
                format!("(({} ->> '{key}') COLLATE \"C\")", self.json_path(&doc, &[sort]))
            }
        }
    }
}

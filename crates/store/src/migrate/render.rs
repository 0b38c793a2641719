//! Renders a migration source (crates/store/migrations/NNNN_name.sql, written once for
//! both backends) into one dialect's SQL. The format, line by line:
//!
//! - `{{token}}` anywhere in a line becomes the dialect's text for it
//!   ([`Backend::migration_token`]: `blob`, `integer`, `serial_pk`, `zero_bytes_32`,
//!   `dialect`);
//! - a line `-- @sqlite` or `-- @postgres` starts a section whose lines only that dialect
//!   keeps (a second marker switches to the other dialect), `-- @end` ends it; the marker
//!   lines themselves are dropped.
//!
//! Anything else is kept byte for byte, so that the rendered text, whose SHA-256 every
//! database records, is exactly what the per-dialect files held before.

use crate::Backend;

/// A migration source the preprocessor cannot render: a build defect, which the tests
/// over every embedded migration catch before a release.
#[derive(Debug, Clone, thiserror::Error)]
#[error("migration {version:04}, line {line}: {problem}")]
pub struct MigrationSourceError {
    pub version: i64,
    pub line: usize,
    pub problem: SourceProblem,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceProblem {
    #[error("unknown token {{{{{0}}}}}")]
    UnknownToken(String),
    #[error("unclosed {{{{ … }}}}")]
    UnclosedToken,
    #[error("unknown section marker {0:?}")]
    UnknownMarker(String),
    #[error("-- @end outside a section")]
    StrayEnd,
    #[error("section not closed with -- @end")]
    UnclosedSection,
}

const MARKER: &str = "-- @";

pub(crate) fn render(version: i64, source: &str, backend: Backend) -> Result<String, MigrationSourceError> {
    let err = |line: usize, problem| MigrationSourceError { version, line, problem };
    let mut out = String::with_capacity(source.len());
    // The dialect of the open section, if any.
    let mut section: Option<&str> = None;
    for (n, line) in source.split_inclusive('\n').enumerate() {
        if let Some(marker) = line.trim_end().strip_prefix(MARKER) {
            section = match (marker, section) {
                ("end", Some(_)) => None,
                ("end", None) => return Err(err(n + 1, SourceProblem::StrayEnd)),
                ("sqlite" | "postgres", _) => Some(marker),
                _ => return Err(err(n + 1, SourceProblem::UnknownMarker(marker.to_owned()))),
            };
            continue;
        }
        if section.is_some_and(|s| s != backend.section_name()) {
            continue;
        }
        substitute(line, backend, &mut out).map_err(|p| err(n + 1, p))?;
    }
    match section {
        Some(_) => Err(err(source.lines().count(), SourceProblem::UnclosedSection)),
        None => Ok(out),
    }
}

/// Appends `line` with its `{{token}}`s replaced.
fn substitute(mut line: &str, backend: Backend, out: &mut String) -> Result<(), SourceProblem> {
    while let Some(start) = line.find("{{") {
        out.push_str(&line[..start]);
        let rest = &line[start + 2..];
        let end = rest.find("}}").ok_or(SourceProblem::UnclosedToken)?;
        let token = &rest[..end];
        out.push_str(backend.migration_token(token).ok_or_else(|| SourceProblem::UnknownToken(token.to_owned()))?);
        line = &rest[end + 2..];
    }
    out.push_str(line);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    #[test]
    fn tokens_and_sections_render_per_dialect() {
        let src = "CREATE TABLE t (b {{blob}});\n-- @sqlite\nA;\n-- @postgres\nB;\n-- @end\nC; -- {{dialect}}\n";
        assert_eq!(render(1, src, Backend::Sqlite).unwrap(), "CREATE TABLE t (b BLOB);\nA;\nC; -- SQLite\n");
        assert_eq!(render(1, src, Backend::Postgres).unwrap(), "CREATE TABLE t (b BYTEA);\nB;\nC; -- PostgreSQL\n");
    }

    #[test]
    fn text_without_markup_is_kept_byte_for_byte() {
        let src = "-- a comment\n\nSELECT '$$' || x FROM y; -- @ not a marker mid-line\nno final newline";
        for b in BOTH {
            assert_eq!(render(1, src, b).unwrap(), src);
        }
    }

    #[test]
    fn malformed_sources_are_refused_with_their_line() {
        let cases = [
            ("x {{nope}}\n", 1, "unknown token {{nope}}"),
            ("\nx {{blob\n", 2, "unclosed {{ … }}"),
            ("-- @mysql\n", 1, "unknown section marker \"mysql\""),
            ("-- @end\n", 1, "-- @end outside a section"),
            ("-- @sqlite\nA;\n", 2, "section not closed with -- @end"),
        ];
        for (src, line, problem) in cases {
            for b in BOTH {
                let e = render(7, src, b).unwrap_err();
                assert_eq!(e.line, line, "{src:?}");
                assert_eq!(e.to_string(), format!("migration 0007, line {line}: {problem}"), "{src:?}");
            }
        }
    }
}

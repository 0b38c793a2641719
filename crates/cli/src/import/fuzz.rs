//! Fuzz harness of the import reader (machinery: fedkey-fuzz, docs/fuzzing.md): mutated
//! seed files through the CSV and JSON-lines readers, generated tables through a CSV
//! writer and back, and headers made of attribute paths through the column checks.

use std::io::Cursor;

use fedkey_scim::resource::normalize;
use fedkey_scim::schema::resource_type;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::columns::Columns;
use super::json_row;
use super::read::{CsvRecords, Line, Lines};

const DICT: &[&str] = &[
    "\"",
    "\"\"",
    ",",
    "\n",
    "\r\n",
    "\r",
    ";",
    "\u{feff}",
    "\u{2028}",
    "\\",
    "{",
    "}",
    "[",
    "]",
    "type eq \"work\"",
    "emails",
    "members",
    "userName",
    "Group",
    "true",
    "é",
];

fn check<S>(target: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    if let Err(e) = fedkey_fuzz::fuzz(target, strategy, test) {
        panic!("{e}");
    }
}

/// RFC 4180 with every field quoted, records ended by `eol`.
fn write_csv(rows: &[Vec<String>], eol: &str) -> String {
    rows.iter()
        .map(|r| r.iter().map(|f| format!("\"{}\"", f.replace('"', "\"\""))).collect::<Vec<_>>().join(",") + eol)
        .collect()
}

/// Every CSV record and JSON line of `bytes`: no panic, and each read makes progress.
fn read_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    let lines_at_most = bytes.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let mut recs = CsvRecords::new(Cursor::new(bytes));
    let mut last = 0;
    while let Ok(Some(r)) = recs.next_record() {
        prop_assert!(r.line > last && r.line <= lines_at_most, "record on line {} after {}", r.line, last);
        last = r.line;
    }
    let mut lines = Lines::new(Cursor::new(bytes));
    while let Ok(Some((n, line))) = lines.next_line() {
        prop_assert!(n <= lines_at_most);
        if let Line::Text(t) = line
            && let Ok((_, v)) = json_row(&t)
        {
            prop_assert!(v.is_object() && v.get("type").is_none(), "{}", v);
        }
    }
    Ok(())
}

#[test]
fn fuzz_import_reader_on_mutated_files() {
    let seeds = fedkey_fuzz::corpus("import").unwrap();
    check("import", fedkey_fuzz::mutated_corpus(seeds, DICT), |bytes| read_all(&bytes));
}

#[test]
fn fuzz_import_csv_round_trip() {
    // Any text but CR, which the reader drops before a line break as part of CRLF.
    let field = "[^\r]{0,12}";
    let table = prop::collection::vec(prop::collection::vec(field, 1..5), 1..6);
    check("import-csv", (table, any::<bool>()), |(rows, crlf)| {
        let text = write_csv(&rows, if crlf { "\r\n" } else { "\n" });
        let mut recs = CsvRecords::new(Cursor::new(text.as_bytes()));
        for row in &rows {
            let rec = recs.next_record().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let fields = rec.and_then(|r| r.fields.ok());
            prop_assert_eq!(fields.as_ref(), Some(row), "{:?}", text);
        }
        prop_assert!(recs.next_record().is_ok_and(|r| r.is_none()));
        Ok(())
    });
}

const COLUMNS: &[&str] = &[
    "userName",
    "displayName",
    "type",
    "externalId",
    "active",
    "title",
    "name.givenName",
    "emails",
    "emails[type eq \"work\"].value",
    "emails[type eq \"home\"].primary",
    "phoneNumbers[type eq \"mobile\"].value",
    "members",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
    "id",
    "groups",
    "meta.created",
    "emails[",
    "bogus",
    "",
];

const CELLS: &[&str] = &["", "a@b", "true", "False", "yes", "u1;u2", " ; ", "Group", "user", "Robot", "42", "\"q\""];

#[test]
fn fuzz_import_columns() {
    let header = prop::collection::vec(prop::sample::select(COLUMNS), 1..6);
    let cells = prop::collection::vec(prop::sample::select(CELLS), 6);
    check("import-columns", (header, cells), |(header, cells)| {
        let header: Vec<String> = header.into_iter().map(str::to_owned).collect();
        let Ok(cols) = Columns::parse(&header) else { return Ok(()) };
        let cells: Vec<String> = cells.into_iter().take(header.len()).map(str::to_owned).collect();
        if let Ok((rt, body)) = cols.resource(&cells) {
            let required = if rt == "Group" { "displayName" } else { "userName" };
            // A row the reader accepts is a valid body once its required attribute is there.
            if body.get(required).is_some() {
                let def = resource_type(rt).ok_or_else(|| TestCaseError::fail("no type"))?;
                let n = normalize(def, &body);
                prop_assert!(n.is_ok(), "{:?} from {:?}: {}", n.err().map(|e| e.detail), cells, body);
            }
        }
        Ok(())
    });
}

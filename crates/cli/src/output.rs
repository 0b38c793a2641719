//! Tables for people, JSON for programs (`--output json`).

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

pub fn json(v: &Value) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// Prints `rows` (objects) as a table of the given columns.
pub fn table(rows: &[Value], columns: &[&str]) {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(columns.iter().map(|c| c.to_uppercase()));
    for r in rows {
        t.add_row(columns.iter().map(|c| cell(&r[*c])));
    }
    outln!("{t}");
}

/// Prints key/value pairs of one object.
pub fn record(v: &Value, fields: &[&str]) {
    for f in fields {
        outln!("{:<14} {}", format!("{f}:"), cell(&v[*f]));
    }
}

//! Tables for people, JSON for programs (`--output json`), and the output flags every
//! command shares: `--wide`, `--quiet`, `--field NAME`, `--color`.
//!
//! The flags are process-wide (set once in `main`), so the many commands that print through
//! [`table`], [`record`] and `outln!` follow them without threading them through each call.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use comfy_table::{Cell, Color, ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// When table cells are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Only on a terminal, and not when `NO_COLOR` is set.
    #[default]
    Auto,
    Always,
    Never,
}

/// The output flags, fixed for the process.
#[derive(Debug, Clone, Default)]
pub struct Style {
    /// Every column, full timestamps, no width limit.
    pub wide: bool,
    /// Nothing on stdout on success but a one-time secret.
    pub quiet: bool,
    /// Print only this field: one value per row of a table, or of a record.
    pub field: Option<String>,
    /// ANSI colours in table cells.
    pub color: bool,
    /// Table width limit in columns; `None`: unlimited (not a terminal, or `--wide`).
    pub width: Option<u16>,
}

static STYLE: OnceLock<Style> = OnceLock::new();
/// Set when `--field` named a field that nothing printed had: a usage error (exit 2).
static FIELD_MISSED: AtomicBool = AtomicBool::new(false);
/// Set once `--field` printed something.
static FIELD_FOUND: AtomicBool = AtomicBool::new(false);

pub fn configure(style: Style) {
    let _ = STYLE.set(style);
}

fn style() -> &'static Style {
    STYLE.get_or_init(Style::default)
}

pub fn quiet() -> bool {
    let s = style();
    s.quiet || s.field.is_some()
}

/// Whether `--field` was given but matched nothing the command printed.
pub fn field_missed() -> bool {
    FIELD_MISSED.load(Ordering::Relaxed) && !FIELD_FOUND.load(Ordering::Relaxed)
}

/// `--color` resolved against `NO_COLOR` (any non-empty value) and whether stdout is a
/// terminal: `always` and `never` win; `auto` colours only a terminal without `NO_COLOR`.
pub fn color_enabled(choice: ColorChoice, no_color: Option<&str>, is_tty: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_tty && no_color.is_none_or(str::is_empty),
    }
}

/// The width tables must fit: `COLUMNS` when set, else the terminal's; none when stdout
/// is not a terminal (a pipe or a file gets whole lines).
pub fn terminal_width(columns_env: Option<&str>, is_tty: bool) -> Option<u16> {
    if let Some(n) = columns_env.and_then(|c| c.trim().parse::<u16>().ok()).filter(|n| *n >= 20) {
        return Some(n);
    }
    if is_tty { crossterm_width() } else { None }
}

fn crossterm_width() -> Option<u16> {
    // comfy-table measures the terminal itself when asked to arrange dynamically.
    let mut t = Table::new();
    t.set_content_arrangement(ContentArrangement::Dynamic);
    t.width()
}

/// The whole answer as JSON (`--field` does not apply). `--quiet` drops it unless it
/// carries a one-time secret, which would otherwise be lost.
/// What the renderers work on: a typed answer as its JSON value (the wire form).
fn value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub fn json(v: &impl Serialize) {
    let v = &value(v);
    let secret = ["key", "token", "admin_token", "wrapped_link"].iter().any(|k| v.get(k).is_some_and(|x| !x.is_null()));
    if !style().quiet || secret {
        print_line(&serde_json::to_string_pretty(v).unwrap_or_default());
    }
}

/// A one-time secret (a new key, an admin token, a wrapped link): `label: value`, or the
/// bare value under `--quiet` or `--field LABEL`. Printed even under `--quiet`.
pub fn secret(label: &str, value: &str) {
    use std::io::Write as _;
    let s = style();
    let line = match &s.field {
        Some(f) if f == label => {
            FIELD_FOUND.store(true, Ordering::Relaxed);
            value.to_owned()
        }
        Some(_) => return,
        None if s.quiet => value.to_owned(),
        None => format!("{label}: {value}"),
    };
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// A note for people on stderr (dropped under `--quiet` and `--field`).
pub fn note(text: &str) {
    if !quiet() {
        eprintln!("{text}");
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// `2026-11-28T20:44:55.883156Z` → `2026-11-28 20:44` (narrow tables).
fn short_time(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let looks = b.len() >= 17 && b.get(4) == Some(&b'-') && b.get(10) == Some(&b'T') && b.get(13) == Some(&b':');
    looks.then(|| format!("{} {}", &s[..10], &s[11..16]))
}

fn state_color(text: &str) -> Option<Color> {
    match text {
        "current" | "active" | "closed" | "ok" | "succeeded" | "approved" => Some(Color::Green),
        "pending" | "previous" | "suspended" | "half_open" | "running" | "warning" => Some(Color::Yellow),
        "revoked" | "expired" | "failed" | "open" | "dead" | "critical" => Some(Color::Red),
        _ => None,
    }
}

/// The columns a table shows: a name starting with `+` only with `--wide`.
fn visible<'a>(columns: &[&'a str], wide: bool) -> Vec<&'a str> {
    columns.iter().filter_map(|c| c.strip_prefix('+').map_or(Some(*c), |w| wide.then_some(w))).collect()
}

/// Prints `rows` (objects) as a table of the given columns. A column written `+name` is
/// shown only with `--wide`; without it timestamps are shortened and the table is
/// wrapped to the terminal's width.
pub fn table<T: Serialize>(rows: &[T], columns: &[&str]) {
    let rows: Vec<Value> = rows.iter().map(value).collect();
    let rows = &rows[..];
    let s = style();
    if let Some(f) = &s.field {
        let known = columns.iter().any(|c| c.trim_start_matches('+') == f) || rows.iter().any(|r| r.get(f).is_some());
        if !known {
            FIELD_MISSED.store(true, Ordering::Relaxed);
            return;
        }
        FIELD_FOUND.store(true, Ordering::Relaxed);
        for r in rows {
            print_line(&cell(&r[f.as_str()]));
        }
        return;
    }
    if s.quiet {
        return;
    }
    outln!("{}", render(rows, columns, s));
}

fn print_line(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{text}");
}

fn render(rows: &[Value], columns: &[&str], s: &Style) -> String {
    let cols = visible(columns, s.wide);
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    // The width is ours to choose (COLUMNS, the terminal, or none): comfy-table must not
    // measure again, and styles only when colour was chosen.
    t.force_no_tty();
    if s.color {
        t.enforce_styling();
    }
    match (s.wide, s.width) {
        (false, Some(w)) => {
            t.set_width(w);
            t.set_content_arrangement(ContentArrangement::Dynamic);
        }
        _ => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    t.set_header(cols.iter().map(|c| c.to_uppercase()));
    for r in rows {
        t.add_row(cols.iter().map(|c| {
            let mut text = cell(&r[*c]);
            if !s.wide
                && let Some(short) = short_time(&text)
            {
                text = short;
            }
            let color = if s.color { state_color(&text) } else { None };
            match color {
                Some(c) => Cell::new(text).fg(c),
                None => Cell::new(text),
            }
        }));
    }
    t.to_string()
}

/// Prints key/value pairs of one object (`+name` fields too: a record has room).
pub fn record(v: &impl Serialize, fields: &[&str]) {
    let v = &value(v);
    let s = style();
    if let Some(f) = &s.field {
        match v.get(f.as_str()) {
            Some(x) => {
                FIELD_FOUND.store(true, Ordering::Relaxed);
                print_line(&cell(x));
            }
            None => FIELD_MISSED.store(true, Ordering::Relaxed),
        }
        return;
    }
    for f in fields {
        let f = f.trim_start_matches('+');
        outln!("{:<14} {}", format!("{f}:"), cell(&v[f]));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn no_color_and_no_terminal_turn_colour_off() {
        assert!(color_enabled(ColorChoice::Auto, None, true));
        assert!(!color_enabled(ColorChoice::Auto, Some("1"), true));
        assert!(color_enabled(ColorChoice::Auto, Some(""), true), "an empty NO_COLOR does not count");
        assert!(!color_enabled(ColorChoice::Auto, None, false));
        assert!(color_enabled(ColorChoice::Always, Some("1"), false));
        assert!(!color_enabled(ColorChoice::Never, None, true));
    }

    #[test]
    fn width_comes_from_columns_then_the_terminal() {
        assert_eq!(terminal_width(Some("80"), false), Some(80));
        assert_eq!(terminal_width(Some("banana"), false), None);
        assert_eq!(terminal_width(None, false), None);
    }

    fn keys() -> Vec<Value> {
        let scopes = ["users:read", "users:write", "groups:read", "groups:write", "bulk"];
        (1..=3)
            .map(|v| {
                json!({"version": v, "state": "current", "scopes": scopes, "created_at": "2026-11-28T20:44:55.883156Z",
                "activated_at": "2026-11-28T20:44:55.883156Z", "expires_at": null, "last_used_at": "2026-11-28T20:44:55.883156Z"})
            })
            .collect()
    }

    const COLS: &[&str] = &["version", "state", "scopes", "+created_at", "activated_at", "expires_at", "+last_used_at"];

    #[test]
    fn a_narrow_table_fits_80_columns_and_wide_shows_all() {
        let narrow = render(&keys(), COLS, &Style { width: Some(80), ..Style::default() });
        for line in narrow.lines() {
            assert!(line.chars().count() <= 80, "{} columns: {line}", line.chars().count());
        }
        assert!(!narrow.contains("LAST_USED_AT") && narrow.contains("2026-11-28 20:44"), "{narrow}");
        let wide = render(&keys(), COLS, &Style { wide: true, width: Some(80), ..Style::default() });
        assert!(wide.contains("LAST_USED_AT") && wide.contains("20:44:55.883156Z"), "{wide}");
        assert!(wide.lines().any(|l| l.chars().count() > 80));
    }

    #[test]
    fn colour_only_when_chosen() {
        let plain = render(&keys(), COLS, &Style::default());
        assert!(!plain.contains('\u{1b}'), "{plain}");
        let coloured = render(&keys(), COLS, &Style { color: true, ..Style::default() });
        assert!(coloured.contains('\u{1b}'), "{coloured}");
    }
}

//! Reading an import file as it streams: physical lines of bounded length (a huge line
//! is skipped, not loaded) and RFC 4180 CSV records on top of them (quotes, `""`
//! escapes, line breaks inside quoted fields), each with the line it starts on.

use std::io::{self, BufRead};

/// Longest line (and CSV record) in bytes: what one SCIM request may carry.
pub const MAX_LINE: usize = 1024 * 1024;

/// One physical line, without its line break.
pub enum Line {
    Text(String),
    /// Longer than [`MAX_LINE`]: skipped.
    TooLong,
    /// Not UTF-8: the file is refused as a whole.
    NotUtf8,
}

/// Physical lines with their 1-based numbers. A UTF-8 byte-order mark is dropped.
pub struct Lines<R> {
    r: R,
    number: u64,
}

impl<R: BufRead> Lines<R> {
    pub fn new(r: R) -> Lines<R> {
        Lines { r, number: 0 }
    }

    pub fn next_line(&mut self) -> io::Result<Option<(u64, Line)>> {
        let mut buf = Vec::new();
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = self.r.fill_buf()?;
            if chunk.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                if buf.len() + take > MAX_LINE + 1 {
                    too_long = true;
                    buf = Vec::new();
                } else {
                    buf.extend_from_slice(&chunk[..take]);
                }
            }
            let consumed = if done { take + 1 } else { take };
            self.r.consume(consumed);
            if done {
                break;
            }
        }
        self.number += 1;
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if self.number == 1 && buf.starts_with(b"\xEF\xBB\xBF") {
            buf.drain(..3);
        }
        let line = if too_long || buf.len() > MAX_LINE {
            Line::TooLong
        } else {
            match String::from_utf8(buf) {
                Ok(s) => Line::Text(s),
                Err(_) => Line::NotUtf8,
            }
        };
        Ok(Some((self.number, line)))
    }
}

/// A CSV record: its first line and its fields, or why it cannot be read.
#[derive(Debug)]
pub struct Record {
    pub line: u64,
    pub fields: Result<Vec<String>, String>,
}

/// Where the parser is within a record.
#[derive(Clone, Copy, PartialEq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: closes it, or starts `""`.
    QuoteInQuoted,
}

struct Parser {
    fields: Vec<String>,
    cur: String,
    state: State,
    len: usize,
}

impl Parser {
    fn new() -> Parser {
        Parser { fields: Vec::new(), cur: String::new(), state: State::FieldStart, len: 0 }
    }

    /// Feeds one physical line; `Ok(true)` when the record is complete.
    fn feed(&mut self, line: &str) -> Result<bool, String> {
        self.len += line.len() + 1;
        if self.len > MAX_LINE {
            return Err(format!("the record is longer than {MAX_LINE} bytes"));
        }
        for c in line.chars() {
            match (self.state, c) {
                (State::FieldStart, '"') => self.state = State::Quoted,
                (State::FieldStart | State::Unquoted, ',') => self.end_field(),
                // A quote inside an unquoted field is literal (`emails[type eq "work"].value`
                // as a header), as most CSV readers take it.
                (State::FieldStart | State::Unquoted, c) => {
                    self.cur.push(c);
                    self.state = State::Unquoted;
                }
                (State::Quoted, '"') => self.state = State::QuoteInQuoted,
                (State::Quoted, c) => self.cur.push(c),
                (State::QuoteInQuoted, '"') => {
                    self.cur.push('"');
                    self.state = State::Quoted;
                }
                (State::QuoteInQuoted, ',') => self.end_field(),
                (State::QuoteInQuoted, c) => {
                    return Err(format!(
                        "field {}: {c:?} after a closing quote (a field is either quoted as a whole or not at all)",
                        self.fields.len() + 1
                    ));
                }
            }
        }
        if self.state == State::Quoted {
            self.cur.push('\n');
            return Ok(false);
        }
        self.end_field();
        Ok(true)
    }

    fn end_field(&mut self) {
        self.fields.push(std::mem::take(&mut self.cur));
        self.state = State::FieldStart;
    }
}

/// CSV records. Blank lines are skipped; a line that is not UTF-8 is an `Err` (the
/// whole file is refused).
pub struct CsvRecords<R> {
    lines: Lines<R>,
}

impl<R: BufRead> CsvRecords<R> {
    pub fn new(r: R) -> CsvRecords<R> {
        CsvRecords { lines: Lines::new(r) }
    }

    pub fn next_record(&mut self) -> anyhow::Result<Option<Record>> {
        let mut p = Parser::new();
        let mut start = None;
        loop {
            let Some((n, line)) = self.lines.next_line()? else {
                return Ok(start.map(|line| Record {
                    line,
                    fields: Err(format!(
                        "a quoted field opened on line {line} is not closed before the end of the file"
                    )),
                }));
            };
            let text = match line {
                Line::NotUtf8 => anyhow::bail!("line {n} is not UTF-8: save the file as UTF-8 and import again"),
                Line::TooLong => {
                    return Ok(Some(Record {
                        line: start.unwrap_or(n),
                        fields: Err(format!("line {n} is longer than {MAX_LINE} bytes")),
                    }));
                }
                Line::Text(t) => t,
            };
            if start.is_none() && text.trim().is_empty() {
                continue;
            }
            let first = *start.get_or_insert(n);
            match p.feed(&text) {
                Ok(true) => return Ok(Some(Record { line: first, fields: Ok(p.fields) })),
                Ok(false) => {}
                Err(e) => return Ok(Some(Record { line: first, fields: Err(e) })),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &[u8]) -> Vec<(u64, Result<Vec<String>, String>)> {
        let mut r = CsvRecords::new(text);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push((rec.line, rec.fields));
        }
        out
    }

    #[test]
    fn quotes_escapes_and_line_breaks_in_fields() {
        let got = records(b"\xEF\xBB\xBFa,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\"two\nlines\"\n\nplain,,end\n");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (1, Ok(vec!["a".into(), "b".into(), "c".into()])));
        assert_eq!(got[1], (2, Ok(vec!["x, y".into(), "say \"hi\"".into(), "two\nlines".into()])));
        assert_eq!(got[2], (5, Ok(vec!["plain".into(), String::new(), "end".into()])));
    }

    #[test]
    fn bad_quoting_is_a_record_error_and_parsing_goes_on() {
        let got = records(b"a,b\nx\"y\",z\n\"q\"r,s\nok,1\n\"open,2\n");
        assert_eq!(got[1], (2, Ok(vec!["x\"y\"".into(), "z".into()])), "a quote inside an unquoted field is literal");
        assert!(got[2].1.as_ref().unwrap_err().contains("after a closing quote"), "{:?}", got[2]);
        assert_eq!(got[3], (4, Ok(vec!["ok".into(), "1".into()])));
        assert_eq!(got[4].0, 5);
        assert!(got[4].1.as_ref().unwrap_err().contains("not closed"), "{:?}", got[4]);
    }

    #[test]
    fn huge_lines_are_skipped_and_non_utf8_refused() {
        let mut text = b"a\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        text.extend(b"\nafter\n");
        let got = records(&text);
        assert_eq!(got.len(), 3);
        assert!(got[1].1.as_ref().unwrap_err().contains("longer than"));
        assert_eq!(got[2], (3, Ok(vec!["after".into()])));
        let mut r = CsvRecords::new(&b"a\n\xff\xfe\n"[..]);
        assert!(r.next_record().unwrap().is_some());
        assert!(r.next_record().unwrap_err().to_string().contains("line 2 is not UTF-8"));
    }
}

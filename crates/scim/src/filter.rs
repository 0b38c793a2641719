//! The SCIM filter language (RFC 7644 §3.4.2.2): AST, a hand-written recursive-descent
//! parser with size and depth limits, and a printer whose output parses back to the
//! same tree.
//!
//! Precedence is `not` > `and` > `or`; keywords, operators and attribute names are
//! case-insensitive on input. Quirks of real clients are accepted:
//! - unquoted string values (`externalId eq jyoung`, older Entra ID tenants);
//! - a comparison on a sub-attribute of a value path
//!   (`emails[type eq "work"].value eq "x"`), read as
//!   `emails[type eq "work" and value eq "x"]`.
//!
//! URL decoding (including `+` for space) is the caller's job.

use std::fmt;

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 8 * 1024;
/// Deepest nesting of parentheses, `not` and value paths.
pub const MAX_DEPTH: usize = 32;
/// Most comparisons and presence tests in one filter.
pub const MAX_TERMS: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare(AttrPath, CompareOp, CompValue),
    /// `attr[filter]`: some value of the multi-valued `attr` matches `filter`, whose
    /// paths are relative to that value.
    ValuePath(AttrPath, Box<Filter>),
}

/// `[URI ":"] name ["." sub]`. Names keep the case they were written in; comparisons
/// against the schema are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub uri: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Null,
}

/// Why a filter was rejected; the server answers 400 with `scimType: invalidFilter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub message: String,
    /// Byte offset in the input where the problem was found.
    pub at: usize,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid filter at position {}: {}", self.at, self.message)
    }
}

impl std::error::Error for FilterError {}

impl CompareOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    fn parse(word: &str) -> Option<CompareOp> {
        const ALL: [CompareOp; 9] = [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ];
        ALL.into_iter().find(|op| op.as_str().eq_ignore_ascii_case(word))
    }
}

/// Parses a filter.
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    if input.len() > MAX_FILTER_LEN {
        return Err(FilterError { message: format!("longer than {MAX_FILTER_LEN} bytes"), at: MAX_FILTER_LEN });
    }
    let mut p = Parser { src: input, pos: 0, depth: 0, terms: 0 };
    let f = p.or_expr()?;
    p.skip_ws();
    if p.pos < input.len() {
        return Err(p.error("unexpected text after the end of the filter"));
    }
    Ok(f)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
    terms: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, message: impl Into<String>) -> FilterError {
        FilterError { message: message.into(), at: self.pos }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start_matches([' ', '\t', '\n', '\r']);
        self.pos = self.src.len() - trimmed.len();
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.rest().chars().next()
    }

    /// Consumes `keyword` (case-insensitive) if it is the next whole word.
    fn keyword(&mut self, keyword: &str) -> bool {
        self.skip_ws();
        let rest = self.rest();
        let n = keyword.len();
        let matches = rest.len() >= n
            && rest.is_char_boundary(n)
            && rest[..n].eq_ignore_ascii_case(keyword)
            && !rest[n..].starts_with(|c: char| is_path_char(c));
        if matches {
            self.pos += n;
        }
        matches
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Filter, FilterError> {
        self.binary("or", Self::and_expr, Filter::Or)
    }

    fn and_expr(&mut self) -> Result<Filter, FilterError> {
        self.binary("and", Self::unary, Filter::And)
    }

    /// `operand (keyword operand)*`, left-associative.
    fn binary(
        &mut self,
        keyword: &str,
        operand: fn(&mut Self) -> Result<Filter, FilterError>,
        join: fn(Box<Filter>, Box<Filter>) -> Filter,
    ) -> Result<Filter, FilterError> {
        let mut left = operand(self)?;
        while self.keyword(keyword) {
            let right = operand(self)?;
            left = join(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        if self.keyword("not") {
            self.enter()?;
            if self.peek() != Some('(') {
                return Err(self.error("expected '(' after 'not'"));
            }
            let inner = self.group()?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.peek() == Some('(') {
            self.enter()?;
            let inner = self.group()?;
            self.depth -= 1;
            return Ok(inner);
        }
        self.attr_expr()
    }

    /// `( or_expr )`
    fn group(&mut self) -> Result<Filter, FilterError> {
        self.skip_ws();
        self.pos += 1; // '('
        let inner = self.or_expr()?;
        if self.peek() != Some(')') {
            return Err(self.error("expected ')'"));
        }
        self.pos += 1;
        Ok(inner)
    }

    fn attr_expr(&mut self) -> Result<Filter, FilterError> {
        let path = self.attr_path()?;
        if self.rest().starts_with('[') {
            if path.sub.is_some() {
                return Err(self.error("a value filter '[...]' must follow an attribute, not a sub-attribute"));
            }
            self.enter()?;
            self.pos += 1;
            let inner = self.or_expr()?;
            if self.peek() != Some(']') {
                return Err(self.error("expected ']'"));
            }
            self.pos += 1;
            self.depth -= 1;
            // Entra ID: `emails[type eq "work"].value eq "x"`.
            if self.rest().starts_with('.') {
                self.pos += 1;
                let sub = self.name()?;
                let cmp = self.comparison(AttrPath { uri: None, name: sub, sub: None })?;
                return Ok(Filter::ValuePath(path, Box::new(Filter::And(Box::new(inner), Box::new(cmp)))));
            }
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        self.comparison(path)
    }

    fn comparison(&mut self, path: AttrPath) -> Result<Filter, FilterError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(self.error(format!("more than {MAX_TERMS} comparisons")));
        }
        if self.keyword("pr") {
            return Ok(Filter::Present(path));
        }
        self.skip_ws();
        let start = self.pos;
        let word = self.word();
        let op = CompareOp::parse(word).ok_or_else(|| FilterError {
            message: if word.is_empty() {
                "expected an operator (eq ne co sw ew gt ge lt le pr)".into()
            } else {
                format!("unknown operator {:?}", truncate(word))
            },
            at: start,
        })?;
        let value = self.value()?;
        Ok(Filter::Compare(path, op, value))
    }

    /// The next run of characters up to whitespace or a bracket.
    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let end = rest.find(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']')).unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }

    fn value(&mut self) -> Result<CompValue, FilterError> {
        self.skip_ws();
        let start = self.pos;
        if self.rest().starts_with('"') {
            return self.string().map(CompValue::Str);
        }
        let word = self.word();
        if word.is_empty() {
            return Err(FilterError { message: "expected a value".into(), at: start });
        }
        Ok(match word {
            w if w.eq_ignore_ascii_case("true") => CompValue::Bool(true),
            w if w.eq_ignore_ascii_case("false") => CompValue::Bool(false),
            w if w.eq_ignore_ascii_case("null") => CompValue::Null,
            w => match serde_json::from_str::<serde_json::Number>(w) {
                Ok(n) => CompValue::Num(n),
                // An unquoted string (older Entra ID tenants).
                Err(_) => CompValue::Str(w.to_owned()),
            },
        })
    }

    /// A JSON string literal.
    fn string(&mut self) -> Result<String, FilterError> {
        let rest = self.rest();
        let bytes = rest.as_bytes();
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    let lit = &rest[..=i];
                    return match serde_json::from_str::<String>(lit) {
                        Ok(s) => {
                            self.pos += i + 1;
                            Ok(s)
                        }
                        Err(_) => Err(self.error("malformed string (bad escape or control character)")),
                    };
                }
                _ => i += 1,
            }
        }
        Err(self.error("unterminated string"))
    }

    fn attr_path(&mut self) -> Result<AttrPath, FilterError> {
        self.skip_ws();
        let start = self.pos;
        let rest = self.rest();
        let end = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
        let token = &rest[..end];
        if token.is_empty() {
            return Err(self.error("expected an attribute name"));
        }
        self.pos += end;
        let (uri, local) = match token.rfind(':') {
            Some(i) => (Some(&token[..i]), &token[i + 1..]),
            None => (None, token),
        };
        let (name, sub) = match local.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (local, None),
        };
        let bad = |m: &str| FilterError { message: format!("{m}: {:?}", truncate(token)), at: start };
        if uri.is_some_and(str::is_empty) {
            return Err(bad("empty schema URI"));
        }
        if !is_attr_name(name) || sub.is_some_and(|s| !is_attr_name(s)) {
            return Err(bad("invalid attribute path"));
        }
        Ok(AttrPath { uri: uri.map(str::to_owned), name: name.to_owned(), sub: sub.map(str::to_owned) })
    }

    fn name(&mut self) -> Result<String, FilterError> {
        let rest = self.rest();
        let end =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))).unwrap_or(rest.len());
        let name = &rest[..end];
        if !is_attr_name(name) {
            return Err(self.error("expected a sub-attribute name after '.'"));
        }
        self.pos += end;
        Ok(name.to_owned())
    }
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-' | '$')
}

/// `ATTRNAME = ALPHA *(nameChar)`, plus `$ref`.
fn is_attr_name(s: &str) -> bool {
    s == "$ref"
        || (s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.uri {
            write!(f, "{u}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Str(s) => write!(f, "{}", serde_json::Value::String(s.clone())),
            CompValue::Num(n) => write!(f, "{n}"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => f.write_str("null"),
        }
    }
}

/// Canonical form: binary operators fully parenthesised, so printing and parsing again
/// gives the same tree.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::And(a, b) => write!(f, "({a} and {b})"),
            Filter::Or(a, b) => write!(f, "({a} or {b})"),
            Filter::Not(x) => write!(f, "not ({x})"),
            Filter::Present(p) => write!(f, "{p} pr"),
            Filter::Compare(p, op, v) => write!(f, "{p} {} {v}", op.as_str()),
            Filter::ValuePath(p, x) => write!(f, "{p}[{x}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn path(name: &str) -> AttrPath {
        AttrPath { uri: None, name: name.into(), sub: None }
    }

    fn cmp(name: &str, op: CompareOp, v: CompValue) -> Filter {
        Filter::Compare(path(name), op, v)
    }

    fn s(v: &str) -> CompValue {
        CompValue::Str(v.into())
    }

    #[test]
    fn parses_the_shapes_real_clients_send() {
        assert_eq!(parse(r#"userName eq "Test_User""#).unwrap(), cmp("userName", CompareOp::Eq, s("Test_User")));
        assert_eq!(parse("externalId eq jyoung").unwrap(), cmp("externalId", CompareOp::Eq, s("jyoung")));
        assert_eq!(
            parse(r#"emails[type eq "work"].value eq "user@contoso.com""#).unwrap(),
            Filter::ValuePath(
                path("emails"),
                Box::new(Filter::And(
                    Box::new(cmp("type", CompareOp::Eq, s("work"))),
                    Box::new(cmp("value", CompareOp::Eq, s("user@contoso.com")))
                ))
            )
        );
        let f = parse(r#"id eq "g1" and members eq "u1""#).unwrap();
        assert!(matches!(f, Filter::And(_, _)));
        let f = parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"m\"").unwrap();
        let Filter::Compare(p, _, _) = f else { panic!() };
        assert_eq!(p.uri.as_deref(), Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"));
        assert_eq!((p.name.as_str(), p.sub.as_deref()), ("manager", Some("value")));
    }

    #[test]
    fn precedence_and_case() {
        // not > and > or
        let f = parse(r#"a eq 1 OR b eq 2 And NOT (c Pr)"#).unwrap();
        assert_eq!(f.to_string(), "(a eq 1 or (b eq 2 and not (c pr)))");
        assert_eq!(
            parse("meta.lastModified gt \"2011-05-13T04:42:34Z\"").unwrap().to_string(),
            "meta.lastModified gt \"2011-05-13T04:42:34Z\""
        );
        assert_eq!(parse("active eq True").unwrap(), cmp("active", CompareOp::Eq, CompValue::Bool(true)));
        assert_eq!(parse("x eq null").unwrap(), cmp("x", CompareOp::Eq, CompValue::Null));
        assert_eq!(parse("x ge 1.5e3").unwrap().to_string(), "x ge 1500.0");
    }

    #[test]
    fn rfc_examples_parse() {
        for f in [
            r#"title pr and userType eq "Employee""#,
            r#"title pr or userType eq "Intern""#,
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
            r#"name.familyName co "O'Malley""#,
            r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#,
        ] {
            let parsed = parse(f).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(parse(&parsed.to_string()).unwrap(), parsed, "{f}");
        }
    }

    #[test]
    fn bad_filters_are_rejected_with_a_position() {
        for (f, what) in [
            ("", "attribute"),
            ("userName", "operator"),
            ("userName xx \"a\"", "unknown operator"),
            ("userName eq", "value"),
            ("userName eq \"a", "unterminated"),
            ("(userName eq \"a\"", "')'"),
            ("userName eq \"a\" and", "attribute"),
            ("not userName eq \"a\"", "'('"),
            ("emails[type eq \"work\"", "']'"),
            ("1abc eq 2", "attribute path"),
            (":x eq 1", "schema URI"),
            ("a eq 1 b", "after the end"),
            ("a eq \"\\x\"", "malformed string"),
        ] {
            let e = parse(f).unwrap_err();
            assert!(e.to_string().contains(what), "{f:?}: {e}");
        }
    }

    #[test]
    fn limits_hold() {
        let deep = format!("{}a pr{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).unwrap_err().message.contains("nested deeper"));
        let nots = format!("{}a pr{}", "not (".repeat(100), ")".repeat(100));
        assert!(parse(&nots).unwrap_err().message.contains("nested deeper"));
        let many = vec!["a pr"; MAX_TERMS + 1].join(" or ");
        assert!(parse(&many).unwrap_err().message.contains("comparisons"));
        let long = format!("a eq \"{}\"", "x".repeat(MAX_FILTER_LEN));
        assert!(parse(&long).is_err());
        let ok = format!("{}a pr{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
    }

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("userName".to_owned()),
            Just("emails".to_owned()),
            Just("$ref".to_owned()),
            "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
        ]
        .prop_filter("keywords are not names", |n| {
            !["and", "or", "not", "pr", "true", "false", "null"].iter().any(|k| k.eq_ignore_ascii_case(n))
        })
    }

    fn arb_path() -> impl Strategy<Value = AttrPath> {
        (
            prop::option::of(Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned())),
            arb_name(),
            prop::option::of(arb_name()),
        )
            .prop_map(|(uri, name, sub)| AttrPath { uri, name, sub })
    }

    fn arb_value() -> impl Strategy<Value = CompValue> {
        prop_oneof![
            any::<String>().prop_map(CompValue::Str),
            any::<i64>().prop_map(|n| CompValue::Num(n.into())),
            any::<bool>().prop_map(CompValue::Bool),
            Just(CompValue::Null),
        ]
    }

    fn arb_op() -> impl Strategy<Value = CompareOp> {
        prop::sample::select(vec![
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ])
    }

    fn arb_filter() -> impl Strategy<Value = Filter> {
        let leaf = prop_oneof![
            arb_path().prop_map(Filter::Present),
            (arb_path(), arb_op(), arb_value()).prop_map(|(p, o, v)| Filter::Compare(p, o, v)),
        ];
        leaf.prop_recursive(6, 48, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
                inner.clone().prop_map(|a| Filter::Not(Box::new(a))),
                (arb_name(), inner)
                    .prop_map(|(n, a)| Filter::ValuePath(AttrPath { uri: None, name: n, sub: None }, Box::new(a))),
            ]
        })
    }

    proptest! {
        #[test]
        fn print_then_parse_round_trips(f in arb_filter()) {
            let printed = f.to_string();
            prop_assume!(printed.len() <= MAX_FILTER_LEN);
            let back = parse(&printed);
            prop_assert_eq!(back, Ok(f), "{}", printed);
        }

        #[test]
        fn parser_never_panics(input in "\\PC{0,200}") {
            let _ = parse(&input);
        }

        #[test]
        fn parser_never_panics_on_filterish_input(
            parts in prop::collection::vec(prop_oneof![
                Just("("), Just(")"), Just("["), Just("]"), Just(" and "), Just(" or "), Just("not "),
                Just(" eq "), Just(" pr"), Just("\""), Just("\\"), Just("a"), Just("b.c"), Just("x:y"), Just("1"), Just(" "),
            ], 0..60)
        ) {
            let _ = parse(&parts.concat());
        }
    }
}

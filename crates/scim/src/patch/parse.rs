//! Reading a PatchOp body: operations, their `op` values and their paths.

use std::fmt;

use serde_json::Value;

use super::{MAX_PATH_LEN, bad, clip, get_ci, invalid_path};
use crate::error::{ScimError, ScimType};
use crate::filter::{self, AttrPath, Filter};
use crate::profile::Profile;
use crate::schema;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::Remove => "remove",
            OpKind::Replace => "replace",
        }
    }

    /// An `op` value, case-insensitively.
    pub fn parse(s: &str) -> Option<OpKind> {
        [OpKind::Add, OpKind::Remove, OpKind::Replace].into_iter().find(|k| k.as_str().eq_ignore_ascii_case(s))
    }

    /// An `op` value as `profile` reads it: lowercase only, unless it allows capitals.
    fn parse_as(s: &str, profile: &Profile) -> Result<OpKind, ScimError> {
        let kind = OpKind::parse(s).ok_or_else(|| {
            bad(ScimType::InvalidSyntax, format!("unknown op {:?} (expected add, remove or replace)", clip(s)))
        })?;
        if kind.as_str() != s && !profile.capitalised_ops {
            return Err(bad(
                ScimType::InvalidSyntax,
                format!("op {:?} must be lowercase, {:?}: {}", clip(s), kind.as_str(), profile.refusal("entra")),
            ));
        }
        Ok(kind)
    }
}

/// The `path` of an operation.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchPath {
    /// A whole schema by its URN (`urn:…:extension:enterprise:2.0:User`), in the registry's
    /// spelling; its value is an object of that schema's attributes.
    Schema(String),
    /// `[URN:]attr[.sub]`, `[URN:]attr[filter]` or `[URN:]attr[filter].sub`: `attr.sub` is
    /// the sub-attribute, after the filter when there is one.
    Attribute { attr: AttrPath, filter: Option<Filter> },
}

impl PatchPath {
    /// Parses a path; 400 `invalidPath` if malformed, `invalidFilter` if the value filter is.
    pub fn parse(input: &str) -> Result<PatchPath, ScimError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(bad(ScimType::InvalidPath, "the path is empty"));
        }
        if s.len() > MAX_PATH_LEN {
            return Err(bad(ScimType::InvalidPath, format!("the path is longer than {MAX_PATH_LEN} bytes")));
        }
        let Some(open) = s.find('[') else {
            if let Some(sch) = schema::schema(s) {
                return Ok(PatchPath::Schema(sch.id.to_owned()));
            }
            return Ok(PatchPath::Attribute { attr: parse_attr_path(s, input)?, filter: None });
        };
        let close = closing_bracket(s, open).ok_or_else(|| invalid_path(input, "'[' without a matching ']'"))?;
        let mut attr = parse_attr_path(&s[..open], input)?;
        if attr.sub.is_some() {
            return Err(invalid_path(input, "a value filter must follow an attribute, not a sub-attribute"));
        }
        let filter = filter::parse(&s[open + 1..close])
            .map_err(|e| bad(ScimType::InvalidFilter, format!("bad value filter in path {:?}: {e}", clip(input))))?;
        let rest = &s[close + 1..];
        if !rest.is_empty() {
            match rest.strip_prefix('.') {
                Some(sub) if is_attr_name(sub) => attr.sub = Some(sub.to_owned()),
                _ => return Err(invalid_path(input, "only '.subAttribute' may follow a value filter")),
            }
        }
        Ok(PatchPath::Attribute { attr, filter: Some(filter) })
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchPath::Schema(id) => f.write_str(id),
            PatchPath::Attribute { attr, filter: None } => write!(f, "{attr}"),
            PatchPath::Attribute { attr, filter: Some(flt) } => {
                if let Some(u) = &attr.uri {
                    write!(f, "{u}:")?;
                }
                write!(f, "{}[{flt}]", attr.name)?;
                if let Some(s) = &attr.sub {
                    write!(f, ".{s}")?;
                }
                Ok(())
            }
        }
    }
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// Parses a PatchOp request body (RFC 7644 §3.5.2). The body must be an object with an
/// `Operations` array (key case-insensitive) of one or more operations, each with an `op`
/// (`add`, `remove`, `replace`, case-insensitive), an optional string `path` and, for add
/// and replace, a `value`; anything else is 400 `invalidSyntax`. A missing or unexpected
/// `schemas` is tolerated. Paths are parsed here (`invalidPath`, `invalidFilter`) and
/// resolved against the schema by [`apply`], which also rejects a remove without a path.
pub fn parse_request(body: &Value, profile: &Profile) -> Result<Vec<PatchOp>, ScimError> {
    let Some(obj) = body.as_object() else {
        return Err(bad(ScimType::InvalidSyntax, "a PatchOp body must be a JSON object"));
    };
    let ops = match get_ci(obj, "Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => ops,
        Some(Value::Array(_)) => return Err(bad(ScimType::InvalidSyntax, "\"Operations\" is empty")),
        Some(_) => return Err(bad(ScimType::InvalidSyntax, "\"Operations\" must be an array")),
        None => return Err(bad(ScimType::InvalidSyntax, "a PatchOp body needs an \"Operations\" array")),
    };
    ops.iter()
        .enumerate()
        .map(|(i, raw)| {
            parse_operation(raw, profile).map_err(|mut e| {
                e.detail = format!("operation {}: {}", i + 1, e.detail);
                e
            })
        })
        .collect()
}

fn parse_operation(raw: &Value, profile: &Profile) -> Result<PatchOp, ScimError> {
    let Some(obj) = raw.as_object() else {
        return Err(bad(ScimType::InvalidSyntax, "an operation must be a JSON object"));
    };
    let op = match get_ci(obj, "op") {
        Some(Value::String(s)) => OpKind::parse_as(s, profile)?,
        Some(_) => return Err(bad(ScimType::InvalidSyntax, "\"op\" must be a string")),
        None => return Err(bad(ScimType::InvalidSyntax, "an operation needs an \"op\"")),
    };
    let path = match get_ci(obj, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(PatchPath::parse(s)?),
        Some(_) => return Err(bad(ScimType::InvalidSyntax, "\"path\" must be a string")),
    };
    let value = get_ci(obj, "value").cloned();
    if op != OpKind::Remove && value.is_none() {
        return Err(bad(ScimType::InvalidSyntax, format!("{} needs a \"value\"", op.as_str())));
    }
    if op == OpKind::Remove && value.as_ref().is_some_and(|v| !v.is_null()) && !profile.remove_with_value {
        return Err(bad(
            ScimType::InvalidSyntax,
            format!(
                "remove takes no \"value\"; select values with a filter, e.g. members[value eq \"id\"]: {}",
                profile.refusal("entra")
            ),
        ));
    }
    Ok(PatchOp { op, path, value })
}

// ---------------------------------------------------------------------------------------
// Path parsing

/// `[URN ":"] name ["." sub]`: the URN is everything up to the last ':' (URNs hold dots,
/// as in `2.0`, so the sub-attribute is split from the last segment only).
fn parse_attr_path(s: &str, whole: &str) -> Result<AttrPath, ScimError> {
    let (uri, local) = match s.rfind(':') {
        Some(i) => (Some(&s[..i]), &s[i + 1..]),
        None => (None, s),
    };
    if let Some(u) = uri
        && (u.is_empty() || u.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '[' | ']')))
    {
        return Err(invalid_path(whole, "malformed schema URN"));
    }
    let (name, sub) = match local.split_once('.') {
        Some((n, sub)) => (n, Some(sub)),
        None => (local, None),
    };
    if !is_attr_name(name) || sub.is_some_and(|x| !is_attr_name(x)) {
        return Err(invalid_path(whole, "malformed attribute path"));
    }
    Ok(AttrPath { uri: uri.map(str::to_owned), name: name.to_owned(), sub: sub.map(str::to_owned) })
}

/// Index of the ']' closing the '[' at `open`, skipping quoted strings.
fn closing_bracket(s: &str, open: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let (mut depth, mut in_string, mut i) = (0usize, false, open + 1);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'[' if !in_string => depth += 1,
            b']' if !in_string => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `ATTRNAME = ALPHA *(nameChar)`, plus `$ref`.
fn is_attr_name(s: &str) -> bool {
    s == "$ref"
        || (s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
}

//! CSV columns named by SCIM attribute paths, and the SCIM resource a row becomes.
//!
//! Columns: `userName`, `name.givenName`, `emails[type eq "work"].value`, `active`,
//! `urn:…:enterprise:2.0:User:department`, `externalId`, `displayName`, `members`
//! (`;`-separated), and `type` (`User`, the default, or `Group`). A bare multi-valued
//! column (`emails`, `members`) takes `;`-separated values. Cells are trimmed; an empty
//! cell leaves the attribute out. The header is checked before anything is written.

use fedkey_scim::resource::parse_attr_path;
use fedkey_scim::schema::{self, AttrType, AttributeDef, Mutability, ResourceTypeDef};
use serde_json::{Map, Value};

/// Where a column's value goes in a resource of one type.
#[derive(Debug, Clone)]
struct Target {
    /// The extension URN holding the attribute; `None` for the core schema.
    container: Option<&'static str>,
    attr: &'static AttributeDef,
    sub: Option<&'static AttributeDef>,
    /// `[type eq "work"]`: the element of a multi-valued attribute the value goes in.
    filter: Option<(&'static str, Value)>,
}

#[derive(Debug, Clone)]
enum Kind {
    Type,
    ExternalId,
    Attr { user: Option<Target>, group: Option<Target> },
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
}

#[derive(Debug)]
pub struct Columns(Vec<Column>);

impl Columns {
    /// Checks the header row: every column must name an attribute of a User or a Group.
    pub fn parse(header: &[String]) -> Result<Columns, String> {
        let mut cols: Vec<Column> = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            let name = raw.trim();
            let at = |m: String| format!("column {} ({:?}): {m}", i + 1, clip(name));
            if name.is_empty() {
                return Err(at("the header names no attribute".into()));
            }
            let kind = if name.eq_ignore_ascii_case("type") {
                Kind::Type
            } else if name.eq_ignore_ascii_case("externalId") {
                Kind::ExternalId
            } else if name.eq_ignore_ascii_case("id") {
                return Err(at(
                    "ids are assigned by fedkey; rows match by externalId, then userName/displayName".into()
                ));
            } else {
                let user = target(resource("User"), name).map_err(at)?;
                let group = target(resource("Group"), name).map_err(at)?;
                if user.is_none() && group.is_none() {
                    return Err(at("not an attribute of a User or a Group".into()));
                }
                Kind::Attr { user, group }
            };
            if cols.iter().any(|c| c.name.eq_ignore_ascii_case(name)) {
                return Err(at("the column appears twice".into()));
            }
            cols.push(Column { name: name.to_owned(), kind });
        }
        Ok(Columns(cols))
    }

    /// The resource type and SCIM body of one record.
    pub fn resource(&self, cells: &[String]) -> Result<(&'static str, Value), String> {
        if cells.len() != self.0.len() {
            return Err(format!("{} fields, but the header has {}", cells.len(), self.0.len()));
        }
        let mut rt = "User";
        for (c, cell) in self.0.iter().zip(cells) {
            if matches!(c.kind, Kind::Type) {
                rt = match cell.trim() {
                    "" => "User",
                    t if t.eq_ignore_ascii_case("user") => "User",
                    t if t.eq_ignore_ascii_case("group") => "Group",
                    t => return Err(format!("type {:?} is neither User nor Group", clip(t))),
                };
            }
        }
        let mut body = Map::new();
        for (c, cell) in self.0.iter().zip(cells) {
            let cell = cell.trim();
            if cell.is_empty() {
                continue;
            }
            match &c.kind {
                Kind::Type => {}
                Kind::ExternalId => {
                    body.insert("externalId".into(), Value::String(cell.to_owned()));
                }
                Kind::Attr { user, group } => {
                    let t = if rt == "Group" { group } else { user };
                    let Some(t) = t else {
                        return Err(format!("column {} does not apply to a {rt}", c.name));
                    };
                    place(&mut body, t, cell).map_err(|e| format!("column {}: {e}", c.name))?;
                }
            }
        }
        let def = resource(rt);
        let mut schemas = vec![Value::String(def.schema.to_owned())];
        schemas.extend(def.extensions.iter().filter(|(u, _)| body.contains_key(*u)).map(|(u, _)| Value::from(*u)));
        body.insert("schemas".into(), Value::Array(schemas));
        Ok((rt, Value::Object(body)))
    }
}

fn resource(id: &str) -> &'static ResourceTypeDef {
    schema::resource_type(id).unwrap_or(&schema::RESOURCE_TYPES[0])
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Splits `emails[type eq "work"].value` into `emails.value` and the filter.
fn split_filter(name: &str) -> Result<(String, Option<(String, Value)>), String> {
    let Some(open) = name.find('[') else { return Ok((name.to_owned(), None)) };
    let bad = || format!("expected a filter like {:?}", "emails[type eq \"work\"].value");
    let close = name.rfind(']').filter(|c| *c > open).ok_or_else(bad)?;
    let after = &name[close + 1..];
    if !(after.is_empty() || after.starts_with('.')) {
        return Err(bad());
    }
    let inner = name[open + 1..close].trim();
    let (sub, rest) = inner.split_once(char::is_whitespace).ok_or_else(bad)?;
    let (op, lit) = rest.trim_start().split_once(char::is_whitespace).ok_or_else(bad)?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(bad());
    }
    let lit = lit.trim();
    let value = match lit {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        l if l.starts_with('"') => Value::String(serde_json::from_str::<String>(l).map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    let after = if after.is_empty() { ".value" } else { after };
    Ok((format!("{}{after}", &name[..open]), Some((sub.to_owned(), value))))
}

/// Where column `name` goes in a resource of type `rt`; `None` if `rt` has no such attribute.
fn target(rt: &'static ResourceTypeDef, name: &str) -> Result<Option<Target>, String> {
    let (path, filter) = split_filter(name)?;
    let p = parse_attr_path(&path).map_err(|e| e.detail)?;
    if p.name.is_empty() {
        return Err("a schema URN alone is not an attribute".into());
    }
    let Some(r) = rt.resolve(&p) else { return Ok(None) };
    let (attr, sub) = (r.attribute, r.sub);
    if attr.mutability == Mutability::ReadOnly || sub.is_some_and(|s| s.mutability == Mutability::ReadOnly) {
        return Err(format!("{} is read-only", attr.name));
    }
    let container = (r.schema.id != rt.schema).then_some(r.schema.id);
    let complex = attr.ty == AttrType::Complex;
    let filter = match filter {
        None => None,
        Some((fsub, lit)) => {
            let fdef = attr
                .sub_attribute(&fsub)
                .filter(|_| complex && attr.multi_valued)
                .ok_or_else(|| format!("{} has no sub-attribute {fsub:?} to select an element by", attr.name))?;
            if sub.is_none() {
                return Err(format!("name the sub-attribute to set, e.g. {}[…].value", attr.name));
            }
            Some((fdef.name, lit))
        }
    };
    if complex && sub.is_none() && attr.sub_attribute("value").is_none() {
        return Err(format!("{} is complex: name a sub-attribute, e.g. {}.{}", attr.name, attr.name, first_sub(attr)));
    }
    if complex && attr.multi_valued && sub.is_some() && filter.is_none() {
        return Err(format!(
            "{0} is multi-valued: use a bare {0} column (values separated by ;) or select an element, e.g. {0}[type eq \"work\"].value",
            attr.name
        ));
    }
    Ok(Some(Target { container, attr, sub, filter }))
}

fn first_sub(attr: &AttributeDef) -> &'static str {
    attr.sub_attributes.first().map(|s| s.name).unwrap_or("value")
}

/// A cell as a value of `def`'s type.
fn convert(def: &AttributeDef, cell: &str) -> Result<Value, String> {
    match def.ty {
        AttrType::Boolean => match cell.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "n" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("{:?} is not a boolean (true or false)", clip(cell))),
        },
        AttrType::Integer => {
            cell.parse::<i64>().map(Value::from).map_err(|_| format!("{:?} is not an integer", clip(cell)))
        }
        AttrType::Decimal => cell
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{:?} is not a number", clip(cell))),
        _ => Ok(Value::String(cell.to_owned())),
    }
}

/// `;`-separated values, trimmed, empty ones dropped.
fn split_list(cell: &str) -> impl Iterator<Item = &str> {
    cell.split(';').map(str::trim).filter(|v| !v.is_empty())
}

fn place(body: &mut Map<String, Value>, t: &Target, cell: &str) -> Result<(), String> {
    let obj = match t.container {
        None => body,
        Some(urn) => {
            let slot = body.entry(urn).or_insert_with(|| Value::Object(Map::new()));
            match slot.as_object_mut() {
                Some(m) => m,
                None => return Err("extension is not an object".into()),
            }
        }
    };
    let attr = t.attr;
    let complex = attr.ty == AttrType::Complex;
    let value_def = |d: &'static AttributeDef| d.sub_attribute("value").unwrap_or(d);
    match (&t.filter, t.sub) {
        (Some((fsub, lit)), Some(sub)) => {
            let slot = obj.entry(attr.name).or_insert_with(|| Value::Array(Vec::new()));
            let Some(items) = slot.as_array_mut() else { return Err("expected a list".into()) };
            let pos = match items.iter().position(|e| e.get(*fsub) == Some(lit)) {
                Some(p) => p,
                None => {
                    let mut m = Map::new();
                    m.insert((*fsub).to_owned(), lit.clone());
                    items.push(Value::Object(m));
                    items.len() - 1
                }
            };
            if let Some(e) = items[pos].as_object_mut() {
                e.insert(sub.name.to_owned(), convert(sub, cell)?);
            }
        }
        (None, Some(sub)) => {
            let slot = obj.entry(attr.name).or_insert_with(|| Value::Object(Map::new()));
            let Some(m) = slot.as_object_mut() else { return Err("expected an object".into()) };
            m.insert(sub.name.to_owned(), convert(sub, cell)?);
        }
        (_, None) if attr.multi_valued => {
            let items = split_list(cell)
                .map(|v| {
                    let v = convert(value_def(attr), v)?;
                    Ok(if complex { serde_json::json!({"value": v}) } else { v })
                })
                .collect::<Result<Vec<_>, String>>()?;
            obj.insert(attr.name.to_owned(), Value::Array(items));
        }
        (_, None) if complex => {
            obj.insert(attr.name.to_owned(), serde_json::json!({"value": convert(value_def(attr), cell)?}));
        }
        (_, None) => {
            obj.insert(attr.name.to_owned(), convert(attr, cell)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cols(h: &[&str]) -> Result<Columns, String> {
        Columns::parse(&h.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn row(c: &Columns, cells: &[&str]) -> Result<(&'static str, Value), String> {
        c.resource(&cells.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    #[test]
    fn a_user_row_becomes_a_scim_user() {
        let c = cols(&[
            "type",
            "userName",
            "externalId",
            "name.givenName",
            "emails[type eq \"work\"].value",
            "emails[type eq \"work\"].primary",
            "active",
            &format!("{ENT}:department"),
            "displayName",
            "members",
        ])
        .unwrap();
        let (rt, v) = row(&c, &["", " alice ", "E1", "Alice", "a@x.test", "yes", "false", "Eng", "", ""]).unwrap();
        assert_eq!(rt, "User");
        assert_eq!(v["userName"], "alice");
        assert_eq!(v["externalId"], "E1");
        assert_eq!(v["name"], json!({"givenName": "Alice"}));
        assert_eq!(v["emails"], json!([{"type": "work", "value": "a@x.test", "primary": true}]));
        assert_eq!(v["active"], false);
        assert_eq!(v[ENT]["department"], "Eng");
        assert_eq!(v["schemas"], json!([schema::USER, ENT]));
        let (rt, g) = row(&c, &["group", "", "", "", "", "", "", "", "Eng", "alice; bob;"]).unwrap();
        assert_eq!(rt, "Group");
        assert_eq!(g["members"], json!([{"value": "alice"}, {"value": "bob"}]));
        assert_eq!(g["displayName"], "Eng");
    }

    #[test]
    fn bad_cells_and_bad_columns_are_named() {
        let c = cols(&["userName", "active", "members"]).unwrap();
        assert!(row(&c, &["a", "maybe", ""]).unwrap_err().contains("column active: \"maybe\" is not a boolean"));
        assert!(row(&c, &["a", "", "x"]).unwrap_err().contains("members does not apply to a User"));
        assert!(row(&c, &["a", ""]).unwrap_err().contains("2 fields, but the header has 3"));
        for (h, want) in [
            ("nickname2", "not an attribute"),
            ("emails.value", "multi-valued"),
            ("name", "name a sub-attribute"),
            ("groups", "read-only"),
            ("id", "assigned by fedkey"),
            ("emails[type eq work].value", "expected a filter"),
        ] {
            let e = cols(&["userName", h]).unwrap_err();
            assert!(e.contains("column 2") && e.contains(want), "{h}: {e}");
        }
        assert!(cols(&["userName", "USERNAME"]).unwrap_err().contains("twice"));
    }
}

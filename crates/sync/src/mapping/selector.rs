//! Which directory group a scope-group or role rule means: exactly one, by its id or, only
//! where the rule says so, by its displayName. Whoever creates a group chooses its
//! displayName, so a rule that matched either could be met by a group named after another
//! group's id (a key without `groups:privileged` could earn the privileged group's role).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use super::GroupRef;

/// `{"id": "…"}` or `{"name": "…"}`. A bare string, as written before selectors existed,
/// is an id when it has the shape of a directory id (a UUID) and a displayName otherwise:
/// the directory gives every group a UUID, so the bare form can never mean both. It is
/// written back in the explicit form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupSelector {
    /// The group with this id.
    Id(String),
    /// The group with this displayName (case-insensitive).
    Name(String),
}

impl GroupSelector {
    fn from_value(v: Value) -> Result<GroupSelector, String> {
        const SHAPE: &str = r#"a directory group is {"id": "<group id>"} or {"name": "<displayName>"}"#;
        match v {
            Value::String(s) if looks_like_id(&s) => Ok(GroupSelector::Id(s)),
            Value::String(s) => Ok(GroupSelector::Name(s)),
            Value::Object(o) if o.len() == 1 => match o.into_iter().next() {
                Some((k, Value::String(s))) if k == "id" => Ok(GroupSelector::Id(s)),
                Some((k, Value::String(s))) if k == "name" => Ok(GroupSelector::Name(s)),
                _ => Err(SHAPE.into()),
            },
            _ => Err(SHAPE.into()),
        }
    }

    /// What is wrong with the selector, for the mapping's list of problems.
    pub(super) fn check(&self) -> Result<(), String> {
        match self {
            GroupSelector::Id(id) if !is_directory_id(id) => Err(format!(
                "{:?} is not a directory group id (a lower-case UUID); to match a displayName write {{\"name\": …}}",
                id.chars().take(64).collect::<String>()
            )),
            GroupSelector::Name(n) if n.trim().is_empty() => Err("empty group name".into()),
            _ => Ok(()),
        }
    }

    fn matches(&self, g: &GroupRef) -> bool {
        match self {
            GroupSelector::Id(id) => g.id == *id,
            GroupSelector::Name(n) => g.display_name.to_lowercase() == n.to_lowercase(),
        }
    }

    /// Whether `member_of` holds the group. A name that matches more than one of them does
    /// not say which group it means: it matches none, and that is logged.
    pub(super) fn held_by(&self, member_of: &[GroupRef]) -> bool {
        match member_of.iter().filter(|g| self.matches(g)).count() {
            0 => false,
            1 => true,
            n => {
                tracing::warn!(
                    rule = ?self,
                    groups = n,
                    "a mapping rule's group name matches several directory groups; the rule is not applied"
                );
                false
            }
        }
    }
}

impl Serialize for GroupSelector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            GroupSelector::Id(id) => json!({"id": id}),
            GroupSelector::Name(n) => json!({"name": n}),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for GroupSelector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        GroupSelector::from_value(Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// The shape of a UUID in any case (so an upper-case id is not taken for a name).
fn looks_like_id(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// A group id as the directory writes it: a lower-case UUID.
fn is_directory_id(s: &str) -> bool {
    looks_like_id(s) && !s.bytes().any(|b| b.is_ascii_uppercase())
}

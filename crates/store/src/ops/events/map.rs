//! What a directory change becomes on the wire: the one mapping from the outbox's event
//! kinds to SET event types, subjects and payloads, for both kinds of stream.

use serde_json::{Value, json};

use super::StreamKind;

/// RFC 9967 provisioning events fedkey issues ("notice" form: attribute names, never values).
pub const SCIM_CREATE: &str = "urn:ietf:params:scim:event:prov:create:notice";
pub const SCIM_PATCH: &str = "urn:ietf:params:scim:event:prov:patch:notice";
pub const SCIM_PUT: &str = "urn:ietf:params:scim:event:prov:put:notice";
pub const SCIM_DELETE: &str = "urn:ietf:params:scim:event:prov:delete";
pub const SCIM_ACTIVATE: &str = "urn:ietf:params:scim:event:prov:activate";
pub const SCIM_DEACTIVATE: &str = "urn:ietf:params:scim:event:prov:deactivate";
/// Every RFC 9967 event type a `scim` stream can request.
pub const SCIM_EVENT_TYPES: &[&str] = &[SCIM_CREATE, SCIM_PATCH, SCIM_PUT, SCIM_DELETE, SCIM_ACTIVATE, SCIM_DEACTIVATE];

/// OpenID CAEP 1.0 and RISC 1.0 event types fedkey issues on `ssf` streams.
pub const CAEP_SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
pub const CAEP_CREDENTIAL_CHANGE: &str = "https://schemas.openid.net/secevent/caep/event-type/credential-change";
pub const RISC_ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
pub const RISC_ACCOUNT_ENABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-enabled";
pub const RISC_ACCOUNT_PURGED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-purged";
/// Every event type a directory change can produce on an `ssf` stream.
pub const SSF_EVENT_TYPES: &[&str] =
    &[CAEP_SESSION_REVOKED, CAEP_CREDENTIAL_CHANGE, RISC_ACCOUNT_DISABLED, RISC_ACCOUNT_ENABLED, RISC_ACCOUNT_PURGED];

/// The event types a stream of `kind` may request.
pub fn supported_event_types(kind: StreamKind) -> &'static [&'static str] {
    match kind {
        StreamKind::Scim => SCIM_EVENT_TYPES,
        StreamKind::Ssf => SSF_EVENT_TYPES,
    }
}

/// One change of the outbox, as the event pipeline reads it.
#[derive(Debug, Clone)]
pub struct OutboxChange {
    pub resource_type: String,
    pub resource_id: String,
    /// What the write did (`create`, `patch`, `put`, `delete`, `activate`, `deactivate`,
    /// `credential:password:CHANGE`, `credential:x509:CHANGE`).
    pub kinds: Vec<String>,
    /// Names of the attributes the write changed.
    pub attributes: Vec<String>,
    /// `userName` (users) or `displayName` (groups).
    pub display: Option<String>,
    pub external_id: Option<String>,
    /// `meta.version` after the write (a number; the ETag is `W/"N"`).
    pub version: Option<i64>,
    /// When the change was written (microseconds): the SET's `iat`.
    pub at: i64,
}

/// One SET to queue: its event type, RFC 9493 `sub_id` and event payload.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedEvent {
    pub event_type: &'static str,
    pub subject: Value,
    pub payload: Value,
}

/// The SETs a change gives a stream of `kind`, before the stream's own filter.
pub fn events_for(kind: StreamKind, c: &OutboxChange) -> Vec<MappedEvent> {
    match kind {
        StreamKind::Scim => scim_events(c),
        StreamKind::Ssf => ssf_events(c),
    }
}

/// RFC 9967 §2.4: one provisioning event per kind; `sub_id` in the `scim` format.
fn scim_events(c: &OutboxChange) -> Vec<MappedEvent> {
    let path = if c.resource_type == "Group" { "Groups" } else { "Users" };
    let mut subject = json!({"format": "scim", "uri": format!("/{path}/{}", c.resource_id)});
    if let Some(x) = &c.external_id {
        subject["externalId"] = json!(x);
    }
    let notice = || {
        let mut p = json!({"attributes": c.attributes});
        if let Some(v) = c.version {
            p["version"] = json!(format!("W/\"{v}\""));
        }
        p
    };
    c.kinds
        .iter()
        .filter_map(|k| {
            let (event_type, payload) = match k.as_str() {
                "create" => (SCIM_CREATE, notice()),
                "patch" => (SCIM_PATCH, notice()),
                "put" => (SCIM_PUT, notice()),
                "delete" => (SCIM_DELETE, json!({})),
                "activate" => (SCIM_ACTIVATE, json!({})),
                "deactivate" => (SCIM_DEACTIVATE, json!({})),
                _ => return None,
            };
            Some(MappedEvent { event_type, subject: subject.clone(), payload })
        })
        .collect()
}

/// CAEP/RISC: account events of users only. The subject is the SCIM id (`opaque`), with
/// the userName as a second identifier when it is an email address (`aliases`).
fn ssf_events(c: &OutboxChange) -> Vec<MappedEvent> {
    if c.resource_type != "User" {
        return Vec::new();
    }
    let opaque = json!({"format": "opaque", "id": c.resource_id});
    let subject = match c.display.as_deref().filter(|n| looks_like_email(n)) {
        Some(email) => json!({"format": "aliases", "identifiers": [opaque, {"format": "email", "email": email}]}),
        None => opaque,
    };
    let timestamp = c.at.div_euclid(1_000_000);
    let caep = |extra: Value| {
        let mut p = json!({"event_timestamp": timestamp});
        if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
            p.extend(extra);
        }
        p
    };
    let mut out = Vec::new();
    let mut push = |event_type: &'static str, payload: Value| {
        out.push(MappedEvent { event_type, subject: subject.clone(), payload })
    };
    for k in &c.kinds {
        match k.as_str() {
            "deactivate" => {
                push(CAEP_SESSION_REVOKED, caep(json!({})));
                push(RISC_ACCOUNT_DISABLED, json!({}));
            }
            "activate" => push(RISC_ACCOUNT_ENABLED, json!({})),
            "delete" => {
                push(CAEP_SESSION_REVOKED, caep(json!({})));
                push(RISC_ACCOUNT_PURGED, json!({}));
            }
            other => {
                if let Some((credential, change)) = other.strip_prefix("credential:").and_then(|r| r.split_once(':')) {
                    push(CAEP_CREDENTIAL_CHANGE, caep(json!({"credential_type": credential, "change_type": change})));
                }
            }
        }
    }
    out
}

/// A plausible address: one `@` with something on each side and a dot in the domain.
fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.contains('@') && domain.contains('.') && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// The event kinds of a create or replace of a resource, from what it was (`before`,
/// `None` for a create) and what it is. `put` tells a PUT (or an import) from a PATCH.
pub fn write_kinds(
    resource_type: &str,
    before: Option<&Value>,
    after: &Value,
    changed: &[String],
    put: bool,
) -> Vec<String> {
    let mut kinds = vec![
        match (before, put) {
            (None, _) => "create",
            (Some(_), true) => "put",
            (Some(_), false) => "patch",
        }
        .to_owned(),
    ];
    if resource_type != "User" {
        return kinds;
    }
    let inactive = |b: &Value| matches!(b.get("active"), Some(Value::Bool(false)));
    if let Some(b) = before
        && changed.iter().any(|c| c == "active")
        && inactive(b) != inactive(after)
    {
        kinds.push(if inactive(after) { "deactivate" } else { "activate" }.to_owned());
    }
    for (attr, credential) in [("password", "password"), ("x509Certificates", "x509")] {
        let had = before.is_some_and(|b| has_value(b.get(attr)));
        let has = has_value(after.get(attr));
        let touched = before.is_none() || changed.iter().any(|c| c == attr);
        let change = match (had, has) {
            (false, true) => "create",
            (true, true) => "update",
            (true, false) => "delete",
            (false, false) => continue,
        };
        if touched {
            kinds.push(format!("credential:{credential}:{change}"));
        }
    }
    kinds
}

fn has_value(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kinds: &[&str]) -> OutboxChange {
        OutboxChange {
            resource_type: "User".into(),
            resource_id: "u1".into(),
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
            attributes: vec!["active".into()],
            display: Some("ann@example.com".into()),
            external_id: Some("x1".into()),
            version: Some(3),
            at: 1_700_000_000_500_000,
        }
    }

    #[test]
    fn write_kinds_tell_patch_put_flips_and_credentials() {
        let changed = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            write_kinds("User", None, &json!({"userName": "a", "password": "h"}), &changed(&["userName"]), false),
            ["create", "credential:password:create"]
        );
        let before = json!({"userName": "a", "active": true, "password": "h"});
        assert_eq!(
            write_kinds(
                "User",
                Some(&before),
                &json!({"userName": "a", "active": false, "password": "h"}),
                &changed(&["active"]),
                false
            ),
            ["patch", "deactivate"]
        );
        assert_eq!(
            write_kinds("User", Some(&json!({"active": false})), &json!({}), &changed(&["active"]), true),
            ["put", "activate"]
        );
        assert_eq!(
            write_kinds(
                "User",
                Some(&before),
                &json!({"userName": "a", "active": true, "password": "i"}),
                &changed(&["password"]),
                true
            ),
            ["put", "credential:password:update"]
        );
        assert_eq!(
            write_kinds("User", Some(&before), &json!({"active": true}), &changed(&["password"]), false),
            ["patch", "credential:password:delete"]
        );
        assert_eq!(
            write_kinds("Group", Some(&json!({})), &json!({"active": false}), &changed(&["active"]), false),
            ["patch"]
        );
    }

    #[test]
    fn scim_events_are_notices_with_scim_subjects() {
        let e = events_for(StreamKind::Scim, &change(&["patch", "deactivate"]));
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].event_type, SCIM_PATCH);
        assert_eq!(e[0].subject, json!({"format": "scim", "uri": "/Users/u1", "externalId": "x1"}));
        assert_eq!(e[0].payload, json!({"attributes": ["active"], "version": "W/\"3\""}));
        assert_eq!(e[1].event_type, SCIM_DEACTIVATE);
        assert_eq!(e[1].payload, json!({}));
        assert!(events_for(StreamKind::Scim, &change(&["credential:password:update"])).is_empty());
    }

    #[test]
    fn ssf_events_cover_accounts_and_credentials() {
        let types = |kinds: &[&str]| {
            events_for(StreamKind::Ssf, &change(kinds)).iter().map(|e| e.event_type).collect::<Vec<_>>()
        };
        assert_eq!(types(&["patch", "deactivate"]), [CAEP_SESSION_REVOKED, RISC_ACCOUNT_DISABLED]);
        assert_eq!(types(&["put", "activate"]), [RISC_ACCOUNT_ENABLED]);
        assert_eq!(types(&["delete"]), [CAEP_SESSION_REVOKED, RISC_ACCOUNT_PURGED]);
        let cred = events_for(StreamKind::Ssf, &change(&["patch", "credential:x509:create"]));
        assert_eq!(
            cred[0].payload,
            json!({"event_timestamp": 1_700_000_000, "credential_type": "x509", "change_type": "create"})
        );
        assert_eq!(cred[0].subject["format"], "aliases");
        assert_eq!(cred[0].subject["identifiers"][1], json!({"format": "email", "email": "ann@example.com"}));
        let mut plain = change(&["delete"]);
        plain.display = Some("ann".into());
        assert_eq!(events_for(StreamKind::Ssf, &plain)[0].subject, json!({"format": "opaque", "id": "u1"}));
        plain.resource_type = "Group".into();
        assert!(events_for(StreamKind::Ssf, &plain).is_empty(), "groups have no account events");
    }
}

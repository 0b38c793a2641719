//! What a target supports, read from its discovery documents (RFC 7643 §5–7):
//! `/ServiceProviderConfig` (required), `/ResourceTypes` and `/Schemas` (tolerated when
//! missing: many applications only implement `/Users` and `/Groups`).

use std::collections::BTreeMap;

use fedkey_scim::json::{as_bool, lookup};
use fedkey_scim::schema::{ENTERPRISE_USER, GROUP, USER};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub patch: bool,
    pub bulk: BulkSupport,
    pub filter: FilterSupport,
    pub etag: bool,
    pub sort: bool,
    pub change_password: bool,
    /// Whether Users may carry the Enterprise User extension.
    pub enterprise_user: bool,
    /// Endpoint (path segment under the base URL) of the User resource type, e.g. `Users`.
    pub user_endpoint: String,
    /// Endpoint of the Group resource type; `None` when `/ResourceTypes` lists no Group.
    pub group_endpoint: Option<String>,
    /// Attribute names each schema declares (`/Schemas`), by schema URN; `None` when the
    /// target publishes no schemas.
    pub schemas: Option<BTreeMap<String, Vec<String>>>,
    /// What was assumed because a document was missing; empty when all were read.
    pub assumptions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BulkSupport {
    pub supported: bool,
    pub max_operations: u64,
    pub max_payload_size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilterSupport {
    pub supported: bool,
    pub max_results: u64,
}

fn flag(doc: &Value, feature: &str) -> bool {
    lookup(doc, feature).and_then(|f| lookup(f, "supported")).and_then(as_bool).unwrap_or(false)
}

fn number(doc: &Value, feature: &str, key: &str) -> u64 {
    lookup(doc, feature).and_then(|f| lookup(f, key)).and_then(Value::as_u64).unwrap_or(0)
}

/// The `Resources` of a ListResponse, or a bare array (some targets answer discovery
/// lists that way).
pub(crate) fn list_items(doc: &Value) -> Vec<&Value> {
    match doc {
        Value::Array(items) => items.iter().collect(),
        v => lookup(v, "Resources").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default(),
    }
}

/// The last path segment of an endpoint (`/Users`, `Users`, `https://x/scim/Users`).
fn endpoint_segment(endpoint: &str) -> Option<String> {
    endpoint.trim_end_matches('/').rsplit('/').next().filter(|s| !s.is_empty()).map(str::to_owned)
}

impl Capabilities {
    /// Reads the documents; `None` for a document the target does not serve.
    pub fn from_documents(spc: &Value, resource_types: Option<&Value>, schemas: Option<&Value>) -> Capabilities {
        let mut assumptions = Vec::new();
        let mut caps = Capabilities {
            patch: flag(spc, "patch"),
            bulk: BulkSupport {
                supported: flag(spc, "bulk"),
                max_operations: number(spc, "bulk", "maxOperations"),
                max_payload_size: number(spc, "bulk", "maxPayloadSize"),
            },
            filter: FilterSupport { supported: flag(spc, "filter"), max_results: number(spc, "filter", "maxResults") },
            etag: flag(spc, "etag"),
            sort: flag(spc, "sort"),
            change_password: flag(spc, "changePassword"),
            enterprise_user: false,
            user_endpoint: "Users".into(),
            group_endpoint: Some("Groups".into()),
            schemas: None,
            assumptions: Vec::new(),
        };
        if let Some(doc) = schemas {
            let mut map = BTreeMap::new();
            for s in list_items(doc) {
                let Some(id) = lookup(s, "id").and_then(Value::as_str) else { continue };
                let names = lookup(s, "attributes")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|a| lookup(a, "name").and_then(Value::as_str)).map(str::to_owned))
                    .map(Iterator::collect)
                    .unwrap_or_default();
                map.insert(id.to_owned(), names);
            }
            caps.schemas = Some(map);
        } else {
            assumptions.push("no /Schemas: every standard attribute is assumed to be accepted".to_owned());
        }
        match resource_types {
            Some(doc) => {
                let types = list_items(doc);
                let find = |urn: &str, name: &str| {
                    types.iter().copied().find(|t| {
                        lookup(t, "schema").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case(urn))
                            || lookup(t, "name").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case(name))
                    })
                };
                match find(USER, "User") {
                    Some(user) => {
                        if let Some(e) = lookup(user, "endpoint").and_then(Value::as_str).and_then(endpoint_segment) {
                            caps.user_endpoint = e;
                        }
                        caps.enterprise_user =
                            lookup(user, "schemaExtensions").and_then(Value::as_array).is_some_and(|exts| {
                                exts.iter().any(|x| {
                                    lookup(x, "schema")
                                        .and_then(Value::as_str)
                                        .is_some_and(|s| s.eq_ignore_ascii_case(ENTERPRISE_USER))
                                })
                            });
                    }
                    None => assumptions.push("/ResourceTypes lists no User: assuming the endpoint /Users".to_owned()),
                }
                caps.group_endpoint = find(GROUP, "Group")
                    .and_then(|g| lookup(g, "endpoint").and_then(Value::as_str).and_then(endpoint_segment));
            }
            None => {
                // Without resource types the schemas are the best evidence; with neither,
                // assume the standard RFC 7643 User, which includes the extension.
                caps.enterprise_user = match &caps.schemas {
                    Some(m) => m.keys().any(|k| k.eq_ignore_ascii_case(ENTERPRISE_USER)),
                    None => true,
                };
                assumptions.push(format!(
                    "no /ResourceTypes: assuming /Users and /Groups{}",
                    if caps.enterprise_user { ", with the Enterprise User extension" } else { "" }
                ));
            }
        }
        caps.assumptions = assumptions;
        caps
    }

    /// Whether the target declares attribute `name` in schema `urn` (true when it publishes
    /// no schemas, or does not list that schema's attributes at all).
    pub fn declares(&self, urn: &str, name: &str) -> bool {
        let Some(map) = &self.schemas else { return true };
        match map.iter().find(|(k, _)| k.eq_ignore_ascii_case(urn)) {
            Some((_, names)) => names.is_empty() || names.iter().any(|n| n.eq_ignore_ascii_case(name)),
            None => false,
        }
    }

    /// Drops from a User or Group body (wire layout) the attributes the target does not
    /// declare, and the Enterprise User extension when the target lacks it, so strict
    /// targets do not reject the whole request. Returns what was dropped (`urn:name`).
    pub fn restrict(&self, core_urn: &str, body: &mut Value) -> Vec<String> {
        const COMMON: [&str; 4] = ["schemas", "id", "externalId", "meta"];
        let mut dropped = Vec::new();
        let Some(obj) = body.as_object_mut() else { return dropped };
        let keys: Vec<String> = obj.keys().cloned().collect();
        for key in keys {
            if COMMON.iter().any(|c| c.eq_ignore_ascii_case(&key)) {
                continue;
            }
            if key.eq_ignore_ascii_case(ENTERPRISE_USER) {
                let keep = self.enterprise_user
                    && self.schemas.as_ref().is_none_or(|m| m.keys().any(|k| k.eq_ignore_ascii_case(ENTERPRISE_USER)));
                if !keep {
                    obj.remove(&key);
                    dropped.push(key);
                    continue;
                }
                if let Some(Value::Object(ext)) = obj.get_mut(&key) {
                    ext.retain(|name, _| {
                        let ok = self.declares(ENTERPRISE_USER, name);
                        if !ok {
                            dropped.push(format!("{ENTERPRISE_USER}:{name}"));
                        }
                        ok
                    });
                }
                continue;
            }
            if !self.declares(core_urn, &key) {
                obj.remove(&key);
                dropped.push(format!("{core_urn}:{key}"));
            }
        }
        let has_ext = obj.keys().any(|k| k.eq_ignore_ascii_case(ENTERPRISE_USER));
        if let Some(Value::Array(schemas)) = obj.get_mut("schemas") {
            schemas.retain(|s| has_ext || !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(ENTERPRISE_USER)));
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spc() -> Value {
        json!({"patch": {"supported": true}, "bulk": {"supported": true, "maxOperations": 10, "maxPayloadSize": 1048576},
            "filter": {"supported": "true", "maxResults": 200}, "etag": {"supported": false}, "sort": {"supported": true},
            "changePassword": {"supported": false}})
    }

    #[test]
    fn full_documents() {
        let rts = json!({"Resources": [
            {"name": "User", "endpoint": "/Accounts", "schema": USER, "schemaExtensions": [{"schema": ENTERPRISE_USER, "required": false}]},
            {"name": "Group", "endpoint": "/Teams/", "schema": GROUP}]});
        let schemas = json!([{"id": USER, "attributes": [{"name": "userName"}, {"name": "emails"}]},
            {"id": ENTERPRISE_USER, "attributes": [{"name": "department"}]}]);
        let c = Capabilities::from_documents(&spc(), Some(&rts), Some(&schemas));
        assert!(c.patch && c.sort && !c.etag && !c.change_password);
        assert_eq!(c.bulk, BulkSupport { supported: true, max_operations: 10, max_payload_size: 1_048_576 });
        assert_eq!(c.filter, FilterSupport { supported: true, max_results: 200 });
        assert_eq!((c.user_endpoint.as_str(), c.group_endpoint.as_deref()), ("Accounts", Some("Teams")));
        assert!(c.enterprise_user && c.assumptions.is_empty());
        assert!(c.declares(USER, "USERNAME") && !c.declares(USER, "title") && !c.declares(GROUP, "displayName"));
        let mut body = json!({"schemas": [USER, ENTERPRISE_USER], "externalId": "e", "userName": "u", "title": "t",
            ENTERPRISE_USER: {"department": "d", "costCenter": "c"}});
        let dropped = c.restrict(USER, &mut body);
        assert_eq!(dropped, vec![format!("{USER}:title"), format!("{ENTERPRISE_USER}:costCenter")]);
        assert_eq!(
            body,
            json!({"schemas": [USER, ENTERPRISE_USER], "externalId": "e", "userName": "u",
            ENTERPRISE_USER: {"department": "d"}})
        );
    }

    #[test]
    fn missing_documents_fall_back_to_defaults_and_say_so() {
        let c = Capabilities::from_documents(&json!({}), None, None);
        assert!(!c.patch && !c.filter.supported && !c.bulk.supported);
        assert_eq!((c.user_endpoint.as_str(), c.group_endpoint.as_deref()), ("Users", Some("Groups")));
        assert!(c.enterprise_user && c.schemas.is_none());
        assert_eq!(c.assumptions.len(), 2, "{:?}", c.assumptions);
        assert!(c.declares(USER, "anything"));
        // A target without the extension loses it from bodies.
        let rts = json!([{"name": "User", "endpoint": "/Users", "schema": USER}]);
        let c = Capabilities::from_documents(&spc(), Some(&rts), None);
        assert!(!c.enterprise_user && c.group_endpoint.is_none());
        let mut body =
            json!({"schemas": [USER, ENTERPRISE_USER], "userName": "u", ENTERPRISE_USER: {"department": "d"}});
        assert_eq!(c.restrict(USER, &mut body), vec![ENTERPRISE_USER.to_owned()]);
        assert_eq!(body, json!({"schemas": [USER], "userName": "u"}));
    }
}

//! Discovery documents (RFC 7643 §5). Limits are parameters so the server advertises
//! exactly what it enforces.

use serde_json::{Value, json};

pub const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

/// What the service provider advertises in `/ServiceProviderConfig`.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub patch: bool,
    pub bulk: Option<BulkLimits>,
    pub filter_max_results: Option<u32>,
    pub change_password: bool,
    pub sort: bool,
    pub etag: bool,
    pub documentation_uri: Option<String>,
    /// The RFC 9865 `pagination` block; `None` leaves it out (index pagination only).
    pub pagination: Option<Pagination>,
}

/// What RFC 9865 §4 lets a service provider advertise about paging: both methods, the
/// one used when a request names neither, page sizes and how long a cursor stays valid.
#[derive(Debug, Clone, Copy)]
pub struct Pagination {
    pub cursor: bool,
    pub index: bool,
    /// `"index"` or `"cursor"`.
    pub default_method: &'static str,
    pub default_page_size: u32,
    pub max_page_size: u32,
    /// Seconds a cursor stays valid after it was issued.
    pub cursor_timeout: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct BulkLimits {
    pub max_operations: u32,
    pub max_payload_size: u64,
}

/// Renders `/ServiceProviderConfig`; `location` is the absolute URL of the document.
pub fn service_provider_config(caps: &Capabilities, location: &str) -> Value {
    let mut doc = json!({
        "schemas": [SPC_SCHEMA],
        "patch": {"supported": caps.patch},
        "bulk": match caps.bulk {
            Some(b) => json!({"supported": true, "maxOperations": b.max_operations, "maxPayloadSize": b.max_payload_size}),
            None => json!({"supported": false, "maxOperations": 0, "maxPayloadSize": 0}),
        },
        "filter": match caps.filter_max_results {
            Some(n) => json!({"supported": true, "maxResults": n}),
            None => json!({"supported": false, "maxResults": 0}),
        },
        "changePassword": {"supported": caps.change_password},
        "sort": {"supported": caps.sort},
        "etag": {"supported": caps.etag},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Provisioning key",
            "description": "A fedkey provisioning key of one of this directory's inbound trusts, sent as 'Authorization: Bearer <key>'.",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": location}
    });
    if let (Some(p), Some(obj)) = (&caps.pagination, doc.as_object_mut()) {
        obj.insert(
            "pagination".into(),
            json!({
                "cursor": p.cursor,
                "index": p.index,
                "defaultPaginationMethod": p.default_method,
                "defaultPageSize": p.default_page_size,
                "maxPageSize": p.max_page_size,
                "cursorTimeout": p.cursor_timeout,
            }),
        );
    }
    if let (Some(uri), Some(obj)) = (&caps.documentation_uri, doc.as_object_mut()) {
        obj.insert("documentationUri".into(), Value::String(uri.clone()));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spc_advertises_given_limits() {
        let caps = Capabilities {
            patch: false,
            bulk: Some(BulkLimits { max_operations: 7, max_payload_size: 1024 }),
            filter_max_results: Some(200),
            change_password: false,
            sort: false,
            etag: false,
            documentation_uri: None,
            pagination: Some(Pagination {
                cursor: true,
                index: true,
                default_method: "index",
                default_page_size: 50,
                max_page_size: 200,
                cursor_timeout: 600,
            }),
        };
        let doc = service_provider_config(&caps, "http://x/ServiceProviderConfig");
        assert_eq!(doc["pagination"]["cursor"], true);
        assert_eq!(doc["pagination"]["defaultPaginationMethod"], "index");
        assert_eq!(doc["pagination"]["maxPageSize"], 200);
        assert_eq!(doc["pagination"]["cursorTimeout"], 600);
        let without = service_provider_config(&Capabilities { pagination: None, ..caps }, "http://x/SPC");
        assert!(without.get("pagination").is_none());
        assert_eq!(doc["bulk"]["maxOperations"], 7);
        assert_eq!(doc["filter"]["maxResults"], 200);
        assert_eq!(doc["patch"]["supported"], false);
        assert_eq!(doc["meta"]["location"], "http://x/ServiceProviderConfig");
    }
}

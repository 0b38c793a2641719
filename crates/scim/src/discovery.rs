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
        };
        let doc = service_provider_config(&caps, "http://x/ServiceProviderConfig");
        assert_eq!(doc["bulk"]["maxOperations"], 7);
        assert_eq!(doc["filter"]["maxResults"], 200);
        assert_eq!(doc["patch"]["supported"], false);
        assert_eq!(doc["meta"]["location"], "http://x/ServiceProviderConfig");
    }
}

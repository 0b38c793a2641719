//! Many resources per request: SCIM `/Bulk` (RFC 7644 §3.7) for writes and `or`-joined
//! `eq` filters for lookups. The dispatcher uses both for targets that support them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use fedkey_scim::eval;
use fedkey_scim::filter::{self, Filter};
use fedkey_scim::json::lookup;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Remote, ResourceKind, ScimClient, remote_from};
use crate::error::{ClientError, Scrubber};

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

/// Most values looked up by one `or` filter: well under fedkey's own and most targets'
/// filter limits, and short enough for a URL.
pub const LOOKUP_CHUNK: usize = 50;

/// The HTTP method of one bulk operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkMethod {
    Post,
    Put,
    Patch,
    Delete,
}

impl BulkMethod {
    fn as_str(self) -> &'static str {
        match self {
            BulkMethod::Post => "POST",
            BulkMethod::Put => "PUT",
            BulkMethod::Patch => "PATCH",
            BulkMethod::Delete => "DELETE",
        }
    }
}

/// One operation of a `/Bulk` request.
#[derive(Debug, Clone)]
pub struct BulkOp {
    pub method: BulkMethod,
    pub kind: ResourceKind,
    /// The resource's id at the target (not for POST).
    pub id: Option<String>,
    /// Required for POST: how the answer is matched to the operation.
    pub bulk_id: Option<String>,
    /// `If-Match` of the operation (RFC 7644 §3.7: `version`).
    pub version: Option<String>,
    /// The resource (POST, PUT) or the PatchOp message (PATCH).
    pub data: Option<Value>,
}

/// The target's answer to one operation.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkOutcome {
    pub status: u16,
    pub location: Option<String>,
    pub version: Option<String>,
    /// The resource (on success, when the target includes it) or the SCIM Error.
    pub response: Option<Value>,
}

impl BulkOutcome {
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The resource id: the `response`'s `id`, else the last segment of `location`.
    pub fn resource_id(&self) -> Option<String> {
        self.response
            .as_ref()
            .and_then(|r| lookup(r, "id"))
            .and_then(Value::as_str)
            .or_else(|| self.location.as_deref().and_then(|l| l.trim_end_matches('/').rsplit('/').next()))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    /// The operation's failure, classified like the same request on its own.
    pub(crate) fn error(&self, scrub: &Scrubber<'_>) -> ClientError {
        let get =
            |k: &str| self.response.as_ref().and_then(|r| lookup(r, k)).and_then(Value::as_str).map(|s| scrub.clean(s));
        ClientError::from_status(
            self.status,
            get("scimType").filter(|s| !s.is_empty()),
            get("detail").unwrap_or_default(),
            None,
        )
    }
}

/// What identifies a sent operation in the answer: method, bulkId, path.
type OpKey = (String, Option<String>, Option<String>);

/// Pairs each sent operation with its answer: by `bulkId`, else by method and the
/// `location` ending in the operation's path, else by position.
fn match_answers(keys: &[OpKey], answers: &[Value]) -> Vec<Option<BulkOutcome>> {
    let n = keys.len();
    let mut out: Vec<Option<BulkOutcome>> = vec![None; n];
    for (pos, r) in answers.iter().enumerate() {
        let s = |k: &str| lookup(r, k).and_then(Value::as_str).map(str::to_owned);
        let Some(status) = status_of(lookup(r, "status")) else { continue };
        let method = s("method").unwrap_or_default();
        let bulk_id = s("bulkId");
        let location = s("location");
        let free = |i: &usize| out[*i].is_none();
        let by_bulk_id = bulk_id.as_ref().and_then(|b| (0..n).filter(free).find(|i| keys[*i].1.as_ref() == Some(b)));
        let by_location = || {
            let loc = location.as_deref()?;
            (0..n).filter(free).find(|i| {
                keys[*i].0.eq_ignore_ascii_case(&method)
                    && keys[*i].1.is_none()
                    && keys[*i].2.as_deref().is_some_and(|p| loc.trim_end_matches('/').ends_with(p))
            })
        };
        let by_position = || {
            (pos < n && free(&pos) && (method.is_empty() || keys[pos].0.eq_ignore_ascii_case(&method))).then_some(pos)
        };
        if let Some(i) = by_bulk_id.or_else(by_location).or_else(by_position) {
            out[i] =
                Some(BulkOutcome { status, location, version: s("version"), response: lookup(r, "response").cloned() });
        }
    }
    out
}

/// A status given as a number or a string (RFC 7644's examples use `"201"`).
fn status_of(v: Option<&Value>) -> Option<u16> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl ScimClient {
    /// Whether `/Bulk` may be used: advertised, more than one operation allowed, and not
    /// found unusable by this client.
    pub fn bulk_limit(&self) -> Option<(usize, usize)> {
        let caps = self.capabilities()?;
        if !caps.bulk.supported || caps.bulk.max_operations < 2 || self.bulk_broken.load(Ordering::Relaxed) {
            return None;
        }
        let ops = usize::try_from(caps.bulk.max_operations).unwrap_or(usize::MAX);
        let bytes = match caps.bulk.max_payload_size {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        Some((ops, bytes))
    }

    /// The failure of one operation, its detail scrubbed of our credentials.
    pub fn bulk_error(&self, o: &BulkOutcome) -> ClientError {
        o.error(&self.auth.scrubber())
    }

    /// Stops using `/Bulk` (the target rejected a well-formed request as a whole) until
    /// the client is built again.
    pub fn disable_bulk(&self) {
        self.bulk_broken.store(true, Ordering::Relaxed);
    }

    /// The JSON of one operation, as sent.
    pub fn bulk_operation(&self, op: &BulkOp) -> Result<Value, ClientError> {
        let ep = self.endpoint(op.kind)?;
        let path = match &op.id {
            Some(id) => {
                // The id as a path segment, escaped like the URL of the same single request.
                let url = self.url(&[&ep, id])?;
                let base = self.base.path().trim_end_matches('/');
                url.path().strip_prefix(base).unwrap_or(url.path()).to_owned()
            }
            None => format!("/{ep}"),
        };
        let mut v = json!({"method": op.method.as_str(), "path": path});
        if let Some(b) = &op.bulk_id {
            v["bulkId"] = json!(b);
        }
        if let Some(ver) = &op.version {
            v["version"] = json!(ver);
        }
        if let Some(d) = &op.data {
            v["data"] = d.clone();
        }
        Ok(v)
    }

    /// `POST /Bulk` with `operations` (from [`bulk_operation`](Self::bulk_operation)), all
    /// attempted (no `failOnErrors`). Returns the answer to each operation in order: matched
    /// by `bulkId`, else by method and location, else by position; `None` for an operation
    /// the answer does not mention. An error is the request's own (5xx, 429, timeout, …).
    pub async fn bulk(&self, operations: Vec<Value>) -> Result<Vec<Option<BulkOutcome>>, ClientError> {
        let keys: Vec<OpKey> = operations
            .iter()
            .map(|o| {
                let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
                (s("method").unwrap_or_default(), s("bulkId"), s("path"))
            })
            .collect();
        let body = json!({"schemas": [BULK_REQUEST], "Operations": operations});
        let a = self.call(Method::POST, &["Bulk"], &[], Some(&body), None).await?;
        let doc = self.json(&a)?;
        let Some(answers) = lookup(&doc, "Operations").and_then(Value::as_array) else {
            return Err(ClientError::Protocol { message: "a bulk answer must have Operations".into() });
        };
        Ok(match_answers(&keys, answers))
    }

    /// The resources whose `attr` equals each of `values` (several for an ambiguous value),
    /// with one `or`-joined filter
    /// per [`LOOKUP_CHUNK`] values. As with [`find_one`](Self::find_one), every answer is
    /// checked with fedkey's evaluator. Where the target cannot answer such a filter
    /// (no filter support, a rejected `or`, a truncated page), the values concerned are
    /// looked up one by one. `id` lookups fall back to `GET /Users/{id}`; values that
    /// match nothing are absent.
    pub async fn find_many(
        &self,
        kind: ResourceKind,
        attr: &str,
        values: &[String],
    ) -> Result<HashMap<String, Vec<Remote>>, ClientError> {
        let mut found: HashMap<String, Vec<Remote>> = HashMap::new();
        let caps = self.capabilities();
        let filter_ok = caps.as_ref().is_none_or(|c| c.filter.supported) && !self.or_broken.load(Ordering::Relaxed);
        let max_results = caps.map(|c| c.filter.max_results).filter(|n| *n > 0).unwrap_or(u64::MAX);
        let chunk = LOOKUP_CHUNK.min(usize::try_from(max_results / 2).unwrap_or(LOOKUP_CHUNK)).max(1);
        let mut one_by_one: Vec<&String> = Vec::new();
        for part in values.chunks(chunk) {
            if !filter_ok || part.len() == 1 {
                one_by_one.extend(part);
                continue;
            }
            let mut matchers = Vec::with_capacity(part.len());
            let mut terms = Vec::with_capacity(part.len());
            for v in part {
                // A JSON string literal is exactly a SCIM compValue: `"` and `\` escaped.
                let text = format!("{attr} eq {}", Value::String(v.clone()));
                let m = filter::parse(&text)
                    .ok()
                    .filter(|f| matches!(f, Filter::Compare(..)))
                    .and_then(|f| eval::compile(kind.resource_type(), &f).ok())
                    .ok_or_else(|| ClientError::Config { message: format!("cannot look resources up by {attr:?}") })?;
                matchers.push((v, m));
                terms.push(text);
            }
            let count = (part.len() as u64 * 2).min(max_results);
            let q = [("filter", terms.join(" or ")), ("count", count.to_string())];
            let page = match self.list(kind, &q).await {
                Ok(p) => p,
                Err(ClientError::Rejected { status: 400 | 403 | 413 | 414 | 501, .. }) => {
                    // The target cannot take such a filter: never try again on this client.
                    self.or_broken.store(true, Ordering::Relaxed);
                    one_by_one.extend(part);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let complete = page.total_results <= page.resources.len() as u64;
            for r in page.resources {
                for (v, m) in &matchers {
                    if m.matches(&r.body) {
                        found.entry((*v).clone()).or_default().push(r.clone());
                    }
                }
            }
            if !complete {
                one_by_one.extend(part.iter().filter(|v| !found.contains_key(*v)));
            }
        }
        for v in one_by_one {
            let hit = if attr == "id" {
                match self.get(kind, v).await {
                    Ok(r) => Some(r),
                    Err(ClientError::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                }
            } else {
                let all = self.find_all(kind, attr, v).await?;
                if !all.is_empty() {
                    found.insert(v.clone(), all);
                }
                continue;
            };
            if let Some(r) = hit {
                found.insert(v.clone(), vec![r]);
            }
        }
        Ok(found)
    }
}

/// A remote resource from a successful bulk answer, `fallback` being the body sent.
pub fn remote_of(outcome: &BulkOutcome, fallback: &Value) -> Result<Remote, ClientError> {
    let id = outcome
        .resource_id()
        .ok_or_else(|| ClientError::Protocol { message: "a bulk answer gives neither location nor id".into() })?;
    let mut body = outcome.response.clone().filter(Value::is_object).unwrap_or_else(|| fallback.clone());
    if let Some(o) = body.as_object_mut() {
        o.insert("id".into(), Value::String(id));
    }
    remote_from(body, outcome.version.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(method: &str, bulk_id: Option<&str>, path: &str) -> OpKey {
        (method.into(), bulk_id.map(str::to_owned), Some(path.into()))
    }

    #[test]
    fn answers_pair_by_bulk_id_then_location_then_position() {
        let keys = [
            key("POST", Some("u0"), "/Users"),
            key("PATCH", None, "/Users/r-1"),
            key("DELETE", None, "/Users/r-2"),
            key("POST", Some("u3"), "/Users"),
        ];
        // Out of order, statuses as strings and numbers, one operation not answered.
        let answers = [
            json!({"method": "POST", "bulkId": "u3", "status": "201", "location": "https://app/scim/Users/n-3"}),
            json!({"method": "PATCH", "status": 200, "location": "https://app/scim/Users/r-1/",
                   "response": {"id": "r-1", "title": "x"}}),
            json!({"method": "POST", "bulkId": "u0", "status": "409",
                   "response": {"scimType": "uniqueness", "detail": "taken fk_secret"}}),
            json!({"method": "DELETE", "status": "bogus"}),
        ];
        let out = match_answers(&keys, &answers);
        let o3 = out[3].as_ref().unwrap();
        assert!(o3.succeeded());
        assert_eq!(o3.resource_id().as_deref(), Some("n-3"));
        let o1 = out[1].as_ref().unwrap();
        assert_eq!((o1.status, o1.resource_id().as_deref()), (200, Some("r-1")));
        let o0 = out[0].as_ref().unwrap();
        assert!(!o0.succeeded());
        let e = o0.error(&crate::error::scrubber().with("fk_secret"));
        assert_eq!(e.to_string(), "conflict at the target (409, uniqueness): taken [redacted]");
        assert!(out[2].is_none(), "an unreadable status answers nothing");
    }

    #[test]
    fn answers_without_ids_pair_by_position_and_method() {
        let keys = [key("PATCH", None, "/Users/a"), key("DELETE", None, "/Users/b")];
        let out = match_answers(&keys, &[json!({"status": "204"}), json!({"method": "PATCH", "status": "200"})]);
        assert_eq!(out[0].as_ref().map(|o| o.status), Some(204), "no method given: position decides");
        assert!(out[1].is_none(), "a PATCH answer is not the DELETE's");
    }

    #[test]
    fn created_resource_from_location_or_response() {
        let sent = json!({"userName": "a"});
        let o = BulkOutcome {
            status: 201,
            location: Some("http://t/Users/abc".into()),
            version: Some("W/\"1\"".into()),
            response: None,
        };
        let r = remote_of(&o, &sent).unwrap();
        assert_eq!(
            (r.id.as_str(), r.body["userName"].as_str(), r.etag.as_deref()),
            ("abc", Some("a"), Some("W/\"1\""))
        );
        let o = BulkOutcome { status: 201, location: None, version: None, response: None };
        assert!(remote_of(&o, &sent).is_err(), "neither location nor id");
    }
}

//! Stream configuration objects (SSF 1.0 §8.1.1): what a receiver may send when it creates,
//! updates (PATCH) or replaces (PUT) a stream, checked before anything is stored, and the
//! object fedkey answers with. No I/O here: the handlers check URLs against the egress
//! policy and talk to the store.

use serde_json::{Map, Value, json};

use super::error::SsfError;
use super::events;

/// Event types a receiver may list in `events_requested`, at most.
pub const MAX_EVENTS_REQUESTED: usize = 32;
/// Longest event-type URI accepted.
const MAX_URI: usize = 256;
/// Longest `description` kept; longer ones are truncated (§8.1.1 allows it).
pub const MAX_DESCRIPTION: usize = 256;
/// Longest push `endpoint_url`.
const MAX_URL: usize = 2048;
/// Longest push `authorization_header` value.
const MAX_AUTHORIZATION: usize = 4096;

/// Properties only the transmitter sets. A receiver may echo them back on update, but they
/// must then match (§8.1.1.3, §8.1.1.4).
const TRANSMITTER_SUPPLIED: [&str; 6] =
    ["iss", "aud", "events_supported", "events_delivered", "min_verification_interval", "inactivity_timeout"];

/// How a stream delivers, as the receiver asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// RFC 8935: fedkey POSTs each SET to the receiver's `endpoint_url`.
    Push { endpoint_url: String, authorization: Authorization },
    /// RFC 8936: the receiver polls fedkey's endpoint for the stream.
    Poll,
}

/// The push `authorization_header`: write-only (never shown back), so a receiver that reads
/// the configuration and writes it back does not erase it by leaving it out.
#[derive(Debug, Clone, PartialEq)]
pub enum Authorization {
    /// Not in the request: keep the stream's header if the endpoint is unchanged, else none.
    Unchanged,
    /// `null`: send no Authorization header.
    Remove,
    Set(String),
}

/// The receiver-supplied part of a request; `None` leaves a property as it is (PATCH).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requested {
    pub events_requested: Option<Vec<String>>,
    pub delivery: Option<Delivery>,
    /// `Some(None)`: remove the description.
    pub description: Option<Option<String>>,
}

/// A create request (POST). Missing delivery is poll (§8.1.1.1) and a missing description
/// none; missing `events_requested` stays `None`, for the caller's default (every
/// supported type).
pub fn parse_create(body: &Value) -> Result<Requested, SsfError> {
    let obj = object(body)?;
    let mut r = receiver_supplied(obj)?;
    r.delivery.get_or_insert(Delivery::Poll);
    r.description.get_or_insert(None);
    Ok(r)
}

/// The `stream_id` of an update or replace request.
pub fn stream_id(body: &Value) -> Result<String, SsfError> {
    match object(body)?.get("stream_id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => Ok(s.clone()),
        Some(_) => Err(SsfError::invalid("stream_id must be a non-empty string")),
        None => Err(SsfError::invalid("stream_id is required")),
    }
}

/// An update (PATCH, `replace` false: missing properties unchanged) or a replace (PUT,
/// `replace` true: missing receiver-supplied properties removed, i.e. back to their
/// defaults as on create; `events_requested` stays `None` for the caller). `current` is the
/// configuration as fedkey renders it now: transmitter-supplied properties in the request
/// must equal it.
pub fn parse_change(body: &Value, current: &Value, replace: bool) -> Result<Requested, SsfError> {
    let obj = object(body)?;
    for name in TRANSMITTER_SUPPLIED {
        if let Some(v) = obj.get(name)
            && current.get(name) != Some(v)
        {
            return Err(SsfError::invalid(format!(
                "{name} is set by the transmitter and does not match the stream's value; leave it out"
            )));
        }
    }
    let mut r = receiver_supplied(obj)?;
    if let (Some(Delivery::Poll), Some(Value::Object(d))) = (&r.delivery, obj.get("delivery"))
        && let Some(url) = d.get("endpoint_url")
        && current["delivery"]["method"] == events::POLL
        && current["delivery"].get("endpoint_url") != Some(url)
    {
        return Err(SsfError::invalid("delivery.endpoint_url of a poll stream is set by the transmitter"));
    }
    if replace {
        r.delivery.get_or_insert(Delivery::Poll);
        r.description.get_or_insert(None);
    }
    Ok(r)
}

fn object(body: &Value) -> Result<&Map<String, Value>, SsfError> {
    body.as_object().ok_or_else(|| SsfError::invalid("the request body must be a JSON object"))
}

fn receiver_supplied(obj: &Map<String, Value>) -> Result<Requested, SsfError> {
    Ok(Requested {
        events_requested: obj.get("events_requested").map(events_requested).transpose()?,
        delivery: obj.get("delivery").map(delivery).transpose()?,
        description: obj.get("description").map(description).transpose()?,
    })
}

/// A list of event-type URIs, without duplicates, in the order given. Types fedkey does not
/// know are kept (and echoed) but never delivered: §8.1.1 has the transmitter ignore them.
fn events_requested(v: &Value) -> Result<Vec<String>, SsfError> {
    let items = v.as_array().ok_or_else(|| SsfError::invalid("events_requested must be an array of URIs"))?;
    if items.len() > MAX_EVENTS_REQUESTED {
        return Err(SsfError::invalid(format!("events_requested lists more than {MAX_EVENTS_REQUESTED} event types")));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let uri = item.as_str().ok_or_else(|| SsfError::invalid("events_requested must be an array of URIs"))?;
        if uri.is_empty() || uri.len() > MAX_URI || uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(SsfError::invalid(format!(
                "events_requested: each event type is a URI of 1 to {MAX_URI} characters without spaces"
            )));
        }
        if !out.iter().any(|o| o == uri) {
            out.push(uri.to_owned());
        }
    }
    Ok(out)
}

fn delivery(v: &Value) -> Result<Delivery, SsfError> {
    let d = v.as_object().ok_or_else(|| SsfError::invalid("delivery must be an object with a method"))?;
    let method = d.get("method").and_then(Value::as_str).ok_or_else(|| {
        SsfError::invalid(format!("delivery.method is required: {} (push) or {} (poll)", events::PUSH, events::POLL))
    })?;
    match method {
        events::PUSH => {
            let url = d
                .get("endpoint_url")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .ok_or_else(|| SsfError::invalid("delivery.endpoint_url is required for push delivery"))?;
            if url.len() > MAX_URL {
                return Err(SsfError::invalid(format!("delivery.endpoint_url is longer than {MAX_URL} characters")));
            }
            let authorization = match d.get("authorization_header") {
                None => Authorization::Unchanged,
                Some(Value::Null) => Authorization::Remove,
                Some(Value::String(h)) => Authorization::Set(header_value(h)?),
                Some(_) => return Err(SsfError::invalid("delivery.authorization_header must be a string")),
            };
            Ok(Delivery::Push { endpoint_url: url.to_owned(), authorization })
        }
        events::POLL => {
            if d.get("authorization_header").is_some_and(|h| !h.is_null()) {
                return Err(SsfError::invalid(
                    "delivery.authorization_header applies to push delivery only; a poll receiver authenticates as for stream management",
                ));
            }
            Ok(Delivery::Poll)
        }
        other => Err(SsfError::invalid(format!(
            "delivery method {:?} is not supported: use {} (push) or {} (poll)",
            shorten(other),
            events::PUSH,
            events::POLL
        ))),
    }
}

/// An `Authorization` header value fedkey will send: visible ASCII and spaces only, so it
/// cannot split or add headers. The error never repeats the value (it is a credential).
fn header_value(h: &str) -> Result<String, SsfError> {
    let h = h.trim();
    if h.is_empty() || h.len() > MAX_AUTHORIZATION || !h.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(SsfError::invalid(format!(
            "delivery.authorization_header must be 1 to {MAX_AUTHORIZATION} printable ASCII characters"
        )));
    }
    Ok(h.to_owned())
}

fn description(v: &Value) -> Result<Option<String>, SsfError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.chars().any(char::is_control) => {
            Err(SsfError::invalid("description must not contain control characters"))
        }
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.trim().chars().take(MAX_DESCRIPTION).collect())),
        _ => Err(SsfError::invalid("description must be a string")),
    }
}

fn shorten(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// What fedkey shows of a stream (the receiver-visible half of its row).
pub struct View<'a> {
    pub stream_id: &'a str,
    pub issuer: &'a str,
    pub audience: &'a Value,
    /// `Push(endpoint_url)` or `Poll(fedkey's poll URL for the stream)`.
    pub delivery: ViewDelivery<'a>,
    pub events_requested: &'a [String],
    pub description: Option<&'a str>,
}

pub enum ViewDelivery<'a> {
    Push(&'a str),
    Poll(&'a str),
}

/// The stream configuration object (§8.1.1). The push `authorization_header` is never
/// included: it is a credential of the receiver's endpoint.
pub fn render(v: &View<'_>) -> Value {
    let delivery = match v.delivery {
        ViewDelivery::Push(url) => json!({"method": events::PUSH, "endpoint_url": url}),
        ViewDelivery::Poll(url) => json!({"method": events::POLL, "endpoint_url": url}),
    };
    let mut out = json!({
        "stream_id": v.stream_id,
        "iss": v.issuer,
        "aud": v.audience,
        "delivery": delivery,
        "events_supported": events::SUPPORTED,
        "events_requested": v.events_requested,
        "events_delivered": events::delivered(v.events_requested),
        "min_verification_interval": super::MIN_VERIFICATION_INTERVAL.as_secs(),
    });
    if let Some(d) = v.description {
        out["description"] = json!(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> Value {
        render(&View {
            stream_id: "s1",
            issuer: "https://fedkey.example/ssf/acme",
            audience: &json!("receiver"),
            delivery: ViewDelivery::Poll("https://fedkey.example/ssf/acme/poll/s1"),
            events_requested: &[events::SESSION_REVOKED.to_owned(), "urn:example:unknown".to_owned()],
            description: Some("mine"),
        })
    }

    #[test]
    fn create_defaults_to_poll() {
        let r = parse_create(&json!({})).unwrap();
        assert_eq!(r.delivery, Some(Delivery::Poll));
        assert_eq!(r.events_requested, None);
        assert_eq!(r.description, Some(None));
    }

    #[test]
    fn create_push_with_header_and_deduplicated_events() {
        let r = parse_create(&json!({
            "delivery": {"method": events::PUSH, "endpoint_url": " https://rx.example/events ", "authorization_header": "Bearer abc"},
            "events_requested": [events::ACCOUNT_DISABLED, events::ACCOUNT_DISABLED, "urn:example:other"],
            "description": "  x ",
        }))
        .unwrap();
        assert_eq!(
            r.delivery,
            Some(Delivery::Push {
                endpoint_url: "https://rx.example/events".into(),
                authorization: Authorization::Set("Bearer abc".into())
            })
        );
        assert_eq!(r.events_requested.unwrap(), vec![events::ACCOUNT_DISABLED.to_owned(), "urn:example:other".into()]);
        assert_eq!(r.description, Some(Some("x".into())));
    }

    #[test]
    fn hostile_or_malformed_input_is_a_clear_400() {
        let cases = [
            (json!([]), "JSON object"),
            (json!({"delivery": "push"}), "delivery must be an object"),
            (json!({"delivery": {}}), "delivery.method is required"),
            (json!({"delivery": {"method": "urn:example:smtp"}}), "is not supported"),
            (json!({"delivery": {"method": events::PUSH}}), "endpoint_url is required"),
            (
                json!({"delivery": {"method": events::PUSH, "endpoint_url": "https://a", "authorization_header": "a\r\nX-Evil: 1"}}),
                "printable ASCII",
            ),
            (
                json!({"delivery": {"method": events::PUSH, "endpoint_url": "https://a", "authorization_header": 7}}),
                "must be a string",
            ),
            (json!({"delivery": {"method": events::POLL, "authorization_header": "Bearer x"}}), "push delivery only"),
            (json!({"events_requested": "all"}), "array of URIs"),
            (json!({"events_requested": [1]}), "array of URIs"),
            (json!({"events_requested": ["has space"]}), "without spaces"),
            (
                json!({"events_requested": vec!["urn:x"; 33].iter().enumerate().map(|(i, _)| format!("urn:x:{i}")).collect::<Vec<_>>()}),
                "more than 32",
            ),
            (json!({"description": 5}), "must be a string"),
            (json!({"description": "a\u{0}b"}), "control characters"),
        ];
        for (body, want) in cases {
            let e = parse_create(&body).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{body}");
            assert!(e.description.contains(want), "{body}: {}", e.description);
        }
        // The credential is never echoed in an error.
        let e = parse_create(&json!({"delivery": {"method": events::PUSH, "endpoint_url": "https://a", "authorization_header": "Bearer s3cret\u{7}"}}))
            .unwrap_err();
        assert!(!e.description.contains("s3cret"));
    }

    #[test]
    fn long_descriptions_are_truncated() {
        let r = parse_create(&json!({"description": "é".repeat(1000)})).unwrap();
        assert_eq!(r.description.unwrap().unwrap().chars().count(), MAX_DESCRIPTION);
    }

    #[test]
    fn patch_changes_only_what_is_present_and_checks_echoed_transmitter_values() {
        let cur = current();
        let r = parse_change(&json!({"stream_id": "s1", "description": null}), &cur, false).unwrap();
        assert_eq!(r, Requested { description: Some(None), ..Requested::default() });
        // Echoing the whole current configuration is allowed…
        let mut echo = cur.clone();
        echo["description"] = json!("new");
        let r = parse_change(&echo, &cur, false).unwrap();
        assert_eq!(r.description, Some(Some("new".into())));
        assert_eq!(r.delivery, Some(Delivery::Poll));
        // …a changed transmitter-supplied value is not.
        for (k, v) in [("iss", json!("https://evil")), ("aud", json!(["x"])), ("events_delivered", json!([]))] {
            let mut bad = cur.clone();
            bad[k] = v;
            let e = parse_change(&bad, &cur, false).unwrap_err();
            assert!(e.description.starts_with(k), "{}", e.description);
        }
        let e = parse_change(
            &json!({"stream_id": "s1", "delivery": {"method": events::POLL, "endpoint_url": "https://rx.example/mine"}}),
            &cur,
            false,
        )
        .unwrap_err();
        assert!(e.description.contains("set by the transmitter"));
    }

    #[test]
    fn put_removes_what_is_missing() {
        let r = parse_change(&json!({"stream_id": "s1"}), &current(), true).unwrap();
        assert_eq!(r.events_requested, None);
        assert_eq!(r.delivery, Some(Delivery::Poll));
        assert_eq!(r.description, Some(None));
    }

    #[test]
    fn stream_id_is_required_and_a_string() {
        assert_eq!(stream_id(&json!({"stream_id": "abc"})).unwrap(), "abc");
        for b in [json!({}), json!({"stream_id": 5}), json!({"stream_id": ""}), json!("x")] {
            assert_eq!(stream_id(&b).unwrap_err().status.as_u16(), 400, "{b}");
        }
    }

    #[test]
    fn rendered_configuration_delivers_the_known_requested_types_and_hides_nothing_secret() {
        let c = current();
        assert_eq!(c["events_delivered"], json!([events::SESSION_REVOKED]));
        assert_eq!(c["events_requested"].as_array().unwrap().len(), 2);
        assert_eq!(c["delivery"]["method"], events::POLL);
        assert!(c["events_supported"].as_array().unwrap().len() >= 5);
        assert_eq!(c["min_verification_interval"], json!(super::super::MIN_VERIFICATION_INTERVAL.as_secs()));
        assert!(c.get("inactivity_timeout").is_none(), "not enforced, so not advertised");
    }
}

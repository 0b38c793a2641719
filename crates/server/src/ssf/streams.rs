//! The configuration endpoint (SSF 1.0 §8.1.1): create, read, update, replace and delete
//! a receiver's streams. Changes are audited by the store (`events.stream.*`) with the
//! receiver's key as the actor.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fedkey_crypto::Secret;
use fedkey_egress::policy::UrlRules;
use fedkey_store::ops::events::{
    Delivery as StoreDelivery, EventStream, EventStreamUpdate, NewEventStream, StreamKind, StreamStatus,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::{self, Authorization, Delivery, View, ViewDelivery};
use super::receiver::Receiver;
use super::{MAX_STREAMS_PER_RECEIVER, SsfError, Urls, events};
use crate::AppState;

#[derive(Deserialize)]
pub struct StreamQuery {
    stream_id: Option<String>,
}

/// The `stream_id` query parameter, or a readable 400 for a malformed query string.
pub fn query_stream_id(
    q: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Option<String>, SsfError> {
    let Query(q) = q.map_err(|_| SsfError::invalid("malformed query string"))?;
    match q.stream_id {
        Some(id) if id.is_empty() || id.len() > 128 => Err(SsfError::invalid("stream_id must be 1 to 128 characters")),
        other => Ok(other),
    }
}

/// A JSON request body, or a readable 400.
pub fn json_body(body: &Bytes) -> Result<Value, SsfError> {
    if body.is_empty() {
        return Err(SsfError::invalid("a JSON object is required as the request body"));
    }
    serde_json::from_slice(body).map_err(|e| SsfError::invalid(format!("the request body is not valid JSON: {e}")))
}

/// A management response: JSON, never cached (§8.1.1 examples).
pub fn no_store(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Stream `id` if it is an SSF stream of this receiver (trust) in this directory. Anything
/// else, including another receiver's stream, is 404.
pub async fn owned(s: &AppState, r: &Receiver, id: &str) -> Result<EventStream, SsfError> {
    match s.store.event_stream(id).await? {
        Some(st)
            if st.kind == StreamKind::Ssf
                && st.directory_id == r.principal.directory_id
                && st.receiver_trust_id.as_deref() == Some(r.principal.trust_id.as_str()) =>
        {
            Ok(st)
        }
        _ => Err(SsfError::no_stream()),
    }
}

/// The stream configuration object of a stored stream.
pub fn render(s: &AppState, st: &EventStream) -> Value {
    let urls = Urls::new(&s.public_url, &st.directory);
    let poll = urls.poll_endpoint(&st.id);
    let delivery = match (st.delivery, &st.endpoint_url) {
        (StoreDelivery::Push, Some(url)) => ViewDelivery::Push(url),
        _ => ViewDelivery::Poll(&poll),
    };
    config::render(&View {
        stream_id: &st.id,
        issuer: &urls.issuer,
        audience: &st.audience,
        delivery,
        events_requested: &st.events_requested,
        description: st.description.as_deref(),
    })
}

/// The event types to store for a request: the supported ones among those requested (§8.1.1:
/// others are ignored), every supported type when none were named. A request that names
/// only unsupported types would get nothing at all, which is refused rather than accepted.
fn requested_types(asked: Option<Vec<String>>) -> Result<Vec<String>, SsfError> {
    let Some(asked) = asked else { return Ok(events::SUPPORTED.iter().map(|e| (*e).to_owned()).collect()) };
    let kept: Vec<String> = events::delivered(&asked).into_iter().map(str::to_owned).collect();
    if kept.is_empty() {
        return Err(SsfError::invalid(format!(
            "events_requested names none of the event types this transmitter supports: {}",
            events::SUPPORTED.join(", ")
        )));
    }
    Ok(kept)
}

/// Checks a push endpoint as deliveries will: https, or http to a loopback host; no
/// credentials in the URL; a literal address not on the egress deny list. A receiver never
/// gets the lab opt-in for plain http.
fn check_endpoint(s: &AppState, url: &str) -> Result<String, SsfError> {
    s.egress
        .check_url(url, UrlRules::HTTPS_ONLY)
        .map(|u| u.to_string())
        .map_err(|e| SsfError::invalid(format!("delivery.endpoint_url: {e}")))
}

/// `POST {issuer}/streams`.
pub async fn create(
    State(s): State<AppState>,
    r: Receiver,
    Path(_directory): Path<String>,
    body: Bytes,
) -> Result<Response, SsfError> {
    let req = config::parse_create(&json_body(&body)?)?;
    let events_requested = requested_types(req.events_requested)?;
    let (delivery, endpoint_url, authorization) = match req.delivery {
        Some(Delivery::Push { endpoint_url, authorization }) => {
            let url = check_endpoint(&s, &endpoint_url)?;
            let auth = match authorization {
                Authorization::Set(h) => Some(Secret::new(h)),
                Authorization::Unchanged | Authorization::Remove => None,
            };
            (StoreDelivery::Push, Some(url), auth)
        }
        Some(Delivery::Poll) | None => (StoreDelivery::Poll, None, None),
    };
    let p = &r.principal;
    let mine = s.store.event_streams(&p.directory, Some(StreamKind::Ssf), Some(&p.trust_id)).await?;
    if mine.len() >= MAX_STREAMS_PER_RECEIVER {
        return Err(SsfError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("this receiver already has {} streams, the most allowed; update or delete one instead", mine.len()),
        ));
    }
    let new = NewEventStream {
        directory: p.directory.clone(),
        kind: StreamKind::Ssf,
        receiver_trust_id: Some(p.trust_id.clone()),
        delivery,
        endpoint_url,
        allow_http: false,
        authorization,
        // The receiver as fedkey knows it: the trust's name (its OAuth client_id).
        audience: json!(p.trust),
        events_requested,
        description: req.description.flatten(),
        status: StreamStatus::Enabled,
    };
    let st = s.store.create_event_stream(&r.actor, new).await?;
    Ok(no_store(StatusCode::CREATED, render(&s, &st)))
}

/// `GET {issuer}/streams[?stream_id=…]`: one configuration, or the list of this receiver's.
pub async fn read(
    State(s): State<AppState>,
    r: Receiver,
    Path(_directory): Path<String>,
    q: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, SsfError> {
    if let Some(id) = query_stream_id(q)? {
        let st = owned(&s, &r, &id).await?;
        return Ok(no_store(StatusCode::OK, render(&s, &st)));
    }
    let p = &r.principal;
    let all = s.store.event_streams(&p.directory, Some(StreamKind::Ssf), Some(&p.trust_id)).await?;
    Ok(no_store(StatusCode::OK, Value::Array(all.iter().map(|st| render(&s, st)).collect())))
}

/// `PATCH {issuer}/streams`: changes the properties present.
pub async fn update(
    State(s): State<AppState>,
    r: Receiver,
    Path(_directory): Path<String>,
    body: Bytes,
) -> Result<Response, SsfError> {
    change(&s, &r, &body, false).await
}

/// `PUT {issuer}/streams`: replaces the receiver-supplied properties.
pub async fn replace(
    State(s): State<AppState>,
    r: Receiver,
    Path(_directory): Path<String>,
    body: Bytes,
) -> Result<Response, SsfError> {
    change(&s, &r, &body, true).await
}

async fn change(s: &AppState, r: &Receiver, body: &Bytes, replace: bool) -> Result<Response, SsfError> {
    let body = json_body(body)?;
    let id = config::stream_id(&body)?;
    let cur = owned(s, r, &id).await?;
    let req = config::parse_change(&body, &render(s, &cur), replace)?;
    let mut u = EventStreamUpdate::default();
    if req.events_requested.is_some() || replace {
        u.events_requested = Some(requested_types(req.events_requested)?);
    }
    match req.delivery {
        Some(Delivery::Push { endpoint_url, authorization }) => {
            let url = check_endpoint(s, &endpoint_url)?;
            let same_endpoint =
                cur.delivery == StoreDelivery::Push && cur.endpoint_url.as_deref() == Some(url.as_str());
            u.authorization = match authorization {
                Authorization::Set(h) => Some(Some(Secret::new(h))),
                Authorization::Remove => Some(None),
                // Kept only for the endpoint it was given for: never sent to a new one.
                Authorization::Unchanged if same_endpoint => None,
                Authorization::Unchanged => Some(None),
            };
            u.delivery = Some(StoreDelivery::Push);
            u.endpoint_url = Some(Some(url));
        }
        Some(Delivery::Poll) => {
            u.delivery = Some(StoreDelivery::Poll);
            u.endpoint_url = Some(None);
            u.authorization = cur.has_authorization.then_some(None);
        }
        None => {}
    }
    u.description = req.description;
    let st = s.store.update_event_stream(&r.actor, &id, u).await?;
    Ok(no_store(StatusCode::OK, render(s, &st)))
}

/// `DELETE {issuer}/streams?stream_id=…`: the stream and its undelivered SETs.
pub async fn delete(
    State(s): State<AppState>,
    r: Receiver,
    Path(_directory): Path<String>,
    q: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, SsfError> {
    let id = query_stream_id(q)?.ok_or_else(|| SsfError::invalid("stream_id is required"))?;
    owned(&s, &r, &id).await?;
    s.store.delete_event_stream(&r.actor, &id).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

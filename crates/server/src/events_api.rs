//! Admin API of a directory's RFC 9967 event receivers, at
//! `/api/v1/directories/{d}/event-receivers`: streams of kind `scim` (SSF streams are
//! managed by their receivers through the SSF API). The push `Authorization` value is
//! write-only; a poll receiver's secret is shown once, when issued.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fedkey_api::DirectoryPath;
use fedkey_api::events::{EventReceiver, EventReceiverList, EventReceiverUpdate, NewEventReceiver, ReceiverPath};
use fedkey_crypto::Secret;
use fedkey_egress::UrlRules;
use fedkey_store::ops::events::SCIM_EVENT_TYPES;
use fedkey_store::ops::{Delivery, EventStream, EventStreamUpdate, NewEventStream, StreamKind, StreamStatus};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::admin::{Admin, Need, Target, ts};
use crate::error::ApiError;
use crate::events::set;
use crate::extract::ApiJson;

/// The routes, part of the admin API's route table.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
        .routes(routes!(new_poll_secret))
}

fn view(s: &AppState, e: &EventStream, poll_secret: Option<Secret>) -> EventReceiver {
    let base = s.public_url.trim_end_matches('/');
    EventReceiver {
        id: e.id.clone(),
        directory: e.directory.clone(),
        delivery: e.delivery.as_str().to_owned(),
        endpoint_url: e.endpoint_url.clone(),
        allow_http: e.allow_http,
        has_authorization: e.has_authorization,
        audience: e.audience.clone(),
        events: e.events_requested.clone(),
        status: e.status.as_str().to_owned(),
        status_reason: e.status_reason.clone(),
        description: e.description.clone(),
        consecutive_failures: e.consecutive_failures,
        last_error: e.last_error.clone(),
        last_delivered_at: ts(e.last_delivered_at),
        pending: e.pending,
        issuer: set::issuer(&s.public_url, e.kind, &e.directory),
        jwks_uri: set::jwks_uri(&s.public_url, &e.directory),
        poll_url: (e.delivery == Delivery::Poll).then(|| format!("{base}/events/{}/{}", e.directory, e.id)),
        poll_secret: poll_secret.map(|p| p.expose().to_owned()),
        created_at: e.created_at.to_rfc3339(),
        updated_at: e.updated_at.to_rfc3339(),
        updated_by: e.updated_by.clone(),
    }
}

fn delivery(v: &str) -> Result<Delivery, ApiError> {
    match v {
        "push" => Ok(Delivery::Push),
        "poll" => Ok(Delivery::Poll),
        _ => Err(ApiError::invalid_value("delivery must be push or poll")),
    }
}

/// The endpoint passes the egress policy (scheme, host, address literal) now, not only at
/// the first push.
fn check_endpoint(s: &AppState, url: &str, allow_http: bool) -> Result<(), ApiError> {
    s.egress
        .check_url(url, UrlRules { allow_http })
        .map(|_| ())
        .map_err(|e| ApiError::invalid_value(format!("endpoint_url: {e}")))
}

/// A header value that cannot smuggle another header.
fn authorization(v: String) -> Result<Secret, ApiError> {
    if v.is_empty() || v.len() > 2048 || v.chars().any(|c| !(' '..='~').contains(&c)) {
        return Err(ApiError::invalid_value("authorization must be 1 to 2048 printable ASCII characters"));
    }
    Ok(Secret::new(v))
}

/// A receiver of directory `d` (a stream of another directory or kind is not found).
async fn receiver(s: &AppState, d: &str, id: &str) -> Result<EventStream, ApiError> {
    match s.store.event_stream(id).await? {
        Some(e) if e.directory == d && e.kind == StreamKind::Scim => Ok(e),
        _ => Err(fedkey_store::StoreError::NotFound(format!("event receiver {id:?}")).into()),
    }
}

#[utoipa::path(get, path = "/directories/{d}/event-receivers", tag = "events", params(DirectoryPath), responses((status = 200, body = EventReceiverList)))]
async fn list(a: Admin, State(s): State<AppState>, Path(d): Path<String>) -> Result<Json<EventReceiverList>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "events.receiver.list", Target::dir(&d), async {
        let all = st.event_streams(&d, Some(StreamKind::Scim), None).await?;
        Ok(EventReceiverList { receivers: all.iter().map(|e| view(&s, e, None)).collect() })
    })
    .await
}

#[utoipa::path(post, path = "/directories/{d}/event-receivers", tag = "events", params(DirectoryPath), request_body = NewEventReceiver, responses((status = 201, body = EventReceiver)))]
async fn create(
    a: Admin,
    State(s): State<AppState>,
    Path(d): Path<String>,
    ApiJson(b): ApiJson<NewEventReceiver>,
) -> Result<(StatusCode, Json<EventReceiver>), ApiError> {
    let st = &s.store;
    a.change(st, Need::Administer, "events.receiver.create", Target::dir(&d), async {
        let how = delivery(&b.delivery)?;
        if let Some(u) = &b.endpoint_url {
            check_endpoint(&s, u, b.allow_http)?;
        }
        let audience = match (&b.audience, &b.endpoint_url) {
            (Some(v), _) => v.clone(),
            (None, Some(u)) => serde_json::json!(u),
            (None, None) => return Err(ApiError::invalid_value("audience is required for a poll receiver")),
        };
        let new = NewEventStream {
            directory: d.clone(),
            kind: StreamKind::Scim,
            receiver_trust_id: None,
            delivery: how,
            endpoint_url: b.endpoint_url.clone(),
            allow_http: b.allow_http,
            authorization: b.authorization.clone().map(authorization).transpose()?,
            audience,
            events_requested: b
                .events
                .clone()
                .unwrap_or_else(|| SCIM_EVENT_TYPES.iter().map(|e| (*e).to_owned()).collect()),
            description: b.description.clone(),
            status: StreamStatus::Enabled,
        };
        let e = st.create_event_stream(&a.actor(), new).await?;
        let secret = match how {
            Delivery::Poll => Some(st.issue_event_stream_poll_secret(&a.actor(), &e.id).await?),
            Delivery::Push => None,
        };
        let e = st.event_stream(&e.id).await?.unwrap_or(e);
        Ok((StatusCode::CREATED, Json(view(&s, &e, secret))))
    })
    .await
}

#[utoipa::path(get, path = "/directories/{d}/event-receivers/{id}", tag = "events", params(ReceiverPath), responses((status = 200, body = EventReceiver)))]
async fn show(
    a: Admin,
    State(s): State<AppState>,
    Path((d, id)): Path<(String, String)>,
) -> Result<Json<EventReceiver>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "events.receiver.show", Target::dir(&d), async {
        Ok(view(&s, &receiver(&s, &d, &id).await?, None))
    })
    .await
}

#[utoipa::path(put, path = "/directories/{d}/event-receivers/{id}", tag = "events", params(ReceiverPath), request_body = EventReceiverUpdate, responses((status = 200, body = EventReceiver)))]
async fn update(
    a: Admin,
    State(s): State<AppState>,
    Path((d, id)): Path<(String, String)>,
    ApiJson(b): ApiJson<EventReceiverUpdate>,
) -> Result<Json<EventReceiver>, ApiError> {
    let st = &s.store;
    a.change(st, Need::Administer, "events.receiver.update", Target::dir(&d), async {
        let cur = receiver(&s, &d, &id).await?;
        let status = b
            .status
            .as_deref()
            .map(|v| {
                StreamStatus::parse(v)
                    .ok_or_else(|| ApiError::invalid_value("status must be enabled, paused or disabled"))
            })
            .transpose()?;
        let how = b.delivery.as_deref().map(delivery).transpose()?;
        if let Some(u) = &b.endpoint_url {
            check_endpoint(&s, u, b.allow_http.unwrap_or(cur.allow_http))?;
        }
        if b.clear_authorization && b.authorization.is_some() {
            return Err(ApiError::invalid_value("give authorization or clear_authorization, not both"));
        }
        let u = EventStreamUpdate {
            delivery: how,
            endpoint_url: b.endpoint_url.clone().map(Some),
            allow_http: b.allow_http,
            authorization: match (&b.authorization, b.clear_authorization) {
                (Some(v), _) => Some(Some(authorization(v.clone())?)),
                (None, true) => Some(None),
                (None, false) => None,
            },
            audience: b.audience.clone(),
            events_requested: b.events.clone(),
            description: b.description.clone().map(Some),
        };
        let mut e = st.update_event_stream(&a.actor(), &id, u).await?;
        if let Some(status) = status.filter(|st| *st != e.status || b.status_reason.is_some()) {
            e = st.set_event_stream_status(&a.actor(), &id, status, b.status_reason.as_deref()).await?;
        }
        Ok(Json(view(&s, &e, None)))
    })
    .await
}

#[utoipa::path(delete, path = "/directories/{d}/event-receivers/{id}", tag = "events", params(ReceiverPath), responses((status = 204)))]
async fn remove(
    a: Admin,
    State(s): State<AppState>,
    Path((d, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let st = &s.store;
    a.change(st, Need::Administer, "events.receiver.delete", Target::dir(&d), async {
        receiver(&s, &d, &id).await?;
        st.delete_event_stream(&a.actor(), &id).await?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[utoipa::path(post, path = "/directories/{d}/event-receivers/{id}/poll-secret", tag = "events", params(ReceiverPath), responses((status = 200, body = EventReceiver)))]
async fn new_poll_secret(
    a: Admin,
    State(s): State<AppState>,
    Path((d, id)): Path<(String, String)>,
) -> Result<Json<EventReceiver>, ApiError> {
    let st = &s.store;
    a.change(st, Need::Administer, "events.receiver.poll_secret", Target::dir(&d), async {
        receiver(&s, &d, &id).await?;
        let secret = st.issue_event_stream_poll_secret(&a.actor(), &id).await?;
        let e = receiver(&s, &d, &id).await?;
        Ok(Json(view(&s, &e, Some(secret))))
    })
    .await
}

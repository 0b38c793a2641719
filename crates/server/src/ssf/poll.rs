//! RFC 8936 poll delivery of SSF streams: `POST {issuer}/streams/{stream_id}/poll`, the
//! stream's transmitter-supplied `delivery.endpoint_url`. The receiver authenticates as for
//! stream management (SSF 1.0 §7.1.1: the authorization schemes also protect the poll
//! endpoint) and polls only its own poll streams. Request, acknowledgements and answer are
//! the shared RFC 8936 machinery ([`crate::events::poll`]), so errors here use the RFC's
//! `{"err", "description"}` body.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use fedkey_store::ops::events::Delivery;

use super::SsfError;
use super::receiver::Receiver;
use super::streams::owned;
use crate::AppState;
use crate::events::poll::{parse_request, poll_core};

pub async fn poll(
    State(s): State<AppState>,
    r: Receiver,
    Path((_directory, stream_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, SsfError> {
    let st = owned(&s, &r, &stream_id).await?;
    if st.delivery != Delivery::Poll {
        return Err(SsfError::invalid("this stream uses push delivery; there is nothing to poll"));
    }
    let answer = match parse_request(&body) {
        Ok(req) => poll_core(&s, &st, &req).await,
        Err(e) => Err(e),
    };
    let mut resp = match answer {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    };
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

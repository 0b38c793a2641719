//! What every console page shares: the navigation bar, rendering a template into a
//! response, the HTML error page, and how times and links are written.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use fedkey_core::Timestamp;
use fedkey_store::StoreError;

use crate::error::ApiError;

/// The top bar: who is signed in, as what, and the CSRF token of the sign-out form.
#[derive(Clone)]
pub struct Nav {
    pub user: String,
    pub role: String,
    pub csrf: String,
    pub can_operate: bool,
    pub can_administer: bool,
    pub can_audit: bool,
    /// Which menu entry is the current page.
    pub active: &'static str,
}

/// A page that could not be shown: an HTML page with the status and a readable reason.
/// Internal details stay in the server log (see [`ApiError`]'s conversion).
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError { status, message: message.into() }
    }

    pub fn forbidden(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::BAD_REQUEST, message)
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            status: self.status.as_u16(),
            reason: self.status.canonical_reason().unwrap_or("Error"),
            message: &self.message,
        };
        match page.render() {
            Ok(body) => (self.status, Html(body)).into_response(),
            Err(_) => (self.status, self.message).into_response(),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError { status: e.status, message: e.message }
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> PageError {
        ApiError::from(e).into()
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> PageError {
        tracing::error!(error = %e, "console template failed to render");
        PageError::new(StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered; see the server log")
    }
}

/// An unknown console address.
pub async fn not_found() -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "there is no console page at this address")
}

/// Renders a page template.
pub fn render(t: &impl Template) -> Result<Response, PageError> {
    Ok(Html(t.render()?).into_response())
}

/// After a change: back to `to` (303, so a reload does not repeat the POST), with a notice
/// chosen from a fixed list (`?done=`), never text from the request.
pub fn done(to: &str, notice: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}done={notice}")).into_response()
}

/// The sentence a `?done=` code stands for.
pub fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "rotated" => "A new key version was created.",
        "rotation_started" => "Rotation started: the engine delivers the new version to the connectors.",
        "revoked" => "The key version was revoked.",
        "unchanged" => "That version had already expired; nothing changed.",
        "suspended" => "The trust is suspended: its keys no longer authenticate.",
        "resumed" => "The trust is active again.",
        "approved" => "The pending trust material was approved.",
        "rejected" => "The pending trust material was rejected.",
        "retried" => "The dead letters are queued for delivery again.",
        "discarded" => "The dead letters were discarded.",
        _ => return None,
    })
}

/// A time as `2026-12-07 20:53:01Z`, or `—`.
pub fn when(t: Option<Timestamp>) -> String {
    match t {
        Some(t) => {
            let s = t.to_rfc3339();
            // RFC 3339 with the `T` as a space and without sub-seconds reads better in a table.
            let s = s.replacen('T', " ", 1);
            match s.find('.') {
                Some(dot) => format!("{}Z", &s[..dot]),
                None => s,
            }
        }
        None => "—".to_owned(),
    }
}

/// A path segment, percent-encoded (names are validated, but a link must never break).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The console page of a trust.
pub fn trust_href(directory: &str, trust: &str) -> String {
    format!("/ui/trusts/{}/{}", seg(directory), seg(trust))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_without_fraction() {
        assert_eq!(when(None), "—");
        let t = Timestamp::parse_rfc3339("2026-12-07T20:53:01.123456Z").unwrap_or(Timestamp(0));
        assert_eq!(when(Some(t)), "2026-12-07 20:53:01Z");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(trust_href("acme", "okta-1"), "/ui/trusts/acme/okta-1");
    }

    #[test]
    fn unknown_notices_show_nothing() {
        assert!(notice(Some("<script>")).is_none());
        assert!(notice(Some("rotated")).is_some());
    }
}

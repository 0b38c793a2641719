//! RFC 9967 SCIM event receivers of a directory: `/directories/{d}/event-receivers`
//! (docs/events.md). A receiver gets signed SETs by push (RFC 8935) or poll (RFC 8936).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The path parameters that name a receiver.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReceiverPath {
    /// Directory name.
    pub d: String,
    /// Receiver (stream) id.
    pub id: String,
}

/// The body of `POST …/event-receivers`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEventReceiver {
    /// `push` (fedkey POSTs each SET to `endpoint_url`) or `poll` (the receiver fetches them).
    pub delivery: String,
    /// Push: the receiver's endpoint (https, or http to loopback / with `allow_http`).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Lab opt-in: plain http to a host that is not loopback.
    #[serde(default)]
    pub allow_http: bool,
    /// Push: the `Authorization` header value sent with each SET (write-only).
    #[serde(default)]
    pub authorization: Option<String>,
    /// The SETs' `aud`: a string or an array of strings (default: the endpoint URL).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub audience: Option<Value>,
    /// RFC 9967 event URIs to receive (default: all fedkey issues).
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
}

/// The body of `PUT …/event-receivers/{id}`: absent members stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventReceiverUpdate {
    #[serde(default)]
    pub delivery: Option<String>,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default)]
    pub allow_http: Option<bool>,
    /// A new `Authorization` value (write-only).
    #[serde(default)]
    pub authorization: Option<String>,
    /// Stop sending an `Authorization` header.
    #[serde(default)]
    pub clear_authorization: bool,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub audience: Option<Value>,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
    /// `enabled`, `paused` (events are held) or `disabled` (queued events are dropped).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub status_reason: Option<String>,
}

/// A receiver as the API shows it (never its secrets).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventReceiver {
    pub id: String,
    pub directory: String,
    pub delivery: String,
    pub endpoint_url: Option<String>,
    pub allow_http: bool,
    /// Whether pushes carry an `Authorization` header.
    pub has_authorization: bool,
    #[schema(value_type = Object)]
    pub audience: Value,
    pub events: Vec<String>,
    pub status: String,
    pub status_reason: Option<String>,
    pub description: Option<String>,
    /// Push failures in a row (0 after a delivery).
    pub consecutive_failures: i64,
    pub last_error: Option<String>,
    pub last_delivered_at: Option<String>,
    /// SETs queued, not yet delivered.
    pub pending: i64,
    /// The SETs' `iss`.
    pub issuer: String,
    /// Where the keys that verify the SETs are published.
    pub jwks_uri: String,
    /// Poll: the RFC 8936 endpoint.
    pub poll_url: Option<String>,
    /// Poll: the bearer secret for `poll_url`, shown only when issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub updated_by: String,
}

/// `GET …/event-receivers`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventReceiverList {
    pub receivers: Vec<EventReceiver>,
}

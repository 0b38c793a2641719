//! The facade's series: their help texts and the label sets that exist from start-up.
//! (The scrape-time gauges are in `gauges.rs`, the SCIM request counts in `metrics.rs`.)

use fedkey_core::{RotationKind, RotationStep};
use fedkey_store::auth::AuthFailure;

/// Buckets of every `*_seconds` histogram: 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Buckets of the batch-size histograms (records or writers per commit).
pub const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// At most this many objects (trusts, targets, connectors) per labelled gauge family; the
/// rest are left out (alphabetically last) and counted in `fedkey_metrics_objects_dropped`.
pub const MAX_OBJECTS: usize = 1000;

/// Alert kinds (`fedkey_rotation::alert::AlertKind`).
const ALERT_KINDS: [&str; 5] =
    ["rotation_failed", "wrapped_link_reused", "trust_material_held", "trust_material_expired", "leak_reported"];

/// Describes every facade series and registers its bounded label sets at zero, so each
/// family is on the page from the first scrape.
pub fn register() {
    use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

    describe_counter!("fedkey_http_requests_total", "HTTP requests answered, by method, route template and status.");
    // The route set is the router's; the scrape route exists from the start.
    counter!("fedkey_http_requests_total", "method" => "GET", "route" => "/metrics", "status" => "200").absolute(0);
    describe_histogram!(
        "fedkey_http_request_duration_seconds",
        "Time to answer an HTTP request, by route template (seconds)."
    );
    let _registered = histogram!("fedkey_http_request_duration_seconds", "route" => "/metrics");

    describe_gauge!("fedkey_ready", "1 when the database answers and writes (audit records included) go through.");
    gauge!("fedkey_ready").set(0.0);

    describe_counter!(
        "fedkey_security_event_pushes_total",
        "RFC 8935 SET pushes, by outcome (delivered, retry, refused)."
    );
    for outcome in ["delivered", "retry", "refused"] {
        counter!("fedkey_security_event_pushes_total", "outcome" => outcome).absolute(0);
    }
    describe_counter!("fedkey_scim_rate_limited_total", "SCIM requests refused by a trust's rate limit.");
    counter!("fedkey_scim_rate_limited_total").absolute(0);
    describe_counter!("fedkey_source_rate_limited_total", "Requests refused by the per-source limit, by API.");
    for api in ["scim", "admin"] {
        counter!("fedkey_source_rate_limited_total", "api" => api).absolute(0);
    }
    describe_counter!(
        "fedkey_source_limit_overflow_total",
        "Requests from sources beyond the tracked-source table, limited together."
    );
    counter!("fedkey_source_limit_overflow_total").absolute(0);

    describe_counter!("fedkey_key_authentications_total", "Provisioning-key authentications, by outcome.");
    describe_counter!("fedkey_jwt_authentications_total", "Federated-assertion (JWT) authentications, by outcome.");
    for outcome in ["success", "denied"] {
        counter!("fedkey_key_authentications_total", "outcome" => outcome).absolute(0);
        counter!("fedkey_jwt_authentications_total", "outcome" => outcome).absolute(0);
    }
    describe_counter!("fedkey_auth_failures_total", "Refused authentications, by API (scim, admin) and reason.");
    for api in ["scim", "admin"] {
        for f in AuthFailure::ALL {
            counter!("fedkey_auth_failures_total", "api" => api, "reason" => f.as_str()).absolute(0);
        }
    }
    counter!("fedkey_auth_failures_total", "api" => "scim", "reason" => "assertion_rejected").absolute(0);
    counter!("fedkey_auth_failures_total", "api" => "scim", "reason" => "access_token_rejected").absolute(0);
    describe_counter!("fedkey_oauth_tokens_total", "OAuth access-token requests, by outcome (issued, refused).");
    for outcome in ["issued", "refused"] {
        counter!("fedkey_oauth_tokens_total", "outcome" => outcome).absolute(0);
    }
    describe_counter!(
        "fedkey_auth_failures_summarized_total",
        "Refused authentications folded into a summary audit record instead of one record each."
    );
    counter!("fedkey_auth_failures_summarized_total").absolute(0);

    describe_counter!("fedkey_key_rotations_total", "Manual key rotations (`key rotate`).");
    counter!("fedkey_key_rotations_total", "kind" => "manual").absolute(0);
    describe_counter!("fedkey_rotations_started_total", "Engine rotations started, by kind.");
    describe_counter!("fedkey_rotations_finished_total", "Engine rotations finished, by kind.");
    for k in RotationKind::ALL {
        counter!("fedkey_rotations_started_total", "kind" => k.as_str()).absolute(0);
        counter!("fedkey_rotations_finished_total", "kind" => k.as_str()).absolute(0);
    }
    describe_counter!(
        "fedkey_rotations_total",
        "Engine rotation outcomes: succeeded (finished), failed (a step attempt failed), cancelled."
    );
    for result in ["succeeded", "failed", "cancelled"] {
        counter!("fedkey_rotations_total", "result" => result).absolute(0);
    }
    describe_counter!("fedkey_rotation_step_failures_total", "Failed rotation step attempts, by step.");
    for s in RotationStep::ALL {
        counter!("fedkey_rotation_step_failures_total", "step" => s.as_str()).absolute(0);
    }
    describe_counter!(
        "fedkey_connector_deliveries_total",
        "Key deliveries through rotation connectors, by connector kind and result."
    );
    for kind in fedkey_rotation::wiring::CONNECTOR_KINDS {
        for result in ["success", "failure"] {
            counter!("fedkey_connector_deliveries_total", "kind" => kind, "result" => result).absolute(0);
        }
    }
    describe_counter!("fedkey_alerts_total", "Alerts raised, by kind.");
    for kind in ALERT_KINDS {
        counter!("fedkey_alerts_total", "kind" => kind).absolute(0);
    }
    describe_counter!("fedkey_notify_events_total", "Notification events raised, by event, before de-duplication.");
    for event in fedkey_notify::EventKind::ALL {
        counter!("fedkey_notify_events_total", "event" => event.as_str()).absolute(0);
    }
    describe_counter!("fedkey_notifications_total", "Notifications, by channel and what became of them.");
    for channel in ["webhook", "chat", "email", "all"] {
        for result in ["sent", "failed", "delayed", "dropped", "duplicate"] {
            counter!("fedkey_notifications_total", "channel" => channel, "result" => result).absolute(0);
        }
    }
    describe_counter!("fedkey_leak_reports_total", "Leak reports received, by whether the key was ours.");
    for ours in ["true", "false"] {
        counter!("fedkey_leak_reports_total", "ours" => ours).absolute(0);
    }

    describe_counter!("fedkey_audit_records_total", "Audit records committed by the batching writer.");
    counter!("fedkey_audit_records_total").absolute(0);
    describe_counter!("fedkey_audit_write_failures_total", "Audit batches that could not be committed.");
    counter!("fedkey_audit_write_failures_total").absolute(0);
    describe_histogram!("fedkey_audit_batch_size", "Records per audit batch commit.");
    let _registered = histogram!("fedkey_audit_batch_size");
    describe_histogram!("fedkey_audit_append_seconds", "Time to commit one batch of audit records (seconds).");
    let _registered = histogram!("fedkey_audit_append_seconds");
    describe_histogram!("fedkey_db_group_commit_writers", "Writers' transactions carried per group commit.");
    let _registered = histogram!("fedkey_db_group_commit_writers");
}

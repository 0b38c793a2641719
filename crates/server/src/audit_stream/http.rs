//! HTTP collectors, through the egress client: a JSON array of records, or Splunk
//! HEC-compatible events. A batch is delivered when the collector answers 2xx.

use std::sync::Arc;
use std::time::Duration;

use fedkey_audit::Record;
use fedkey_egress::{Method, header};
use serde_json::{Value, json};

use super::settings::HttpSinkConfig;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Most of a collector's answer read (only to close the exchange cleanly).
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub(crate) enum HttpFormat {
    /// `[record, …]` in the export form.
    Json,
    /// `{"time":…,"host":…,"source":"fedkey","sourcetype":…,"event":record}` per record,
    /// one after another (HEC's batch form).
    Hec { sourcetype: String },
}

pub(crate) struct HttpSink {
    cfg: Arc<HttpSinkConfig>,
}

impl HttpSink {
    pub(super) fn new(cfg: Arc<HttpSinkConfig>) -> HttpSink {
        HttpSink { cfg }
    }

    pub(super) async fn send(&mut self, records: &[Record]) -> Result<(), String> {
        let c = &self.cfg;
        let body = body(&c.format, &c.hostname, records);
        let mut req = c
            .egress
            .request(Method::POST, &c.url, c.rules)
            .map_err(|e| e.to_string())?
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(a) = &c.authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let resp = c.egress.send(req, TIMEOUT).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let _ = fedkey_egress::read_capped(resp, MAX_ANSWER, TIMEOUT).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{} answered HTTP {}", fedkey_egress::shown(&c.url), status.as_u16()))
        }
    }
}

pub(crate) fn body(format: &HttpFormat, hostname: &str, records: &[Record]) -> Vec<u8> {
    match format {
        HttpFormat::Json => Value::Array(records.iter().map(Record::to_json).collect()).to_string().into_bytes(),
        HttpFormat::Hec { sourcetype } => {
            let mut out = Vec::new();
            for r in records {
                let ev = json!({
                    // Seconds with microseconds, as HEC takes it.
                    "time": format!("{}.{:06}", r.ts.0.div_euclid(1_000_000), r.ts.0.rem_euclid(1_000_000)).parse::<f64>().unwrap_or(0.0),
                    "host": hostname,
                    "source": "fedkey",
                    "sourcetype": sourcetype,
                    "event": r.to_json(),
                });
                out.extend_from_slice(ev.to_string().as_bytes());
                out.push(b'\n');
            }
            out
        }
    }
}

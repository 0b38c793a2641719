use fedkey_core::Timestamp;
use serde::Serialize;
use serde_json::Value;

/// `prev_hash` of the first record.
pub const GENESIS: [u8; 32] = [0u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// What a caller asks to record. `details` must never hold a secret: secret-bearing
/// values go in as HMAC fingerprints.
#[derive(Debug, Clone)]
pub struct Event {
    pub ts: Timestamp,
    pub actor: String,
    pub action: String,
    pub outcome: Outcome,
    pub directory: Option<String>,
    pub trust: Option<String>,
    pub key_version: Option<i64>,
    pub source: Option<String>,
    pub request_id: Option<String>,
    pub details: Value,
}

impl Event {
    pub fn new(ts: Timestamp, actor: impl Into<String>, action: impl Into<String>, outcome: Outcome) -> Event {
        Event {
            ts,
            actor: actor.into(),
            action: action.into(),
            outcome,
            directory: None,
            trust: None,
            key_version: None,
            source: None,
            request_id: None,
            details: Value::Object(Default::default()),
        }
    }

    pub fn directory(mut self, d: impl Into<String>) -> Self {
        self.directory = Some(d.into());
        self
    }

    pub fn trust(mut self, t: impl Into<String>) -> Self {
        self.trust = Some(t.into());
        self
    }

    pub fn key_version(mut self, v: i64) -> Self {
        self.key_version = Some(v);
        self
    }

    pub fn source(mut self, s: Option<String>) -> Self {
        self.source = s;
        self
    }

    pub fn request_id(mut self, r: Option<String>) -> Self {
        self.request_id = r;
        self
    }

    pub fn details(mut self, d: Value) -> Self {
        self.details = d;
        self
    }

    /// Seals the event as record `seq` after `prev_hash`.
    pub fn into_record(self, seq: i64, prev_hash: [u8; 32]) -> Record {
        let mut s = self.seal();
        s.link(seq, prev_hash);
        s.record
    }

    /// Encodes what the hash covers beyond the chain position, so that linking the event
    /// into the chain later costs one SHA-256 and nothing else. The group-commit writer
    /// seals events in the callers' tasks, before its turn.
    pub fn seal(self) -> Sealed {
        let record = Record {
            seq: 0,
            ts: self.ts,
            actor: self.actor,
            action: self.action,
            outcome: self.outcome,
            directory: self.directory,
            trust: self.trust,
            key_version: self.key_version,
            source: self.source,
            request_id: self.request_id,
            details: self.details.to_string(),
            prev_hash: GENESIS,
            hash: [0; 32],
        };
        let body = record.body();
        Sealed { record, body }
    }
}

/// An event encoded for the chain, waiting for its place in it ([`Sealed::link`]).
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The record; `seq`, `prev_hash` and `hash` are set by [`Sealed::link`].
    pub record: Record,
    /// [`Record::body`] of `record`: the same bytes whatever the position.
    body: Vec<u8>,
}

impl Sealed {
    /// Places the record at `seq` after `prev_hash` (again, if it was placed before) and
    /// returns its hash.
    pub fn link(&mut self, seq: i64, prev_hash: [u8; 32]) -> [u8; 32] {
        self.record.seq = seq;
        self.record.prev_hash = prev_hash;
        self.record.hash = link_hash(&prev_hash, seq, &self.body);
        self.record.hash
    }
}

/// The first bytes of every canonical encoding: the format's name and version.
const CANONICAL_TAG: &[u8] = b"fedkey-audit/v1\0";

/// `SHA-256(prev_hash ‖ canonical)`, with `canonical = tag ‖ seq ‖ body`.
fn link_hash(prev_hash: &[u8; 32], seq: i64, body: &[u8]) -> [u8; 32] {
    fedkey_crypto::sha256_parts(&[prev_hash, CANONICAL_TAG, &seq.to_be_bytes(), body])
}

/// A stored audit record. `details` is JSON text and is hashed as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: i64,
    pub ts: Timestamp,
    pub actor: String,
    pub action: String,
    pub outcome: Outcome,
    pub directory: Option<String>,
    pub trust: Option<String>,
    pub key_version: Option<i64>,
    pub source: Option<String>,
    pub request_id: Option<String>,
    pub details: String,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

impl Record {
    /// Length-prefixed encoding of every field but `hash` (and `prev_hash`, which the
    /// hash covers in front of it).
    pub fn canonical(&self) -> Vec<u8> {
        let body = self.body();
        let mut out = Vec::with_capacity(CANONICAL_TAG.len() + 8 + body.len());
        out.extend_from_slice(CANONICAL_TAG);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// The canonical encoding after `seq`: every field that does not depend on the
    /// record's position in the chain.
    fn body(&self) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, v: Option<&[u8]>) {
            match v {
                Some(b) => {
                    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
                    out.extend_from_slice(b);
                }
                None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
            }
        }
        let mut out = Vec::with_capacity(224 + self.details.len());
        out.extend_from_slice(&self.ts.0.to_be_bytes());
        field(&mut out, Some(self.actor.as_bytes()));
        field(&mut out, Some(self.action.as_bytes()));
        field(&mut out, Some(self.outcome.as_str().as_bytes()));
        field(&mut out, self.directory.as_deref().map(str::as_bytes));
        field(&mut out, self.trust.as_deref().map(str::as_bytes));
        let kv = self.key_version.map(i64::to_be_bytes);
        field(&mut out, kv.as_ref().map(|b| b.as_slice()));
        field(&mut out, self.source.as_deref().map(str::as_bytes));
        field(&mut out, self.request_id.as_deref().map(str::as_bytes));
        field(&mut out, Some(self.details.as_bytes()));
        out
    }

    pub fn compute_hash(&self) -> [u8; 32] {
        link_hash(&self.prev_hash, self.seq, &self.body())
    }

    /// The export form (JSON lines, the API, the streaming sinks). `details` appears once:
    /// parsed, when serializing it again gives back exactly the stored text that was
    /// hashed (always, for records fedkey wrote); otherwise verbatim as `details_text`.
    /// Either way [`Record::from_json`] rebuilds the record and its hash can be checked.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({
            "seq": self.seq,
            "ts": self.ts.to_rfc3339(),
            "ts_us": self.ts.0,
            "actor": self.actor,
            "action": self.action,
            "outcome": self.outcome,
            "directory": self.directory,
            "trust": self.trust,
            "key_version": self.key_version,
            "source": self.source,
            "request_id": self.request_id,
            "prev_hash": hex::encode(self.prev_hash),
            "hash": hex::encode(self.hash),
        });
        let parsed = serde_json::from_str::<Value>(&self.details)
            .ok()
            .filter(|d| serde_json::to_string(d).is_ok_and(|t| t == self.details));
        if let Value::Object(m) = &mut v {
            match parsed {
                Some(d) => m.insert("details".into(), d),
                None => m.insert("details_text".into(), Value::String(self.details.clone())),
            };
        }
        v
    }

    /// Rebuilds a record from its export form (see [`Record::to_json`]), for checking an
    /// export off-box: `compute_hash()` of the result must equal its `hash`.
    pub fn from_json(v: &Value) -> Result<Record, String> {
        let text = |k: &str| v[k].as_str().map(str::to_owned).ok_or_else(|| format!("{k}: missing or not a string"));
        let opt = |k: &str| match &v[k] {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(format!("{k}: not a string")),
        };
        let hash = |k: &str| -> Result<[u8; 32], String> {
            hex::decode(text(k)?).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| format!("{k}: not 32 hex bytes"))
        };
        let details = match (&v["details_text"], &v["details"]) {
            (Value::String(s), _) => s.clone(),
            (Value::Null, Value::Null) => return Err("details: missing".into()),
            (Value::Null, d) => d.to_string(),
            _ => return Err("details_text: not a string".into()),
        };
        Ok(Record {
            seq: v["seq"].as_i64().ok_or("seq: missing")?,
            ts: Timestamp(v["ts_us"].as_i64().ok_or("ts_us: missing")?),
            actor: text("actor")?,
            action: text("action")?,
            outcome: Outcome::parse(&text("outcome")?).ok_or("outcome: unknown")?,
            directory: opt("directory")?,
            trust: opt("trust")?,
            key_version: match &v["key_version"] {
                Value::Null => None,
                k => Some(k.as_i64().ok_or("key_version: not an integer")?),
            },
            source: opt("source")?,
            request_id: opt("request_id")?,
            details,
            prev_hash: hash("prev_hash")?,
            hash: hash("hash")?,
        })
    }

    /// One CSV row (RFC 4180) under [`CSV_HEADER`]; `details` is the stored JSON text.
    pub fn to_csv_row(&self) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let fields = [
            self.seq.to_string(),
            self.ts.to_rfc3339(),
            self.ts.0.to_string(),
            self.actor.clone(),
            self.action.clone(),
            self.outcome.as_str().to_owned(),
            opt(&self.directory),
            opt(&self.trust),
            self.key_version.map(|k| k.to_string()).unwrap_or_default(),
            opt(&self.source),
            opt(&self.request_id),
            self.details.clone(),
            hex::encode(self.prev_hash),
            hex::encode(self.hash),
        ];
        let mut row = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
        row.push_str("\r\n");
        row
    }
}

/// The header line of the CSV export (with its CRLF).
pub const CSV_HEADER: &str =
    "seq,ts,ts_us,actor,action,outcome,directory,trust,key_version,source,request_id,details,prev_hash,hash\r\n";

/// Quotes a field when it holds a comma, a quote or a line break (RFC 4180). A field that
/// a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) is quoted too, and
/// prefixed with `'`.
fn csv_field(f: &str) -> String {
    let formula = f.starts_with(['=', '+', '-', '@']);
    if formula {
        return format!("\"'{}\"", f.replace('"', "\"\""));
    }
    if f.contains([',', '"', '\n', '\r']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.to_owned() }
}

/// A signed statement that the chain had `size` records ending in `head_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub size: i64,
    pub head_hash: [u8; 32],
    pub ts: Timestamp,
    pub signature: Vec<u8>,
}

impl Checkpoint {
    pub fn sign(
        origin: &str,
        size: i64,
        head_hash: [u8; 32],
        ts: Timestamp,
        key: &fedkey_crypto::signing::SigningKey,
    ) -> Checkpoint {
        let sig = key.sign(&checkpoint_message(origin, size, &head_hash, ts));
        Checkpoint { size, head_hash, ts, signature: sig.to_vec() }
    }

    pub fn verify(&self, origin: &str, public_key: &[u8]) -> bool {
        fedkey_crypto::signing::verify(
            public_key,
            &checkpoint_message(origin, self.size, &self.head_hash, self.ts),
            &self.signature,
        )
    }
}

pub fn checkpoint_message(origin: &str, size: i64, head_hash: &[u8; 32], ts: Timestamp) -> Vec<u8> {
    format!("fedkey-audit-checkpoint/v1\n{origin}\n{size}\n{}\n{}\n", hex::encode(head_hash), ts.0).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(details: &str) -> Record {
        let mut r = Event::new(Timestamp(1_700_000_000_123_456), "token:ops", "trust.create", Outcome::Success)
            .directory("acme")
            .trust("=entra,\"x\"")
            .key_version(2)
            .into_record(7, [3; 32]);
        r.details = details.to_owned();
        r.hash = r.compute_hash();
        r
    }

    #[test]
    fn export_carries_details_once_and_rebuilds_the_hashed_record() {
        let r = record(r#"{"a":[1,2.5,"é\n"],"b":{"c":null}}"#);
        let v = r.to_json();
        assert!(v["details"].is_object() && v.get("details_text").is_none(), "{v}");
        let back = Record::from_json(&v).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.compute_hash(), r.hash);
        // Text that serde_json would write differently travels verbatim instead.
        let odd = record(r#"{ "b": 1, "a": 2 }"#);
        let v = odd.to_json();
        assert!(v.get("details").is_none() && v["details_text"].is_string(), "{v}");
        assert_eq!(Record::from_json(&v).unwrap().compute_hash(), odd.hash);
        // Through text, as a JSON line.
        let line = serde_json::to_string(&r.to_json()).unwrap();
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(Record::from_json(&parsed).unwrap().compute_hash(), r.hash);
    }

    /// The hash a sealed event gets when linked is the hash of the v1 format, written
    /// out here byte by byte (old logs must keep verifying), wherever it is linked.
    #[test]
    fn sealed_events_hash_as_the_v1_format_at_any_position() {
        let ev = Event::new(Timestamp(1_700_000_000_123_456), "token:ops", "key.authenticate", Outcome::Denied)
            .directory("acme")
            .key_version(3)
            .details(serde_json::json!({"reason": "unknown"}));
        let mut sealed = ev.clone().seal();
        for (seq, prev) in [(1, GENESIS), (42, [7; 32]), (i64::MAX, [0xff; 32])] {
            let mut expected = prev.to_vec();
            expected.extend_from_slice(b"fedkey-audit/v1\0");
            expected.extend_from_slice(&seq.to_be_bytes());
            expected.extend_from_slice(&1_700_000_000_123_456i64.to_be_bytes());
            for f in [Some(&b"token:ops"[..]), Some(b"key.authenticate"), Some(b"denied"), Some(b"acme"), None] {
                match f {
                    Some(b) => {
                        expected.extend_from_slice(&(b.len() as u32).to_be_bytes());
                        expected.extend_from_slice(b);
                    }
                    None => expected.extend_from_slice(&u32::MAX.to_be_bytes()),
                }
            }
            expected.extend_from_slice(&8u32.to_be_bytes());
            expected.extend_from_slice(&3i64.to_be_bytes());
            expected.extend_from_slice(&u32::MAX.to_be_bytes());
            expected.extend_from_slice(&u32::MAX.to_be_bytes());
            let details = br#"{"reason":"unknown"}"#;
            expected.extend_from_slice(&(details.len() as u32).to_be_bytes());
            expected.extend_from_slice(details);
            let want = fedkey_crypto::sha256(&expected);
            assert_eq!(sealed.link(seq, prev), want, "seq {seq}");
            assert_eq!((sealed.record.seq, sealed.record.prev_hash, sealed.record.hash), (seq, prev, want));
            assert_eq!(sealed.record.compute_hash(), want);
            assert_eq!(ev.clone().into_record(seq, prev), sealed.record);
        }
    }

    #[test]
    fn csv_rows_quote_what_needs_quoting() {
        let r = record(r#"{"k":"v,w"}"#);
        let row = r.to_csv_row();
        assert!(row.ends_with("\r\n"));
        assert_eq!(CSV_HEADER.split(',').count(), 14);
        assert!(
            row.starts_with("7,2023-11-14T22:13:20.123456Z,1700000000123456,token:ops,trust.create,success,acme,"),
            "{row}"
        );
        assert!(row.contains(r#","'=entra,""x""","#), "{row}");
        assert!(row.contains(r#",2,,,"{""k"":""v,w""}","#), "{row}");
    }
}

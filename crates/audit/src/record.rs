use fedkey_core::Timestamp;
use serde::Serialize;
use serde_json::Value;

use fedkey_crypto::sha256;

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
        let mut r = Record {
            seq,
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
            prev_hash,
            hash: [0; 32],
        };
        r.hash = r.compute_hash();
        r
    }
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
    /// Length-prefixed encoding of every field but `hash`.
    pub fn canonical(&self) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, v: Option<&[u8]>) {
            match v {
                Some(b) => {
                    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
                    out.extend_from_slice(b);
                }
                None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
            }
        }
        let mut out = Vec::with_capacity(256 + self.details.len());
        out.extend_from_slice(b"fedkey-audit/v1\0");
        out.extend_from_slice(&self.seq.to_be_bytes());
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
        let mut buf = self.prev_hash.to_vec();
        buf.extend_from_slice(&self.canonical());
        sha256(&buf)
    }

    /// The JSON-lines export form.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
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
            "details": serde_json::from_str::<Value>(&self.details).unwrap_or(Value::String(self.details.clone())),
            "details_text": self.details,
            "prev_hash": hex::encode(self.prev_hash),
            "hash": hex::encode(self.hash),
        })
    }
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

//! Offline verification: streams records in `seq` order and checks the chain and every
//! checkpoint. The first problem found is reported with the record it concerns.

use std::collections::BTreeMap;
use std::fmt;

use crate::{Checkpoint, GENESIS, Record};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    /// The record (or checkpoint size) where verification failed.
    pub seq: i64,
    pub reason: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit record {}: {}", self.seq, self.reason)
    }
}

impl std::error::Error for VerifyError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: i64,
    pub checkpoints: usize,
    pub head_hash: [u8; 32],
}

pub struct Verifier<'a> {
    origin: &'a str,
    public_key: &'a [u8],
    expected_seq: i64,
    prev_hash: [u8; 32],
    checkpoints: BTreeMap<i64, Checkpoint>,
    checked: usize,
}

impl<'a> Verifier<'a> {
    /// Checkpoint signatures are checked up front; their hashes as records stream by.
    pub fn new(origin: &'a str, public_key: &'a [u8], checkpoints: Vec<Checkpoint>) -> Result<Self, VerifyError> {
        let mut map = BTreeMap::new();
        for c in checkpoints {
            if !c.verify(origin, public_key) {
                return Err(VerifyError {
                    seq: c.size,
                    reason: "checkpoint signature is invalid (forged or altered checkpoint)".into(),
                });
            }
            map.insert(c.size, c);
        }
        Ok(Verifier { origin, public_key, expected_seq: 1, prev_hash: GENESIS, checkpoints: map, checked: 0 })
    }

    pub fn push(&mut self, r: &Record) -> Result<(), VerifyError> {
        let err = |seq, reason: String| Err(VerifyError { seq, reason });
        if r.seq != self.expected_seq {
            return if r.seq > self.expected_seq {
                err(
                    self.expected_seq,
                    format!("record is missing (sequence jumps from {} to {})", self.expected_seq - 1, r.seq),
                )
            } else {
                err(r.seq, format!("record is out of order or duplicated (expected {})", self.expected_seq))
            };
        }
        if r.prev_hash != self.prev_hash {
            return err(
                r.seq,
                format!("prev_hash does not match the hash of record {} (deleted, reordered or replaced)", r.seq - 1),
            );
        }
        if r.compute_hash() != r.hash {
            return err(r.seq, "hash does not match the record's contents (record altered)".into());
        }
        if let Some(c) = self.checkpoints.get(&r.seq) {
            if c.head_hash != r.hash {
                return err(r.seq, "hash differs from the signed checkpoint at this size".into());
            }
            self.checked += 1;
        }
        self.prev_hash = r.hash;
        self.expected_seq += 1;
        Ok(())
    }

    /// `head` is the stored chain head; records after the last checkpoint are only as
    /// trustworthy as it (export checkpoints off-box to close that window).
    pub fn finish(self, head: Option<(i64, [u8; 32])>) -> Result<VerifyReport, VerifyError> {
        let last = self.expected_seq - 1;
        if let Some((&size, _)) = self.checkpoints.range(last + 1..).next() {
            return Err(VerifyError {
                seq: last + 1,
                reason: format!("records {}..={size} are missing but covered by a signed checkpoint", last + 1),
            });
        }
        if let Some((seq, hash)) = head {
            if seq != last {
                return Err(VerifyError {
                    seq: seq.max(last),
                    reason: format!("the chain head says {seq} records, {last} found"),
                });
            }
            if seq > 0 && hash != self.prev_hash {
                return Err(VerifyError { seq, reason: "the last record's hash differs from the chain head".into() });
            }
        }
        let _ = (self.origin, self.public_key);
        Ok(VerifyReport { records: last, checkpoints: self.checked, head_hash: self.prev_hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Outcome};
    use fedkey_core::Timestamp;
    use fedkey_crypto::signing::SigningKey;

    fn chain(n: i64) -> Vec<Record> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let r = Event::new(Timestamp(seq * 10), "admin:root", "trust.create", Outcome::Success)
                    .directory("acme")
                    .details(serde_json::json!({"n": seq}))
                    .into_record(seq, prev);
                prev = r.hash;
                r
            })
            .collect()
    }

    fn run(
        records: &[Record],
        cps: Vec<Checkpoint>,
        key: &[u8],
        head: Option<(i64, [u8; 32])>,
    ) -> Result<VerifyReport, VerifyError> {
        let mut v = Verifier::new("origin", key, cps)?;
        for r in records {
            v.push(r)?;
        }
        v.finish(head)
    }

    #[test]
    fn intact_chain_verifies_with_checkpoints() {
        let (k, _) = SigningKey::generate().unwrap();
        let rs = chain(10);
        let cp = Checkpoint::sign("origin", 5, rs[4].hash, Timestamp(1), &k);
        let rep = run(&rs, vec![cp], &k.public_key(), Some((10, rs[9].hash))).unwrap();
        assert_eq!((rep.records, rep.checkpoints), (10, 1));
    }

    #[test]
    fn each_kind_of_tampering_names_the_record() {
        let (k, _) = SigningKey::generate().unwrap();
        let pk = k.public_key();
        let rs = chain(10);
        let head = Some((10, rs[9].hash));

        let mut altered = rs.clone();
        altered[3].actor = "admin:mallory".into();
        assert_eq!(run(&altered, vec![], &pk, head).unwrap_err().seq, 4);

        let mut deleted = rs.clone();
        deleted.remove(6);
        assert_eq!(run(&deleted, vec![], &pk, head).unwrap_err().seq, 7);

        let mut swapped = rs.clone();
        swapped.swap(2, 3);
        let (a, b) = (swapped[2].seq, swapped[3].seq);
        swapped[2].seq = b;
        swapped[3].seq = a;
        assert_eq!(run(&swapped, vec![], &pk, head).unwrap_err().seq, 3);

        let truncated = &rs[..8];
        assert!(run(truncated, vec![], &pk, head).is_err());

        let cp = Checkpoint::sign("origin", 10, rs[9].hash, Timestamp(1), &k);
        let e = run(truncated, vec![cp], &pk, None).unwrap_err();
        assert_eq!(e.seq, 9, "{e}");
    }

    #[test]
    fn forged_checkpoints_fail() {
        let (k, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let rs = chain(4);
        let forged = Checkpoint::sign("origin", 4, rs[3].hash, Timestamp(1), &other);
        assert!(run(&rs, vec![forged], &k.public_key(), None).unwrap_err().reason.contains("signature"));
        let mut cp = Checkpoint::sign("origin", 4, rs[3].hash, Timestamp(1), &k);
        cp.size = 3;
        assert!(run(&rs, vec![cp], &k.public_key(), None).is_err());
        let wrong_origin = Checkpoint::sign("elsewhere", 4, rs[3].hash, Timestamp(1), &k);
        assert!(run(&rs, vec![wrong_origin], &k.public_key(), None).is_err());
    }
}

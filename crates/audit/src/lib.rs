//! The tamper-evident audit log: records, their hash chain, signed checkpoints and the
//! offline verifier. Storage lives in `fedkey-store`; this crate is pure.
//!
//! `hash = SHA-256(prev_hash ‖ canonical(record))`, the first `prev_hash` being 32 zero
//! bytes. `canonical` is a length-prefixed encoding of every field (not JSON), so no
//! serializer setting can change what was hashed. A checkpoint signs
//! `fedkey-audit-checkpoint/v1\n{origin}\n{size}\n{hex head hash}\n{ts}\n` with the
//! install's Ed25519 key.

mod record;
mod verify;

pub use record::{CSV_HEADER, Checkpoint, Event, GENESIS, Outcome, Record, Sealed, checkpoint_message};
pub use verify::{Verifier, VerifyError, VerifyReport};

//! End-to-end tests of per-trust policy: privileged groups, source allow-lists, rate limits.

#[allow(unused_imports)]
use super::*;

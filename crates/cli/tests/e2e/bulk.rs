//! End-to-end tests of SCIM /Bulk (see ../e2e.rs for the harness).

#[allow(unused_imports)]
use super::*;

//! End-to-end tests: directory isolation and hostile input on the SCIM service.

#[allow(unused_imports)]
use super::*;

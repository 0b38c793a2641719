//! In-memory evaluation of SCIM filters against JSON resources (being written).

//! The SCIM PATCH engine (being written).

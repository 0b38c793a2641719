//! SCIM filter → SQL, for both backends (being written; see the SCIM service issue).
//!
//! Contract used by the server:
//! - `translate(backend, rt, filter)` → a `SqlFragment` condition over the row alias `r`
//!   of `scim_resources`, binds numbered from `$1`; errors are 400 `invalidFilter`.
//! - `order_by(backend, rt, path)` → a `sortBy` expression.
//! - `case_folded(rt, body)` → the body with every case-insensitive string lower-cased,
//!   stored as `body_ci` so case-insensitive comparisons agree across backends.

use fedkey_scim::ScimError;
use fedkey_scim::filter::{AttrPath, Filter};
use fedkey_scim::schema::ResourceTypeDef;
use serde_json::Value;

use crate::Backend;
use crate::scim::SqlFragment;

pub fn translate(_backend: Backend, _rt: &ResourceTypeDef, _filter: &Filter) -> Result<SqlFragment, ScimError> {
    Err(ScimError::new(400, Some(fedkey_scim::ScimType::InvalidFilter), "filters are not supported yet"))
}

pub fn order_by(_backend: Backend, _rt: &ResourceTypeDef, _path: &AttrPath) -> Result<SqlFragment, ScimError> {
    Err(ScimError::new(400, Some(fedkey_scim::ScimType::InvalidValue), "sortBy is not supported yet"))
}

pub fn case_folded(_rt: &ResourceTypeDef, body: &Value) -> Value {
    body.clone()
}

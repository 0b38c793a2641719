//! Which rows of an import batch create a user that nothing else touches: its `userName`
//! and `externalId` appear in no other row of the batch and in no stored user. Such rows
//! cannot match, or be matched by, anything else the batch does, so they are written
//! together in one transaction (two indexed lookups for the batch instead of two per row)
//! without changing what the row-by-row upsert would have done. Every other row — an
//! update, a duplicate, a group, a row that does not normalise — takes the row-by-row
//! path, which also reports its errors.

use std::collections::HashMap;

use fedkey_api::directories::ImportRow;
use fedkey_scim::resource::normalize;
use fedkey_scim::schema;
use fedkey_store::scim_sql::fold;
use fedkey_store::{Directory, StoreError};
use serde_json::Value;

use super::{MAX_ROW_BYTES, row_type};
use crate::AppState;

/// A user row's normalised body and the keys the upsert matches it on.
struct Candidate {
    body: Value,
    name: String,
    external_id: Option<String>,
}

fn candidate(row: &ImportRow) -> Option<Candidate> {
    if row_type(row).ok()? != "User" {
        return None;
    }
    // The row-by-row path reports an oversized resource.
    if serde_json::to_vec(&row.resource).map_or(true, |v| v.len() > MAX_ROW_BYTES) {
        return None;
    }
    let body = normalize(schema::resource_type("User")?, &row.resource).ok()?;
    let name = fold(body.get("userName")?.as_str()?);
    let external_id = body.get("externalId").and_then(Value::as_str).map(str::to_owned);
    Some(Candidate { body, name, external_id })
}

/// For each row, the normalised body of a user it creates on its own (see the module
/// comment), or `None` for the row-by-row path.
pub(super) async fn fresh_users(
    s: &AppState,
    dir: &Directory,
    rows: &[ImportRow],
) -> Result<Vec<Option<Value>>, StoreError> {
    let mut cands: Vec<Option<Candidate>> = rows.iter().map(candidate).collect();
    // Keys used more than once in the batch (a userName, or an externalId: the upsert
    // matches a user by either).
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut external_ids: HashMap<&str, usize> = HashMap::new();
    for c in cands.iter().flatten() {
        *names.entry(&c.name).or_default() += 1;
        if let Some(x) = &c.external_id {
            *external_ids.entry(x).or_default() += 1;
        }
    }
    let once = |c: &Candidate| {
        names.get(c.name.as_str()) == Some(&1)
            && c.external_id.as_deref().is_none_or(|x| external_ids.get(x) == Some(&1))
    };
    let unique: Vec<bool> = cands.iter().map(|c| c.as_ref().is_some_and(once)).collect();
    let asked_names: Vec<&str> = cands
        .iter()
        .zip(&unique)
        .filter(|(_, u)| **u)
        .filter_map(|(c, _)| c.as_ref())
        .map(|c| c.name.as_str())
        .collect();
    let asked_ext: Vec<&str> = cands
        .iter()
        .zip(&unique)
        .filter(|(_, u)| **u)
        .filter_map(|(c, _)| c.as_ref()?.external_id.as_deref())
        .collect();
    let in_use = s.store.scim_keys_in_use(&dir.id, "User", &asked_names, &asked_ext).await?;
    let fresh = cands
        .iter_mut()
        .zip(unique)
        .map(|(c, unique)| {
            let c = c.take()?;
            let taken = in_use.names.contains(&c.name)
                || c.external_id.as_ref().is_some_and(|x| in_use.external_ids.contains(x));
            (unique && !taken).then_some(c.body)
        })
        .collect();
    Ok(fresh)
}

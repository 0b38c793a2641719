//! Users delivered many at a time, to targets that support SCIM `/Bulk`: one `or`-joined
//! lookup per [`LOOKUP_CHUNK`](crate::client::LOOKUP_CHUNK) users instead of one to three
//! per user, then one `/Bulk` request carrying the creates, PATCHes (or PUTs),
//! deactivations and deletes of many users.
//!
//! What a bulk answer leaves unsettled for a user — a 409 on create, a 404 or 412 on an
//! update, an operation the answer does not mention — is delivered again on its own
//! through the single-request path, which adopts, re-creates and re-reads. Other errors of
//! an operation fail that user's delivery only (retried or dead-lettered as usual); an
//! error of the request itself (5xx, 429, timeout) fails every user it carried. A target
//! that rejects a well-formed `/Bulk` request as a whole (400, 404, 405, 413, 501) is sent
//! one request per change from then on.

use super::*;
use crate::client::{BulkMethod, BulkOp, BulkOutcome, remote_of};

/// The JSON envelope of a bulk request around its operations, in bytes (generous).
const ENVELOPE_BYTES: usize = 256;

/// A row's account at the target (`None`: it has none), or why the lookup failed.
type Located = Result<Option<Remote>, Failure>;

/// The value a lookup step matches a row by.
type KeyOf = fn(&Row<'_>) -> Option<String>;

/// A user's delivery after the lookups.
enum Plan {
    /// Settled without the bulk request.
    Done(Result<Delivered, Failure>),
    /// Delivered on its own (the single-request path).
    Alone,
    /// An account that should hold `body`: written by `write` (if anything changed).
    User { write: Option<BulkOp>, remote_id: Option<String>, did: Vec<Value> },
    /// A leaver with an account at the target.
    Leaver { write: Option<BulkOp>, remote_id: String, did: &'static str, delete: bool },
}

/// A user to deliver: the work row, the directory's user and what the target should hold
/// (`None`: nothing, a leaver).
struct Row<'a> {
    w: &'a SyncWork,
    user: Option<StoredResource>,
    body: Option<Value>,
}

impl Dispatcher {
    /// Delivers `works` (users of one target) with `/Bulk` requests of at most
    /// `max_ops` operations and `max_bytes` bytes. One result per work row, in order.
    pub(super) async fn deliver_users_in_bulk(
        &self,
        c: &ScimClient,
        m: &Mapping,
        works: &[&SyncWork],
        max_ops: usize,
        max_bytes: usize,
    ) -> Vec<Outcome> {
        let mut rows = Vec::with_capacity(works.len());
        let mut plans: Vec<Plan> = Vec::with_capacity(works.len());
        for w in works {
            let row = match self.directory_resource(w).await {
                Ok(user) => desired_user(c, m, user.as_ref()).map(|body| Row { w, user, body }),
                Err(f) => Err(f),
            };
            match row {
                Ok(r) => {
                    rows.push(r);
                    plans.push(Plan::Alone);
                }
                Err(f) => {
                    rows.push(Row { w, user: None, body: None });
                    plans.push(Plan::Done(Err(f)));
                }
            }
        }
        let pending: Vec<usize> = (0..rows.len()).filter(|i| matches!(plans[*i], Plan::Alone)).collect();
        match self.locate_many(c, &rows, &pending).await {
            Ok(found) => {
                for (i, remote) in pending.into_iter().zip(found) {
                    plans[i] = match remote {
                        Ok(remote) => self.plan(c, m, &rows[i], remote, i),
                        Err(f) => Plan::Done(Err(f)),
                    };
                }
            }
            Err(e) => {
                for i in pending {
                    plans[i] = Plan::Done(Err(e.clone().into()));
                }
            }
        }
        let outcomes = self.send_bulk(c, &mut plans, max_ops, max_bytes).await;
        let mut results = Vec::with_capacity(rows.len());
        for ((row, plan), outcome) in rows.into_iter().zip(plans).zip(outcomes) {
            results.push(self.finish_row(c, m, row, plan, outcome).await);
        }
        results
    }

    /// The target's account of each row in `which` (by remembered remote id, else
    /// `externalId`, else `userName`, as [`locate`](Self::locate) does), with one lookup
    /// per chunk of users. An ambiguous match fails that row only.
    async fn locate_many(
        &self,
        c: &ScimClient,
        rows: &[Row<'_>],
        which: &[usize],
    ) -> Result<Vec<Located>, ClientError> {
        let mut out: Vec<Option<Located>> = which.iter().map(|_| None).collect();
        let steps: [(&str, KeyOf); 3] = [
            ("id", |r| r.w.remote_id.clone()),
            ("externalId", |r| Some(r.w.resource_id.clone())),
            // Leavers are matched by remote id and externalId only, like the single path.
            ("userName", |r| {
                r.body.as_ref().and_then(|b| b.get("userName")).and_then(Value::as_str).map(str::to_owned)
            }),
        ];
        for (attr, key) in steps {
            let open: Vec<(usize, String)> = which
                .iter()
                .enumerate()
                .filter(|(k, _)| out[*k].is_none())
                .filter_map(|(k, i)| Some((k, key(&rows[*i])?)))
                .collect();
            if open.is_empty() {
                continue;
            }
            let values: Vec<String> = open.iter().map(|(_, v)| v.clone()).collect();
            let found = c.find_many(ResourceKind::User, attr, &values).await?;
            for (k, v) in open {
                match found.get(&v).map(Vec::as_slice) {
                    None | Some([]) => {}
                    Some([one]) => out[k] = Some(Ok(Some(one.clone()))),
                    Some(many) => {
                        let e = ClientError::Ambiguous {
                            filter: format!("{attr} eq {}", Value::String(v)),
                            count: many.len(),
                        };
                        out[k] = Some(Err(e.into()));
                    }
                }
            }
        }
        Ok(out.into_iter().map(|o| o.unwrap_or(Ok(None))).collect())
    }

    /// What a row needs, given its account at the target.
    fn plan(&self, c: &ScimClient, m: &Mapping, row: &Row<'_>, remote: Option<Remote>, i: usize) -> Plan {
        let caps = c.capabilities().unwrap_or_else(default_caps);
        let version = |r: &Remote| if caps.etag { r.etag.clone() } else { None };
        // The change to an existing account: PATCH, or PUT of the patched body.
        let update = |r: &Remote, ops: &[PatchOp]| -> Result<BulkOp, Failure> {
            let (method, data) = if caps.patch {
                (BulkMethod::Patch, diff::patch_request(ops))
            } else {
                let body = diff::replacement_body(ResourceKind::User.resource_type(), &r.body, ops)
                    .map_err(|e| Failure::fatal(format!("cannot build the replacement body: {}", e.detail), false))?;
                (BulkMethod::Put, body)
            };
            Ok(BulkOp {
                method,
                kind: ResourceKind::User,
                id: Some(r.id.clone()),
                bulk_id: None,
                version: version(r),
                data: Some(data),
            })
        };
        match (&row.body, remote) {
            (Some(body), None) => Plan::User {
                write: Some(BulkOp {
                    method: BulkMethod::Post,
                    kind: ResourceKind::User,
                    id: None,
                    bulk_id: Some(format!("u{i}")),
                    version: None,
                    data: Some(body.clone()),
                }),
                remote_id: None,
                did: vec![json!("create")],
            },
            (Some(body), Some(r)) => {
                let managed = match m.managed_user_attributes() {
                    Ok(a) => a,
                    Err(e) => return Plan::Done(Err(Failure::fatal(e.to_string(), false))),
                };
                let ops = diff::user_patch(&r.body, body, &managed);
                let mut did =
                    vec![json!(if row.w.remote_id.as_deref() == Some(r.id.as_str()) { "update" } else { "match" })];
                if ops.is_empty() {
                    return Plan::User { write: None, remote_id: Some(r.id), did };
                }
                did.push(patched(&ops));
                match update(&r, &ops) {
                    Ok(op) => Plan::User { write: Some(op), remote_id: Some(r.id), did },
                    Err(f) => Plan::Done(Err(f)),
                }
            }
            (None, None) => Plan::Done(Ok(Delivered {
                remote_id: None,
                remote_active: None,
                deprovisioned: row.w.leaver_since.is_some(),
                summary: json!(["absent"]),
                requeue_groups: Vec::new(),
            })),
            (None, Some(r)) => match m.leaver {
                LeaverPolicy::Delete => Plan::Leaver {
                    write: Some(BulkOp {
                        method: BulkMethod::Delete,
                        kind: ResourceKind::User,
                        id: Some(r.id.clone()),
                        bulk_id: None,
                        version: None,
                        data: None,
                    }),
                    remote_id: r.id,
                    did: "delete",
                    delete: true,
                },
                LeaverPolicy::Deactivate if matches!(r.body.get("active"), Some(Value::Bool(false))) => {
                    Plan::Leaver { write: None, remote_id: r.id, did: "already_inactive", delete: false }
                }
                LeaverPolicy::Deactivate => match update(&r, &[diff::deactivate()]) {
                    Ok(op) => Plan::Leaver { write: Some(op), remote_id: r.id, did: "deactivate", delete: false },
                    Err(f) => Plan::Done(Err(f)),
                },
            },
        }
    }

    /// Sends the planned writes in `/Bulk` requests; the answer to each row's write (or
    /// `None`). Rows the answers leave unsettled become [`Plan::Alone`]; request errors
    /// become failures.
    async fn send_bulk(
        &self,
        c: &ScimClient,
        plans: &mut [Plan],
        max_ops: usize,
        max_bytes: usize,
    ) -> Vec<Option<BulkOutcome>> {
        let mut outcomes: Vec<Option<BulkOutcome>> = plans.iter().map(|_| None).collect();
        // (row, operation JSON, its size), packed into requests within both limits.
        let mut writes: Vec<(usize, Value, usize)> = Vec::new();
        for (i, p) in plans.iter_mut().enumerate() {
            let op = match p {
                Plan::User { write: Some(op), .. } | Plan::Leaver { write: Some(op), .. } => op,
                _ => continue,
            };
            match c.bulk_operation(op) {
                Ok(v) => {
                    let size = serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(usize::MAX);
                    if size.saturating_add(ENVELOPE_BYTES) > max_bytes {
                        *p = Plan::Alone;
                    } else {
                        writes.push((i, v, size));
                    }
                }
                Err(e) => *p = Plan::Done(Err(e.into())),
            }
        }
        let mut chunks: Vec<Vec<(usize, Value)>> = Vec::new();
        let mut bytes = ENVELOPE_BYTES;
        for (i, v, size) in writes {
            let full = chunks.last().is_none_or(|ch| ch.len() >= max_ops || bytes + size + 1 > max_bytes);
            if full {
                chunks.push(Vec::new());
                bytes = ENVELOPE_BYTES;
            }
            bytes += size + 1;
            if let Some(ch) = chunks.last_mut() {
                ch.push((i, v));
            }
        }
        for chunk in chunks {
            let (idx, ops): (Vec<usize>, Vec<Value>) = chunk.into_iter().unzip();
            match c.bulk(ops).await {
                Ok(answers) => {
                    for (i, o) in idx.into_iter().zip(answers) {
                        let delete = matches!(&plans[i], Plan::Leaver { delete: true, .. });
                        match o {
                            Some(o) if o.succeeded() || (delete && o.status == 404) => outcomes[i] = Some(o),
                            // Adopt, re-create or re-read: the single path knows how.
                            None => plans[i] = Plan::Alone,
                            Some(o) if matches!(o.status, 404 | 409 | 412) => plans[i] = Plan::Alone,
                            Some(o) => plans[i] = Plan::Done(Err(c.bulk_error(&o).into())),
                        }
                    }
                }
                Err(
                    e @ (ClientError::Rejected { status: 400 | 404 | 405 | 413 | 501, .. }
                    | ClientError::Protocol { .. }),
                ) => {
                    tracing::warn!(error = %e, "the target refused a bulk request; sending one request per change from now on");
                    c.disable_bulk();
                    for i in idx {
                        plans[i] = Plan::Alone;
                    }
                }
                Err(e) => {
                    for i in idx {
                        plans[i] = Plan::Done(Err(e.clone().into()));
                    }
                }
            }
        }
        outcomes
    }

    async fn finish_row(
        &self,
        c: &ScimClient,
        m: &Mapping,
        row: Row<'_>,
        plan: Plan,
        outcome: Option<BulkOutcome>,
    ) -> Outcome {
        match plan {
            Plan::Done(r) => r,
            Plan::Alone => self.deliver_user(c, m, row.w).await,
            Plan::User { write, remote_id, did } => {
                let body = row.body.unwrap_or(Value::Null);
                let remote_id = match (remote_id, &write, &outcome) {
                    (Some(id), _, _) => id,
                    (None, Some(_), Some(o)) => remote_of(o, &body)?.id,
                    _ => return Err(Failure::fatal("the bulk answer did not settle the create".into(), true)),
                };
                self.user_delivered(c, m, row.w, row.user, &remote_id, &body, did).await
            }
            Plan::Leaver { remote_id, did, delete, .. } => Ok(Delivered {
                remote_id: (!delete).then_some(remote_id),
                remote_active: (!delete).then_some(false),
                deprovisioned: true,
                summary: json!([did]),
                requeue_groups: self.user_groups(row.w).await,
            }),
        }
    }
}

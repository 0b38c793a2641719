//! What callers above the store used to reach through `Store.db`: the audit log's reads,
//! the SCIM filter's SQL for this store's backend, and the pool's life. The store owns the
//! SQL; callers pass typed values.

use fedkey_audit::{Record, VerifyReport};
use fedkey_scim::ScimError;
use fedkey_scim::filter::{AttrPath, Filter};
use fedkey_scim::schema::ResourceTypeDef;

use super::Store;
use crate::StoreError;
use crate::audit::AuditFilter;
use crate::scim::SqlFragment;

impl Store {
    /// Audit records matching `filter`, in sequence order.
    pub async fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<Record>, StoreError> {
        crate::audit::query(&self.db, filter).await
    }

    /// The audit chain head: its last `seq` and hash.
    pub async fn audit_head(&self) -> Result<(i64, [u8; 32]), StoreError> {
        crate::audit::head(&self.db).await
    }

    /// Verifies the whole audit chain and its checkpoints against this install's key
    /// (see [`crate::audit::verify`]).
    pub async fn verify_audit(&self) -> Result<Result<VerifyReport, fedkey_audit::VerifyError>, StoreError> {
        crate::audit::verify(&self.db, &self.install.id, &self.install.public_key).await
    }

    /// `filter` as a condition of [`crate::scim::ListQuery`] on this store's backend.
    pub fn scim_filter_sql(&self, rt: &ResourceTypeDef, filter: &Filter) -> Result<SqlFragment, ScimError> {
        crate::scim_sql::translate(self.db.backend, rt, filter)
    }

    /// `sortBy` `path` as an order of [`crate::scim::ListQuery`] on this store's backend.
    pub fn scim_order_sql(&self, rt: &ResourceTypeDef, path: &AttrPath) -> Result<SqlFragment, ScimError> {
        crate::scim_sql::order_by(self.db.backend, rt, path)
    }

    /// How many writers' transactions one commit may carry (see
    /// [`crate::Db::set_group_commit_limit`]).
    pub fn set_group_commit_limit(&self, writers: usize) {
        self.db.set_group_commit_limit(writers);
    }

    /// Waits for the group committer, then closes the pool.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// The database under the store, for tests and benchmarks that tamper with it or
    /// look at plans. Not for production code: it exists only with the `test-support`
    /// feature, which dev-dependencies turn on.
    #[cfg(feature = "test-support")]
    #[doc(hidden)]
    pub fn raw_for_tests(&self) -> &crate::Db {
        &self.db
    }
}

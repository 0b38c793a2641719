//! Leak reports: `POST /leaks`, from an operator's scanner (admin token, generic body)
//! or from GitHub secret scanning (signed, an array of matches).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The generic report (with an admin token of the operator role or above).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeakReport {
    pub findings: Vec<LeakFinding>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeakFinding {
    pub token: String,
    pub location: String,
}

/// The answer to a generic report: one entry per finding, and how many were fedkey keys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeakReportResult {
    /// Each finding's outcome (`ours`, the trust and version, what was done) and
    /// `token_hash`; never the token.
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<Value>,
    pub ours: u64,
}

/// One match of a GitHub secret-scanning report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GithubMatch {
    pub token: String,
    #[serde(rename = "type", default)]
    pub token_type: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub source: String,
}

/// The answer to GitHub, per match: a true or false positive.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GithubLabel {
    pub token_hash: String,
    pub token_type: String,
    /// `true_positive` or `false_positive`.
    pub label: String,
}

/// A body of `POST /leaks`: the generic report, or GitHub's array of matches.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LeakReportBody {
    Generic(LeakReport),
    Github(Vec<GithubMatch>),
}

/// The answer to `POST /leaks`, in the shape of the report's format.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LeakReportAnswer {
    Generic(LeakReportResult),
    Github(Vec<GithubLabel>),
}

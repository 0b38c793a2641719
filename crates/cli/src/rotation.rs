//! Rotation engine commands: `rotation …`, `connector …`, `doctor`, `key unwrap`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use fedkey_api::ErrorBody;
use fedkey_api::rotation::{
    AddConnector, CancelRotation, ConnectorEnvelope, ConnectorList, HealthReport, MaterialDecision, MaterialOverview,
    MaterialSourceEnvelope, RotationEnvelope, RotationOverview, RotationPolicyEnvelope, StartRotation, UnwrappedKey,
};
use fedkey_core::{RotationKind, TrustRef};
use serde_json::{Map, Value, json};

use crate::client::{Client, q};
use crate::config::Settings;
use crate::local;
use crate::output::{self, Output};

#[derive(Subcommand)]
pub enum RotationCmd {
    /// A trust's rotation policy.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Start a rotation now (delivered by the trust's connectors).
    Start {
        /// DIRECTORY/TRUST
        trust: TrustRef,
        /// Revoke every older version at once (overlap 0): for a leaked key.
        #[arg(long)]
        emergency: bool,
        /// Overlap for this rotation instead of the policy's.
        #[arg(long, conflicts_with = "emergency")]
        overlap: Option<String>,
    },
    /// The rotation in progress, recent history, policy and connectors.
    Show {
        /// DIRECTORY/TRUST
        trust: TrustRef,
    },
    /// Retry the rotation in progress now (after fixing what made a step fail).
    Retry {
        /// DIRECTORY/TRUST
        trust: TrustRef,
    },
    /// Cancel the rotation in progress; its staged version is revoked.
    Cancel {
        /// DIRECTORY/TRUST
        trust: TrustRef,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Set the policy; options left out keep their current value (or the default).
    Set {
        /// DIRECTORY/TRUST
        trust: TrustRef,
        /// How often a scheduled rotation starts, e.g. 30d.
        #[arg(long)]
        period: Option<String>,
        /// How long the previous version keeps working after promotion, e.g. 24h.
        #[arg(long)]
        overlap: Option<String>,
        /// first_use (the peer authenticates with the new version), connector (its
        /// validation call) or none.
        #[arg(long)]
        validation: Option<String>,
        /// How long first-use validation waits before the step counts as failed.
        #[arg(long)]
        validation_timeout: Option<String>,
        /// Retire the previous version as soon as the peer used the new one.
        #[arg(long)]
        finish_on_first_use: Option<bool>,
        /// Warn this long before a key reaches its policy age.
        #[arg(long)]
        warn_before: Option<String>,
        /// Rotate when the peer's trust material changes.
        #[arg(long)]
        rotate_on_material_change: Option<bool>,
        /// Turn scheduled rotation on or off.
        #[arg(long)]
        enabled: Option<bool>,
        /// Cron schedule (UTC) for scheduled rotations, e.g. "0 3 * * 1" (Mondays 03:00);
        /// "" removes it (then: one period after the last start).
        #[arg(long)]
        schedule: Option<String>,
    },
    /// Show the policy and the next scheduled rotation.
    Show {
        /// DIRECTORY/TRUST
        trust: TrustRef,
    },
}

#[derive(Subcommand)]
pub enum ConnectorCmd {
    /// Add a connector: how new key versions reach the peer.
    Add {
        /// DIRECTORY/TRUST
        trust: TrustRef,
        /// Connector name, unique within the trust.
        #[arg(long)]
        name: String,
        /// Settings as JSON with a `kind` (see docs/connectors.md), inline…
        #[arg(long, conflicts_with = "spec_file")]
        spec: Option<String>,
        /// …or from a file.
        #[arg(long)]
        spec_file: Option<PathBuf>,
        /// Credentials JSON (secret) from this file; never on the command line.
        #[arg(long)]
        credentials_file: Option<PathBuf>,
        /// Credentials JSON (secret) from stdin.
        #[arg(long)]
        credentials_stdin: bool,
    },
    /// List a trust's connectors and their last outcome (never credentials).
    List {
        /// DIRECTORY/TRUST
        trust: TrustRef,
    },
    /// Remove a connector.
    Remove {
        /// DIRECTORY/TRUST
        trust: TrustRef,
        #[arg(long)]
        name: String,
    },
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum MaterialCmd {
    /// Watch the peer's published signing keys (one source), optionally accepting its
    /// signed JWTs on this inbound trust's SCIM endpoint.
    Source {
        /// DIRECTORY/TRUST
        trust: TrustRef,
        /// OIDC discovery document URL (its jwks_uri is watched).
        #[arg(long, group = "src")]
        discovery_url: Option<String>,
        /// JWKS URL, watched directly.
        #[arg(long, group = "src")]
        jwks_url: Option<String>,
        /// SAML metadata URL.
        #[arg(long, group = "src")]
        saml_metadata_url: Option<String>,
        /// The issuer / entityID the document must name.
        #[arg(long)]
        issuer: Option<String>,
        /// Accept bearer JWTs with this `iss` (needs --jwt-audience).
        #[arg(long, requires = "jwt_audience")]
        jwt_issuer: Option<String>,
        /// Accepted `aud` (repeatable).
        #[arg(long, requires = "jwt_issuer")]
        jwt_audience: Vec<String>,
        /// Allowed `alg` (repeatable; default RS256/384/512, PS256, ES256/384, EdDSA).
        #[arg(long = "jwt-algorithm", requires = "jwt_issuer")]
        jwt_algorithms: Vec<String>,
        /// Clock skew tolerated on exp/nbf (default 60s).
        #[arg(long, requires = "jwt_issuer")]
        jwt_leeway: Option<String>,
        /// Longest accepted token lifetime (default 1h).
        #[arg(long, requires = "jwt_issuer")]
        jwt_max_lifetime: Option<String>,
        /// Lab only: fetch over plain http from a host that is not loopback. Recorded in the
        /// audit log; a discovery document's jwks_uri still never downgrades https.
        #[arg(long, conflicts_with = "remove")]
        allow_http: bool,
        /// Accepted `sub` (repeatable; default any).
        #[arg(long = "jwt-subject", requires = "jwt_issuer")]
        jwt_subjects: Vec<String>,
        /// Accepted client application: `azp`, Entra v1 `appid`, Okta `cid` (repeatable; default any).
        #[arg(long = "jwt-client-id", requires = "jwt_issuer")]
        jwt_client_ids: Vec<String>,
        /// Required header `typ`, e.g. JWT or at+jwt (default any).
        #[arg(long, requires = "jwt_issuer")]
        jwt_type: Option<String>,
        /// Stop watching (and stop accepting JWTs).
        #[arg(long, conflicts_with = "src")]
        remove: bool,
    },
    /// The source and the stored versions (current, held for approval, history).
    Show {
        /// DIRECTORY/TRUST
        trust: TrustRef,
    },
    /// Accept material held because it shares no key with the current version.
    Approve {
        /// DIRECTORY/TRUST
        trust: TrustRef,
    },
    /// Discard held material; the current version stays.
    Reject {
        /// DIRECTORY/TRUST
        trust: TrustRef,
    },
}

pub async fn material(s: &Settings, out: Output, c: MaterialCmd) -> anyhow::Result<ExitCode> {
    let api = client(s)?;
    let cols = &["version", "status", "+digest", "fetched_at", "expires_at", "decided_by"];
    let v = match c {
        MaterialCmd::Source { trust, remove: true, .. } => {
            api.send::<()>(reqwest::Method::DELETE, &format!("{}/material/source", path(&trust)), None::<&()>).await?;
            output::json(&json!({"removed": trust.to_string()}));
            return Ok(ExitCode::SUCCESS);
        }
        MaterialCmd::Source {
            trust,
            discovery_url,
            jwks_url,
            saml_metadata_url,
            issuer,
            jwt_issuer,
            jwt_audience,
            jwt_algorithms,
            jwt_leeway,
            jwt_max_lifetime,
            allow_http,
            jwt_subjects,
            jwt_client_ids,
            jwt_type,
            ..
        } => {
            let mut body = Map::new();
            if allow_http {
                body.insert("allow_http".into(), json!(true));
            }
            for (k, v) in [
                ("discovery_url", discovery_url),
                ("jwks_url", jwks_url),
                ("saml_metadata_url", saml_metadata_url),
                ("issuer", issuer),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), json!(v));
                }
            }
            if let Some(iss) = jwt_issuer {
                let mut jwt = json!({"issuer": iss, "audiences": jwt_audience});
                if !jwt_algorithms.is_empty() {
                    jwt["algorithms"] = json!(jwt_algorithms);
                }
                if let Some(l) = jwt_leeway {
                    jwt["leeway"] = json!(l);
                }
                if let Some(m) = jwt_max_lifetime {
                    jwt["max_lifetime"] = json!(m);
                }
                if !jwt_subjects.is_empty() {
                    jwt["subjects"] = json!(jwt_subjects);
                }
                if !jwt_client_ids.is_empty() {
                    jwt["client_ids"] = json!(jwt_client_ids);
                }
                if let Some(t) = jwt_type {
                    jwt["token_type"] = json!(t);
                }
                body.insert("jwt".into(), jwt);
            }
            let path = format!("{}/material/source", path(&trust));
            let v: MaterialSourceEnvelope = api.put_as(&path, &Value::Object(body)).await?;
            // A source has no table form: it is its settings.
            output::json(&v);
            return Ok(ExitCode::SUCCESS);
        }
        MaterialCmd::Show { trust } => {
            let v: MaterialOverview = api.get_as(&format!("{}/material", path(&trust))).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => {
                    let config = v.source.as_ref().map_or(Value::Null, |s| s.config.clone());
                    outln!("source: {config}");
                    output::table(&v.versions, cols);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        MaterialCmd::Approve { trust } => {
            api.post_as(&format!("{}/material/approve", path(&trust)), &json!({})).await?
        }
        MaterialCmd::Reject { trust } => api.post_as(&format!("{}/material/reject", path(&trust)), &json!({})).await?,
    };
    let v: MaterialDecision = v;
    match out {
        Output::Json => output::json(&v),
        Output::Table => output::record(&v.version, cols),
    }
    Ok(ExitCode::SUCCESS)
}

fn client(s: &Settings) -> anyhow::Result<Client> {
    Client::new(s)
}

fn path(r: &TrustRef) -> String {
    format!("/directories/{}/trusts/{}", r.directory, r.trust)
}

const ROTATION_COLUMNS: &[&str] =
    &["ref", "version", "kind", "step", "+attempts", "last_error", "+next_attempt_at", "started_at", "finished_at"];
const POLICY_COLUMNS: &[&str] = &[
    "period",
    "overlap",
    "validation",
    "validation_timeout",
    "finish_on_first_use",
    "warn_before",
    "rotate_on_material_change",
    "enabled",
    "schedule",
    "next_rotation_at",
];
const CONNECTOR_COLUMNS: &[&str] =
    &["name", "kind", "has_credentials", "last_success_at", "last_failure_at", "last_error"];

pub async fn rotation(s: &Settings, out: Output, c: RotationCmd) -> anyhow::Result<ExitCode> {
    let api = client(s)?;
    let v = match c {
        RotationCmd::Policy(PolicyCmd::Set {
            trust,
            period,
            overlap,
            validation,
            validation_timeout,
            finish_on_first_use,
            warn_before,
            rotate_on_material_change,
            enabled,
            schedule,
        }) => {
            let mut body = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    body.insert(k.to_owned(), v);
                }
            };
            put("period", period.map(Value::from));
            put("overlap", overlap.map(Value::from));
            put("validation", validation.map(Value::from));
            put("validation_timeout", validation_timeout.map(Value::from));
            put("finish_on_first_use", finish_on_first_use.map(Value::from));
            put("warn_before", warn_before.map(Value::from));
            put("rotate_on_material_change", rotate_on_material_change.map(Value::from));
            put("enabled", enabled.map(Value::from));
            put("schedule", schedule.map(|c| if c.is_empty() { Value::Null } else { Value::from(c) }));
            let v = api.put_as(&format!("{}/rotation/policy", path(&trust)), &Value::Object(body)).await?;
            print_policy(out, &v);
            return Ok(ExitCode::SUCCESS);
        }
        RotationCmd::Policy(PolicyCmd::Show { trust }) => {
            let v = api.get_as(&format!("{}/rotation/policy", path(&trust))).await?;
            print_policy(out, &v);
            return Ok(ExitCode::SUCCESS);
        }
        RotationCmd::Start { trust, emergency, overlap } => {
            let kind = if emergency { RotationKind::Emergency } else { RotationKind::Manual };
            let body = StartRotation { kind: Some(kind), overlap };
            api.post_as(&format!("{}/rotation/start", path(&trust)), &body).await?
        }
        RotationCmd::Show { trust } => {
            let v: RotationOverview = api.get_as(&format!("{}/rotation", path(&trust))).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => {
                    match &v.active {
                        Some(active) => {
                            outln!("rotation in progress:");
                            output::record(active, ROTATION_COLUMNS);
                        }
                        None => outln!("no rotation in progress"),
                    }
                    outln!("\npolicy:");
                    match &v.policy {
                        Some(policy) => output::record(policy, POLICY_COLUMNS),
                        None => outln!("  none (scheduled rotation is off)"),
                    }
                    outln!("\nconnectors:");
                    output::table(&v.connectors, CONNECTOR_COLUMNS);
                    outln!("\nrecent rotations:");
                    output::table(&v.history, ROTATION_COLUMNS);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        RotationCmd::Retry { trust } => api.post_as(&format!("{}/rotation/retry", path(&trust)), &json!({})).await?,
        RotationCmd::Cancel { trust, reason } => {
            api.post_as(&format!("{}/rotation/cancel", path(&trust)), &CancelRotation { reason }).await?
        }
    };
    let v: RotationEnvelope = v;
    match out {
        Output::Json => output::json(&v),
        Output::Table => output::record(&v.rotation, ROTATION_COLUMNS),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_policy(out: Output, v: &RotationPolicyEnvelope) {
    match (out, &v.policy) {
        (Output::Json, _) => output::json(v),
        (Output::Table, None) => outln!("no rotation policy"),
        (Output::Table, Some(policy)) => output::record(policy, POLICY_COLUMNS),
    }
}

pub async fn connector(s: &Settings, out: Output, c: ConnectorCmd) -> anyhow::Result<ExitCode> {
    let api = client(s)?;
    match c {
        ConnectorCmd::Add { trust, name, spec, spec_file, credentials_file, credentials_stdin } => {
            let spec_text = match (spec, spec_file) {
                (Some(s), None) => s,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .map_err(|e| anyhow::anyhow!("cannot read the spec file {}: {e}", f.display()))?,
                _ => anyhow::bail!("give the connector's settings with --spec JSON or --spec-file FILE"),
            };
            let spec: Value =
                serde_json::from_str(&spec_text).map_err(|e| anyhow::anyhow!("the spec is not JSON: {e}"))?;
            let creds = local::read_key_input(credentials_file.as_deref(), credentials_stdin)?;
            let body = AddConnector { name, spec, credentials: creds.as_ref().map(|c| c.expose().to_owned()) };
            let v: ConnectorEnvelope = api.post_as(&format!("{}/connectors", path(&trust)), &body).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::record(&v.connector, CONNECTOR_COLUMNS),
            }
        }
        ConnectorCmd::List { trust } => {
            let v: ConnectorList = api.get_as(&format!("{}/connectors", path(&trust))).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::table(&v.connectors, CONNECTOR_COLUMNS),
            }
        }
        ConnectorCmd::Remove { trust, name } => {
            let p = format!("{}/connectors/{}", path(&trust), q(&name));
            api.send::<()>(reqwest::Method::DELETE, &p, None::<&()>).await?;
            if out == Output::Json {
                output::json(&json!({"removed": name}));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit status: 0 healthy (or only information), 1 warnings, 2 critical findings
/// (docs/cli.md, "Exit codes"). Reads the server's health model (`GET /health`).
pub async fn doctor(s: &Settings, out: Output) -> anyhow::Result<ExitCode> {
    let v: HealthReport = client(s)?.get_as("/health").await?;
    let findings = &v.findings;
    let targets = v.targets.len();
    match out {
        Output::Json => output::json(&v),
        Output::Table if findings.is_empty() => {
            outln!("{} trusts and {targets} sync targets checked: all healthy", v.trusts_checked);
        }
        Output::Table => {
            outln!("{} trusts and {targets} sync targets checked, {} findings:", v.trusts_checked, findings.len());
            output::table(findings, &["severity", "object", "code", "message", "action"]);
        }
    }
    let worst = |sev: &str| findings.iter().any(|f| f.severity == sev);
    Ok(if worst("critical") {
        ExitCode::from(2)
    } else if worst("warning") {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reveals the key behind a wrapped link (works once).
pub async fn unwrap(s: &crate::config::Settings, url: &str, out: Output) -> anyhow::Result<ExitCode> {
    if !url.contains("/unwrap/") {
        anyhow::bail!("not a fedkey wrapped link (expected …/unwrap/fkw_…)");
    }
    // A link a person pasted: the address is theirs to choose, as for the admin client.
    let egress = crate::client::operator_egress(s)?;
    let parsed = reqwest::Url::parse(url).map_err(|_| anyhow::anyhow!("not a URL"))?;
    let timeout = std::time::Duration::from_secs(30);
    let req = egress.request(reqwest::Method::POST, &parsed, fedkey_egress::UrlRules::LAB_HTTP)?;
    let resp = egress.send(req, timeout).await.map_err(|e| anyhow::anyhow!("cannot reach the link's server: {e}"))?;
    let status = resp.status();
    let text = fedkey_egress::read_text(resp, 64 * 1024, timeout).await.unwrap_or_default();
    if !status.is_success() {
        let e = serde_json::from_str::<ErrorBody>(&text).ok();
        let msg = e.as_ref().map_or("the link was refused", |e| e.error.message.as_str());
        anyhow::bail!("{msg} (HTTP {})", status.as_u16());
    }
    let v: UnwrappedKey = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("the link's server answered something that is not a fedkey key ({e})"))?;
    match out {
        Output::Json => output::json(&v),
        Output::Table => {
            output::note("The key below was revealed once; the link no longer works.");
            output::secret("key", &v.key);
            output::record(&v, &["trust", "version"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

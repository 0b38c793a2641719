//! Admin commands: thin wrappers over the admin API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use fedkey_core::{Direction, PeerKind, Role, TrustRef};
use serde_json::{Value, json};

use crate::client::{Client, q};
use crate::config::Settings;
use crate::local;
use crate::output::{self, Output};

#[derive(Subcommand)]
pub enum DirectoryCmd {
    /// Create a directory (one per tenant).
    Create {
        /// Directory name (a-z, 0-9, '.', '_', '-').
        name: String,
    },
    /// List directories.
    List,
    /// Show a directory and what it holds (trusts, users, groups, targets).
    Show {
        /// Directory name.
        name: String,
    },
    /// Delete a directory. Refused while it holds trusts, users, groups or targets unless
    /// --force, which deletes them with it (the audit log keeps their history).
    Delete {
        /// Directory name.
        name: String,
        /// Also delete everything the directory holds.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum TrustCmd {
    /// Create a trust and its first key (an inbound key is printed once).
    Create {
        /// Directory the trust belongs to.
        #[arg(long)]
        directory: String,
        /// Trust name (a-z, 0-9, '.', '_', '-').
        #[arg(long)]
        name: String,
        /// inbound (an IdP provisions into fedkey) or outbound (fedkey provisions an app).
        #[arg(long, value_parser = parse_direction)]
        direction: Direction,
        /// entra, okta or generic; also the SCIM PATCH compatibility profile (generic: RFC 7644).
        #[arg(long, value_parser = parse_peer, default_value = "generic")]
        peer_kind: PeerKind,
        /// Scopes of an inbound trust's keys (repeatable); default: all but groups:privileged.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Free text shown in listings.
        #[arg(long)]
        description: Option<String>,
        /// Read an outbound trust's app-issued key from this file.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Read an outbound trust's app-issued key from stdin.
        #[arg(long)]
        key_stdin: bool,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Replace an inbound trust's policy (flags left out are cleared; no flags: no policy).
    Policy {
        /// DIRECTORY/TRUST
        trust: TrustRef,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// How a trust answers a leak of one of its keys, and when its pending versions
    /// authenticate (flags left out keep their setting).
    LeakSettings {
        /// DIRECTORY/TRUST
        trust: TrustRef,
        /// report (alert only), revoke (that version), or rotate (an emergency rotation;
        /// the default for inbound trusts).
        #[arg(long)]
        leak_policy: Option<String>,
        /// staged (a pending version authenticates once staged; the default) or delivered
        /// (only once every connector has confirmed it).
        #[arg(long)]
        pending_auth: Option<String>,
    },
    /// Replace the scopes of a trust's keys (applies at once to every live version).
    Scopes {
        /// DIRECTORY/TRUST
        trust: TrustRef,
        /// Scope (repeatable): users:read, users:write, groups:read, groups:write,
        /// groups:privileged, bulk.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// List trusts, of one directory or all.
    List {
        /// Only this directory's trusts.
        #[arg(long)]
        directory: Option<String>,
    },
    /// Show a trust and its key versions.
    Show {
        /// DIRECTORY/TRUST
        trust: TrustRef,
    },
    /// Stop a trust's keys from authenticating (reversible).
    Suspend {
        /// DIRECTORY/TRUST
        trust: TrustRef,
    },
    /// Let a suspended trust's keys authenticate again.
    Resume {
        /// DIRECTORY/TRUST
        trust: TrustRef,
    },
    /// Delete a trust and its key versions (the audit log keeps their history).
    Delete {
        /// DIRECTORY/TRUST
        trust: TrustRef,
    },
}

/// An inbound trust's least-privilege policy.
#[derive(clap::Args)]
pub struct PolicyArgs {
    /// Groups whose creation or new members need the groups:privileged scope: a
    /// case-insensitive glob over displayName (`*`, `?`; `?` for a space). Repeatable.
    #[arg(long = "privileged-group", value_name = "PATTERN")]
    privileged_groups: Vec<String>,
    /// Source networks allowed to use the trust's keys (IPv4/IPv6 CIDR or address).
    /// Repeatable; none: any source.
    #[arg(long = "allow-source", value_name = "CIDR")]
    allowed_sources: Vec<String>,
    /// SCIM requests per second per trust (burst of the same size); 0: unlimited.
    #[arg(long, value_name = "N", default_value_t = 0)]
    rate_limit: i64,
}

impl PolicyArgs {
    fn json(&self) -> Value {
        json!({
            "privileged_groups": self.privileged_groups,
            "allowed_sources": self.allowed_sources,
            "rate_limit": self.rate_limit,
        })
    }
}

#[derive(Subcommand)]
pub enum KeyCmd {
    /// New current version; the old one stays valid for the overlap.
    Rotate {
        /// DIRECTORY/TRUST
        trust: TrustRef,
        /// How long the previous version keeps working (0s = immediately invalid).
        #[arg(long, default_value = "24h")]
        overlap: String,
        /// Outbound trusts: read the new app-issued key from this file.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Outbound trusts: read the new app-issued key from stdin.
        #[arg(long)]
        key_stdin: bool,
        /// Print a single-use retrieval link valid this long (e.g. 15m) instead of the key.
        #[arg(long)]
        wrap: Option<String>,
    },
    /// Reveal the key behind a wrapped link (works once; a second use raises an alert).
    Unwrap {
        /// The link printed by `key rotate --wrap`.
        url: String,
    },
    /// Revoke one version immediately.
    Revoke {
        /// DIRECTORY/TRUST
        trust: TrustRef,
        /// The version number to revoke (see `key list`).
        #[arg(long)]
        version: i64,
        /// Revoke even the last usable version, which leaves the peer without a working key.
        #[arg(long)]
        force: bool,
    },
    /// List a trust's key versions (never secrets).
    List {
        /// DIRECTORY/TRUST
        trust: TrustRef,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create an admin API token (printed once).
    Create {
        /// Token name (a-z, 0-9, '.', '_', '-').
        name: String,
        /// admin, operator (rotate/revoke/suspend) or auditor (read-only + audit log).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Lifetime, e.g. 90d; default: no expiry.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List admin tokens (never the tokens themselves).
    List,
    /// Revoke an admin token immediately.
    Revoke {
        /// Token name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Verify the hash chain and every signed checkpoint. Offline (reads the database
    /// directly) unless a token is configured, then through the API.
    Verify {
        /// Pin the checkpoint public key (hex) instead of deriving it with the master key.
        #[arg(long)]
        public_key: Option<String>,
        /// Force offline verification even when a token is configured.
        #[arg(long)]
        offline: bool,
    },
    /// Write records as JSON lines or CSV: through the API when a token is configured
    /// (an `auditor` token is enough), else offline from the database.
    Export {
        /// RFC 3339 time or a duration back from now (24h).
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 time or a duration back from now; records before it.
        #[arg(long)]
        until: Option<String>,
        /// Only records about this directory.
        #[arg(long)]
        directory: Option<String>,
        /// Only records about this trust (name within its directory).
        #[arg(long)]
        trust: Option<String>,
        /// Only records of this action, e.g. key.rotate or key.authenticate.
        #[arg(long)]
        action: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
        /// jsonl (one JSON object per line) or csv.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: crate::audit_cli::ExportFormat,
        /// Read the database directly even when a token is configured.
        #[arg(long)]
        offline: bool,
    },
    /// Print the latest records, and with --follow new ones as they are committed (API).
    Tail {
        /// How many of the latest records to print first.
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: i64,
        /// Keep printing new records until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only records of this action.
        #[arg(long)]
        action: Option<String>,
    },
}

fn parse_direction(s: &str) -> Result<Direction, String> {
    s.parse().map_err(|e: fedkey_core::DomainError| e.to_string())
}
fn parse_peer(s: &str) -> Result<PeerKind, String> {
    s.parse().map_err(|e: fedkey_core::DomainError| e.to_string())
}
fn parse_role(s: &str) -> Result<Role, String> {
    s.parse().map_err(|e: fedkey_core::DomainError| e.to_string())
}

fn client(s: &Settings) -> anyhow::Result<Client> {
    Client::new(s)
}

fn path(r: &TrustRef) -> String {
    format!("/directories/{}/trusts/{}", r.directory, r.trust)
}

// A column written `+name` is shown in tables only with `--wide` (see `output::table`).
const KEY_COLUMNS: &[&str] =
    &["version", "state", "scopes", "+created_at", "+activated_at", "expires_at", "last_used_at"];
const TRUST_COLUMNS: &[&str] = &["ref", "direction", "+peer_kind", "status", "scopes", "+created_at"];
const DIRECTORY_COLUMNS: &[&str] = &["name", "created_at", "+created_by"];
const LEAK_COLUMNS: &[&str] = &["ref", "leak_policy", "pending_auth", "updated_at"];
const POLICY_COLUMNS: &[&str] = &["ref", "privileged_groups", "allowed_sources", "rate_limit", "updated_at"];

/// Prints a response carrying a one-time key: the key first, then what it belongs to.
fn print_with_key(out: Output, v: &Value) {
    match out {
        Output::Json => output::json(v),
        Output::Table => {
            if let Some(k) = v["key"].as_str() {
                output::note("The key below is shown once. Deliver it to the peer now; fedkey keeps only its hash.");
                output::secret("key", k);
            }
            if let Some(link) = v["wrapped_link"]["url"].as_str() {
                output::note(
                    "The link below reveals the key once (POST, or `fedkey key unwrap URL`). A second use is refused and alerts.",
                );
                output::secret("wrapped_link", link);
                outln!("expires_at:   {}", v["wrapped_link"]["expires_at"].as_str().unwrap_or_default());
            }
            if v["trust"].is_object() {
                output::record(&v["trust"], TRUST_COLUMNS);
                // The trust's lines already gave scopes and created_at: the key's own only.
                let key_only: Vec<&str> = KEY_COLUMNS
                    .iter()
                    .copied()
                    .filter(|k| !TRUST_COLUMNS.iter().any(|t| t.trim_start_matches('+') == k.trim_start_matches('+')))
                    .collect();
                output::record(&v["key_version"], &key_only);
            } else {
                output::record(&v["key_version"], KEY_COLUMNS);
            }
        }
    }
}

pub async fn directory(s: &Settings, out: Output, c: DirectoryCmd) -> anyhow::Result<ExitCode> {
    let api = client(s)?;
    match c {
        DirectoryCmd::Create { name } => {
            let v = api.post("/directories", json!({"name": name})).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::record(&v, DIRECTORY_COLUMNS),
            }
        }
        DirectoryCmd::List => {
            let v = api.get("/directories").await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::table(v["directories"].as_array().map_or(&[][..], |a| a), DIRECTORY_COLUMNS),
            }
        }
        DirectoryCmd::Show { name } => {
            let v = api.get(&format!("/directories/{}", q(&name))).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::record(
                    &v,
                    &["name", "id", "created_at", "created_by", "trusts", "users", "groups", "targets"],
                ),
            }
        }
        DirectoryCmd::Delete { name, force } => {
            let p = format!("/directories/{}{}", q(&name), if force { "?force=true" } else { "" });
            let v = api.delete(&p).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => outln!(
                    "deleted directory {name} ({} trusts, {} users, {} groups, {} targets)",
                    v["deleted"]["trusts"],
                    v["deleted"]["users"],
                    v["deleted"]["groups"],
                    v["deleted"]["targets"]
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn trust(s: &Settings, out: Output, c: TrustCmd) -> anyhow::Result<ExitCode> {
    let api = client(s)?;
    match c {
        TrustCmd::Create {
            directory,
            name,
            direction,
            peer_kind,
            scopes,
            description,
            key_file,
            key_stdin,
            policy,
        } => {
            let key = local::read_key_input(key_file.as_deref(), key_stdin)?;
            let mut body = json!({"name": name, "direction": direction, "peer_kind": peer_kind});
            if let (Value::Object(b), Value::Object(p)) = (&mut body, policy.json()) {
                b.extend(p);
            }
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if let Some(k) = &key {
                body["key"] = json!(k.expose());
            }
            let v = api.post(&format!("/directories/{directory}/trusts"), body).await?;
            print_with_key(out, &v);
        }
        TrustCmd::List { directory } => {
            let p = match directory {
                Some(d) => format!("/directories/{d}/trusts"),
                None => "/trusts".into(),
            };
            let v = api.get(&p).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::table(v["trusts"].as_array().map_or(&[][..], |a| a), TRUST_COLUMNS),
            }
        }
        TrustCmd::Show { trust } => {
            let v = api.get(&path(&trust)).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => {
                    output::record(
                        &v["trust"],
                        &[
                            "ref",
                            "direction",
                            "peer_kind",
                            "status",
                            "scopes",
                            "description",
                            "created_at",
                            "created_by",
                            "privileged_groups",
                            "allowed_sources",
                            "rate_limit",
                        ],
                    );
                    outln!();
                    output::table(v["keys"].as_array().map_or(&[][..], |a| a), KEY_COLUMNS);
                }
            }
        }
        TrustCmd::Policy { trust, policy } => {
            let v = api.call(reqwest::Method::PUT, &format!("{}/policy", path(&trust)), Some(policy.json())).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::record(&v["trust"], POLICY_COLUMNS),
            }
        }
        TrustCmd::LeakSettings { trust, leak_policy, pending_auth } => {
            let body = json!({"leak_policy": leak_policy, "pending_auth": pending_auth});
            let v = api.call(reqwest::Method::PUT, &format!("{}/leak-settings", path(&trust)), Some(body)).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::record(&v["trust"], LEAK_COLUMNS),
            }
        }
        TrustCmd::Scopes { trust, scopes } => {
            let body = json!({"scopes": scopes});
            let v = api.call(reqwest::Method::PUT, &format!("{}/scopes", path(&trust)), Some(body)).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::record(&v["trust"], TRUST_COLUMNS),
            }
        }
        TrustCmd::Suspend { trust } => status(&api, out, &trust, "suspend").await?,
        TrustCmd::Resume { trust } => status(&api, out, &trust, "resume").await?,
        TrustCmd::Delete { trust } => {
            api.call(reqwest::Method::DELETE, &path(&trust), None).await?;
            match out {
                Output::Json => output::json(&json!({"deleted": trust.to_string()})),
                Output::Table => outln!("deleted {trust}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(api: &Client, out: Output, trust: &TrustRef, what: &str) -> anyhow::Result<()> {
    let v = api.post(&format!("{}/{what}", path(trust)), json!({})).await?;
    match out {
        Output::Json => output::json(&v),
        Output::Table => output::record(&v["trust"], TRUST_COLUMNS),
    }
    Ok(())
}

pub async fn key(s: &Settings, out: Output, c: KeyCmd) -> anyhow::Result<ExitCode> {
    // Whoever holds a wrapped link needs no admin token to use it.
    if let KeyCmd::Unwrap { url } = &c {
        return crate::rotation::unwrap(s, url, out).await;
    }
    let api = client(s)?;
    match c {
        KeyCmd::Unwrap { .. } => {}
        KeyCmd::Rotate { trust, overlap, key_file, key_stdin, wrap } => {
            let key = local::read_key_input(key_file.as_deref(), key_stdin)?;
            let mut body = json!({"overlap": overlap});
            if let Some(w) = wrap {
                body["wrap"] = json!(w);
            }
            if let Some(k) = &key {
                body["key"] = json!(k.expose());
            }
            let v = api.post(&format!("{}/keys/rotate", path(&trust)), body).await?;
            print_with_key(out, &v);
        }
        KeyCmd::Revoke { trust, version, force } => {
            let force = if force { "?force=true" } else { "" };
            let v = api.post(&format!("{}/keys/{version}/revoke{force}", path(&trust)), json!({})).await?;
            if v["unchanged"].as_bool() == Some(true) {
                output::note(&format!("version {version} of {trust} had already expired; nothing changed"));
            }
            print_with_key(out, &v);
        }
        KeyCmd::List { trust } => {
            let v = api.get(&format!("{}/keys", path(&trust))).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::table(v["keys"].as_array().map_or(&[][..], |a| a), KEY_COLUMNS),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token(s: &Settings, out: Output, c: TokenCmd) -> anyhow::Result<ExitCode> {
    let api = client(s)?;
    let cols = &["name", "role", "+created_at", "expires_at", "revoked_at", "last_used_at"];
    match c {
        TokenCmd::Create { name, role, ttl } => {
            let mut body = json!({"name": name, "role": role});
            if let Some(t) = ttl {
                body["ttl"] = json!(t);
            }
            let v = api.post("/tokens", body).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => {
                    output::note("The token below is shown once; fedkey keeps only its hash.");
                    output::secret("token", v["token"].as_str().unwrap_or_default());
                    output::record(&v, cols);
                }
            }
        }
        TokenCmd::List => {
            let v = api.get("/tokens").await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::table(v["tokens"].as_array().map_or(&[][..], |a| a), cols),
            }
        }
        TokenCmd::Revoke { name } => {
            let v = api.post(&format!("/tokens/{}/revoke", q(&name)), json!({})).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::record(&v, cols),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(s: &Settings, out: Output, c: AuditCmd) -> anyhow::Result<ExitCode> {
    match c {
        AuditCmd::Verify { public_key, offline } => {
            if s.token.is_some() && !offline && public_key.is_none() {
                let v = client(s)?.get("/audit/verify").await?;
                match out {
                    Output::Json => output::json(&v),
                    Output::Table if v["ok"] == json!(true) => {
                        outln!(
                            "audit log OK: {} records, {} checkpoints verified, head {}",
                            v["records"],
                            v["checkpoints"],
                            v["head"].as_str().unwrap_or("")
                        )
                    }
                    Output::Table => eprintln!("audit verification FAILED: {}", v["error"].as_str().unwrap_or("")),
                }
                return Ok(if v["ok"] == json!(true) { ExitCode::SUCCESS } else { ExitCode::from(3) });
            }
            let ok = local::audit_verify(s, public_key.as_deref(), out).await?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(3) })
        }
        AuditCmd::Export { since, until, directory, trust, action, out: file, format, offline } => {
            let args =
                crate::audit_cli::ExportArgs { since, until, directory, trust, action, out: file, format, offline };
            crate::audit_cli::export(s, args).await
        }
        AuditCmd::Tail { lines, follow, action } => crate::audit_cli::tail(s, out, lines, follow, action).await,
    }
}

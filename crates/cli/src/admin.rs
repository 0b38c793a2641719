//! Admin commands: thin wrappers over the admin API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use fedkey_api::audit::AuditVerification;
use fedkey_api::directories::{
    CreateDirectory, Directory, DirectoryDeleted, DirectoryDetail, DirectoryList, DirectorySettings,
};
use fedkey_api::keys::{KeyList, KeyVersion, RevokeKeyResponse, RotateKeyRequest, RotateKeyResponse, WrappedLink};
use fedkey_api::tokens::{AdminToken, CreateToken, TokenCreated, TokenList};
use fedkey_api::trusts::{
    CreateTrust, ScopesRequest, Trust, TrustCreated, TrustDetail, TrustEnvelope, TrustList, TrustPolicyRequest,
};
use fedkey_core::{Direction, PasswordPolicy, PeerKind, Role, TrustRef};
use serde_json::json;

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
    /// Change a directory's settings.
    Settings {
        /// Directory name.
        name: String,
        /// What the SCIM service does with a `password` a client sends: fingerprint (keep
        /// only a keyed fingerprint), ignore (drop it) or refuse (answer 400).
        #[arg(long, value_parser = parse_password_policy)]
        password_policy: PasswordPolicy,
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
    fn request(&self) -> TrustPolicyRequest {
        TrustPolicyRequest {
            privileged_groups: self.privileged_groups.clone(),
            allowed_sources: self.allowed_sources.clone(),
            rate_limit: self.rate_limit,
        }
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
fn parse_password_policy(s: &str) -> Result<PasswordPolicy, String> {
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
const DIRECTORY_COLUMNS: &[&str] = &["name", "password_policy", "created_at", "+created_by"];
const LEAK_COLUMNS: &[&str] = &["ref", "leak_policy", "pending_auth", "updated_at"];
const POLICY_COLUMNS: &[&str] = &["ref", "privileged_groups", "allowed_sources", "rate_limit", "updated_at"];

/// What a response carrying a one-time key holds, for [`print_with_key`].
struct WithKey<'a> {
    key: Option<&'a str>,
    wrapped_link: Option<&'a WrappedLink>,
    /// The trust, when the answer has it (a trust's creation).
    trust: Option<&'a Trust>,
    key_version: &'a KeyVersion,
}

/// Prints a response carrying a one-time key: the key first, then what it belongs to.
fn print_with_key(out: Output, answer: &impl serde::Serialize, v: WithKey<'_>) {
    match out {
        Output::Json => output::json(answer),
        Output::Table => {
            if let Some(k) = v.key {
                output::note("The key below is shown once. Deliver it to the peer now; fedkey keeps only its hash.");
                output::secret("key", k);
            }
            if let Some(link) = v.wrapped_link {
                output::note(
                    "The link below reveals the key once (POST, or `fedkey key unwrap URL`). A second use is refused and alerts.",
                );
                output::secret("wrapped_link", &link.url);
                outln!("expires_at:   {}", link.expires_at);
            }
            if let Some(trust) = v.trust {
                output::record(trust, TRUST_COLUMNS);
                // The trust's lines already gave scopes and created_at: the key's own only.
                let key_only: Vec<&str> = KEY_COLUMNS
                    .iter()
                    .copied()
                    .filter(|k| !TRUST_COLUMNS.iter().any(|t| t.trim_start_matches('+') == k.trim_start_matches('+')))
                    .collect();
                output::record(v.key_version, &key_only);
            } else {
                output::record(v.key_version, KEY_COLUMNS);
            }
        }
    }
}

pub async fn directory(s: &Settings, out: Output, c: DirectoryCmd) -> anyhow::Result<ExitCode> {
    let api = client(s)?;
    match c {
        DirectoryCmd::Create { name } => {
            let v: Directory = api.post_as("/directories", &CreateDirectory { name }).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::record(&v, DIRECTORY_COLUMNS),
            }
        }
        DirectoryCmd::List => {
            let v: DirectoryList = api.get_as("/directories").await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::table(&v.directories, DIRECTORY_COLUMNS),
            }
        }
        DirectoryCmd::Show { name } => {
            let v: DirectoryDetail = api.get_as(&format!("/directories/{}", q(&name))).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::record(
                    &v,
                    &[
                        "name",
                        "id",
                        "password_policy",
                        "created_at",
                        "created_by",
                        "trusts",
                        "users",
                        "groups",
                        "targets",
                    ],
                ),
            }
        }
        DirectoryCmd::Settings { name, password_policy } => {
            let p = format!("/directories/{}/settings", q(&name));
            let v: Directory = api.put_as(&p, &DirectorySettings { password_policy }).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::record(&v, DIRECTORY_COLUMNS),
            }
        }
        DirectoryCmd::Delete { name, force } => {
            let p = format!("/directories/{}{}", q(&name), if force { "?force=true" } else { "" });
            let v: DirectoryDeleted = api.send(reqwest::Method::DELETE, &p, None::<&()>).await?;
            let d = &v.deleted;
            match out {
                Output::Json => output::json(&v),
                Output::Table => outln!(
                    "deleted directory {name} ({} trusts, {} users, {} groups, {} targets)",
                    d.trusts,
                    d.users,
                    d.groups,
                    d.targets
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
            let policy = policy.request();
            let body = CreateTrust {
                name,
                direction,
                peer_kind: Some(peer_kind),
                scopes: (!scopes.is_empty()).then_some(scopes),
                description,
                key: key.as_ref().map(|k| k.expose().to_owned()),
                privileged_groups: policy.privileged_groups,
                allowed_sources: policy.allowed_sources,
                rate_limit: policy.rate_limit,
            };
            let v: TrustCreated = api.post_as(&format!("/directories/{directory}/trusts"), &body).await?;
            let shown = WithKey {
                key: v.key.as_deref(),
                wrapped_link: None,
                trust: Some(&v.trust),
                key_version: &v.key_version,
            };
            print_with_key(out, &v, shown);
        }
        TrustCmd::List { directory } => {
            let p = match directory {
                Some(d) => format!("/directories/{d}/trusts"),
                None => "/trusts".into(),
            };
            let v: TrustList = api.get_as(&p).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::table(&v.trusts, TRUST_COLUMNS),
            }
        }
        TrustCmd::Show { trust } => {
            let v: TrustDetail = api.get_as(&path(&trust)).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => {
                    output::record(
                        &v.trust,
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
                    output::table(&v.keys, KEY_COLUMNS);
                }
            }
        }
        TrustCmd::Policy { trust, policy } => {
            let v: TrustEnvelope = api.put_as(&format!("{}/policy", path(&trust)), &policy.request()).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::record(&v.trust, POLICY_COLUMNS),
            }
        }
        TrustCmd::LeakSettings { trust, leak_policy, pending_auth } => {
            // Sent as given: the server names a value it does not know.
            let body = json!({"leak_policy": leak_policy, "pending_auth": pending_auth});
            let v: TrustEnvelope = api.put_as(&format!("{}/leak-settings", path(&trust)), &body).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::record(&v.trust, LEAK_COLUMNS),
            }
        }
        TrustCmd::Scopes { trust, scopes } => {
            let v: TrustEnvelope = api.put_as(&format!("{}/scopes", path(&trust)), &ScopesRequest { scopes }).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::record(&v.trust, TRUST_COLUMNS),
            }
        }
        TrustCmd::Suspend { trust } => status(&api, out, &trust, "suspend").await?,
        TrustCmd::Resume { trust } => status(&api, out, &trust, "resume").await?,
        TrustCmd::Delete { trust } => {
            api.send::<()>(reqwest::Method::DELETE, &path(&trust), None::<&()>).await?;
            match out {
                Output::Json => output::json(&json!({"deleted": trust.to_string()})),
                Output::Table => outln!("deleted {trust}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(api: &Client, out: Output, trust: &TrustRef, what: &str) -> anyhow::Result<()> {
    let v: TrustEnvelope = api.post_as(&format!("{}/{what}", path(trust)), &json!({})).await?;
    match out {
        Output::Json => output::json(&v),
        Output::Table => output::record(&v.trust, TRUST_COLUMNS),
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
            let body =
                RotateKeyRequest { overlap: Some(overlap), key: key.as_ref().map(|k| k.expose().to_owned()), wrap };
            let v: RotateKeyResponse = api.post_as(&format!("{}/keys/rotate", path(&trust)), &body).await?;
            let shown = WithKey {
                key: v.key.as_deref(),
                wrapped_link: v.wrapped_link.as_ref(),
                trust: None,
                key_version: &v.key_version,
            };
            print_with_key(out, &v, shown);
        }
        KeyCmd::Revoke { trust, version, force } => {
            let force = if force { "?force=true" } else { "" };
            let v: RevokeKeyResponse =
                api.post_as(&format!("{}/keys/{version}/revoke{force}", path(&trust)), &json!({})).await?;
            if v.unchanged {
                output::note(&format!("version {version} of {trust} had already expired; nothing changed"));
            }
            print_with_key(
                out,
                &v,
                WithKey { key: None, wrapped_link: None, trust: None, key_version: &v.key_version },
            );
        }
        KeyCmd::List { trust } => {
            let v: KeyList = api.get_as(&format!("{}/keys", path(&trust))).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::table(&v.keys, KEY_COLUMNS),
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
            let v: TokenCreated = api.post_as("/tokens", &CreateToken { name, role, ttl }).await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => {
                    output::note("The token below is shown once; fedkey keeps only its hash.");
                    output::secret("token", &v.token);
                    output::record(&v, cols);
                }
            }
        }
        TokenCmd::List => {
            let v: TokenList = api.get_as("/tokens").await?;
            match out {
                Output::Json => output::json(&v),
                Output::Table => output::table(&v.tokens, cols),
            }
        }
        TokenCmd::Revoke { name } => {
            let v: AdminToken = api.post_as(&format!("/tokens/{}/revoke", q(&name)), &json!({})).await?;
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
                let v: AuditVerification = client(s)?.get_as("/audit/verify").await?;
                let ok = match (&v, out) {
                    (_, Output::Json) => {
                        output::json(&v);
                        matches!(v, AuditVerification::Intact(_))
                    }
                    (AuditVerification::Intact(i), Output::Table) => {
                        outln!(
                            "audit log OK: {} records, {} checkpoints verified, head {}",
                            i.records,
                            i.checkpoints,
                            i.head
                        );
                        true
                    }
                    (AuditVerification::Broken(b), Output::Table) => {
                        eprintln!("audit verification FAILED: {}", b.error);
                        false
                    }
                };
                return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(3) });
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

//! Local set-up and offline commands: the data directory, master key, database and
//! store; `init`, `serve`, `audit verify/export` offline, `master-key rotate`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fedkey_core::{SystemClock, Timestamp};
use fedkey_crypto::{Keyring, MasterKey, Secret};
use fedkey_store::audit::{AuditFilter, WriterConfig};
use fedkey_store::install::Install;
use fedkey_store::keyfile::{KeyringFile, KeyringSource};
use fedkey_store::{Actor, Db, Store};

use crate::config::Settings;
use crate::output::Output;

/// A database this binary must not run on (its migrations differ) is the operator's to
/// resolve, like a wrong setting: a configuration error (exit 2).
fn db_error(e: fedkey_store::StoreError) -> anyhow::Error {
    match e {
        e @ fedkey_store::StoreError::MigrationChanged { .. } => crate::exit::config(e),
        e => e.into(),
    }
}

/// Creates the data directory (mode 0700) when the database lives in it.
pub fn ensure_data_dir(s: &Settings) -> anyhow::Result<()> {
    let d = &s.data_dir;
    if !d.exists() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create data directory {}", d.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// The database holds no plaintext secret, but its metadata is still nobody else's
/// business: SQLite files are made owner-only (the process umask decides otherwise).
fn restrict_sqlite_files(s: &Settings) {
    #[cfg(unix)]
    for p in s.sqlite_files() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
}

/// The master keyring, from a file or sealed by OpenBao transit.
pub enum Keys {
    File(Arc<KeyringFile>),
    Transit(Arc<crate::transit::TransitKeyring>),
}

impl Keys {
    pub fn source(&self) -> Arc<dyn KeyringSource> {
        match self {
            Keys::File(f) => f.clone(),
            Keys::Transit(t) => t.clone(),
        }
    }

    pub fn keyring(&self) -> anyhow::Result<Arc<Keyring>> {
        Ok(self.source().keyring()?)
    }

    pub async fn store(&self, ring: &Keyring) -> anyhow::Result<()> {
        match self {
            Keys::File(f) => Ok(f.store(ring)?),
            Keys::Transit(t) => t.store(ring).await,
        }
    }
}

/// Opens the keyring, creating it only for a brand-new install: if the database already
/// holds data, a missing key file is an error (the data could not be decrypted).
async fn keyring_for(s: &Settings, db: &Db, create: bool) -> anyhow::Result<Keys> {
    let path = s.master_key_file();
    let has_install = sqlx_install_exists(db).await?;
    if !path.exists() && (has_install || !create) {
        anyhow::bail!(
            "master key file {} not found; without it the stored secrets cannot be decrypted (restore it from backup or pass --master-key-file)",
            path.display()
        );
    }
    if s.transit() {
        let clock: Arc<dyn fedkey_core::Clock> = Arc::new(SystemClock::default());
        let t = crate::transit::TransitKeyring::open(&path, s.transit_settings()?, clock, create).await?;
        return Ok(Keys::Transit(Arc::new(t)));
    }
    if path.exists() {
        return Ok(Keys::File(Arc::new(KeyringFile::open(&path)?)));
    }
    Ok(Keys::File(Arc::new(KeyringFile::create(&path)?)))
}

async fn sqlx_install_exists(db: &Db) -> anyhow::Result<bool> {
    Ok(read_install_id(db).await.is_ok())
}

pub struct Opened {
    pub store: Arc<Store>,
    pub bootstrap_token: Option<Secret>,
    pub clock: SystemClock,
}

/// Everything `init` and `serve` share: data dir, database, master key, store, and the
/// bootstrap admin token on first start.
pub async fn open(s: &Settings) -> anyhow::Result<Opened> {
    ensure_data_dir(s)?;
    let db_options = s.db_options().map_err(crate::exit::config)?;
    let cache_ttl = s.auth_cache_ttl().map_err(crate::exit::config)?;
    let auth_failures = s.failed_auth_policy().map_err(crate::exit::config)?;
    let db = Db::connect_with(&s.database_url(), &db_options).await.map_err(db_error)?;
    restrict_sqlite_files(s);
    let keys = keyring_for(s, &db, true).await?;
    if let Keys::Transit(t) = &keys {
        // Picks up a keyring that `master-key rotate` resealed, like the file provider does.
        let t = t.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if let Err(e) = t.reload_if_changed().await {
                    tracing::warn!(error = %e, "could not reload the sealed master keyring");
                }
            }
        });
    }
    let clock = SystemClock::default();
    let (store, _) =
        Store::open(db, keys.source(), Arc::new(clock.clone()), WriterConfig::default(), cache_ttl).await?;
    let store = store.with_auth_failure_policy(auth_failures);
    let bootstrap_token = store.bootstrap_admin().await?;
    Ok(Opened { store: Arc::new(store), bootstrap_token, clock })
}

/// The bootstrap admin token, on stdout only: never on stderr, which is the log stream
/// (`--log-format json` keeps stderr pure JSON, and the token out of log collectors).
pub fn print_bootstrap(token: &Secret) {
    outln!("┌──────────────────────────────────────────────────────────────────────────┐");
    outln!("│ Bootstrap admin token (shown once; store it in your secrets manager):     │");
    outln!("└──────────────────────────────────────────────────────────────────────────┘");
    crate::output::secret("admin_token", token.expose());
}

/// Offline verification of the audit chain and checkpoints.
pub async fn audit_verify(s: &Settings, public_key_hex: Option<&str>, out: Output) -> anyhow::Result<bool> {
    let db = Db::connect_existing(&s.database_url()).await.map_err(db_error)?;
    let (origin, public_key) = install_identity(s, &db, public_key_hex).await?;
    let pk = hex::encode(&public_key);
    match fedkey_store::audit::verify(&db, &origin, &public_key).await? {
        Ok(rep) if out == Output::Json => {
            let head = hex::encode(rep.head_hash);
            crate::output::json(
                &serde_json::json!({"ok": true, "records": rep.records, "checkpoints": rep.checkpoints, "head": head, "origin": origin, "public_key": pk}),
            );
            Ok(true)
        }
        Ok(rep) => {
            outln!(
                "audit log OK: {} records, {} checkpoints verified, head {}",
                rep.records,
                rep.checkpoints,
                hex::encode(rep.head_hash)
            );
            outln!("origin {origin}, checkpoint public key {pk} (pin it with --public-key)");
            Ok(true)
        }
        Err(e) => {
            if out == Output::Json {
                crate::output::json(&serde_json::json!({"ok": false, "seq": e.seq, "error": e.to_string()}));
            }
            eprintln!("audit verification FAILED at record {}: {}", e.seq, e.reason);
            Ok(false)
        }
    }
}

/// The audit origin and the checkpoint public key. With the master key, the public key
/// is derived from the decrypted signing key (so a swapped public key is caught);
/// `--public-key` pins it explicitly.
async fn install_identity(s: &Settings, db: &Db, pinned: Option<&str>) -> anyhow::Result<(String, Vec<u8>)> {
    let path = s.master_key_file();
    if let Some(hexkey) = pinned {
        let pk = hex::decode(hexkey.trim()).map_err(|_| anyhow::anyhow!("--public-key must be hex"))?;
        let origin = read_install_id(db).await?;
        return Ok((origin, pk));
    }
    if !path.exists() {
        anyhow::bail!("master key file {} not found: pass --master-key-file, or pin --public-key HEX", path.display());
    }
    let ring = keyring_for(s, db, false).await?.keyring()?;
    let inst =
        Install::load(db, &ring).await?.ok_or_else(|| anyhow::anyhow!("this database has not been initialised"))?;
    Ok((inst.id.clone(), inst.public_key.to_vec()))
}

async fn read_install_id(db: &Db) -> anyhow::Result<String> {
    use sqlx::Row;
    let row = sqlx::query("SELECT value FROM install WHERE name = 'install_id'")
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| anyhow::anyhow!("this database has not been initialised"))?;
    Ok(String::from_utf8(row.try_get("value")?)?)
}

/// Writes the log as JSON lines, oldest first.
pub async fn audit_export(
    s: &Settings,
    filter: AuditFilter,
    format: crate::audit_cli::ExportFormat,
    mut out: Box<dyn std::io::Write + Send>,
) -> anyhow::Result<u64> {
    let csv = format == crate::audit_cli::ExportFormat::Csv;
    let db = Db::connect_existing(&s.database_url()).await.map_err(db_error)?;
    let mut f = filter;
    let mut n = 0;
    if csv {
        out.write_all(fedkey_audit::CSV_HEADER.as_bytes())?;
    }
    loop {
        f.limit = 5000;
        let page = fedkey_store::audit::query(&db, &f).await?;
        let Some(last) = page.last() else { break };
        f.after_seq = Some(last.seq);
        for r in &page {
            if csv {
                out.write_all(r.to_csv_row().as_bytes())?;
            } else {
                serde_json::to_writer(&mut out, &r.to_json())?;
                out.write_all(b"\n")?;
            }
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}

/// Adds a new active master key, re-wraps every DEK under it (one row per transaction;
/// servers keep running and pick up the new keyring file), then retires the old keys.
pub async fn master_key_rotate(s: &Settings, progress: bool, out: Output) -> anyhow::Result<()> {
    let db = Db::connect_existing(&s.database_url()).await.map_err(db_error)?;
    let keys = keyring_for(s, &db, false).await?;
    let current = keys.keyring()?;
    let mut ring = Keyring::parse(&current.render())?;
    let new_key = MasterKey::generate()?;
    let new_id = new_key.id().to_owned();
    ring.push_active(new_key);
    // Written before any rewrap: a crash mid-way leaves a keyring that opens everything.
    keys.store(&ring).await?;
    let clock = SystemClock::default();
    let (store, _) = Store::open(db, keys.source(), Arc::new(clock), WriterConfig::default(), Duration::ZERO).await?;
    let total = store.envelope_count().await?;
    let bar = if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("rewrapping {bar:40} {pos}/{len} {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let rep = store
        .rewrap_all(&Actor::cli("master-key-rotate"), &ring, |n| {
            if let Some(b) = &bar {
                b.set_position(n);
            }
        })
        .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    ring.retain_active_only();
    keys.store(&ring).await?;
    match out {
        Output::Json => crate::output::json(&serde_json::json!({"active_key": new_id, "report": rep})),
        Output::Table => outln!(
            "master key rotated to {new_id}: {} envelopes rewrapped, {} already current, {} total",
            rep.rewrapped,
            rep.already_current,
            rep.total
        ),
    }
    Ok(())
}

/// Parses `--since`: RFC 3339 or a duration back from now (`24h`).
pub fn parse_since(v: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    if let Some(t) = Timestamp::parse_rfc3339(v) {
        return Ok(t);
    }
    humantime::parse_duration(v)
        .map(|d| now.saturating_sub(d))
        .map_err(|_| anyhow::anyhow!("--since: {v:?} is neither an RFC 3339 time nor a duration like 24h"))
}

pub fn read_key_input(file: Option<&Path>, stdin: bool) -> anyhow::Result<Option<Secret>> {
    use std::io::Read;
    let raw = match (file, stdin) {
        (Some(p), _) => zeroize::Zeroizing::new(
            std::fs::read_to_string(p).with_context(|| format!("cannot read key file {}", p.display()))?,
        ),
        (None, true) => {
            let mut s = zeroize::Zeroizing::new(String::new());
            std::io::stdin().read_to_string(&mut s).context("cannot read the key from stdin")?;
            s
        }
        (None, false) => return Ok(None),
    };
    let k = raw.trim_end_matches(['\n', '\r']);
    if k.is_empty() {
        anyhow::bail!("the key is empty");
    }
    Ok(Some(Secret::new(k.to_owned())))
}

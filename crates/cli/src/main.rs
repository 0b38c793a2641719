//! `fedkey`: the server (`serve`, `init`) and the admin CLI.

/// `println!` that ignores a closed stdout (`fedkey … | head`) instead of panicking, and
/// prints nothing under `--quiet` or `--field` (see `output`).
macro_rules! outln {
    ($($t:tt)*) => {{
        if !crate::output::quiet() {
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout(), $($t)*);
        }
    }};
}

mod admin;
mod audit_cli;
mod check;
mod client;
mod config;
mod devtls;
mod exit;
mod import;
mod local;
mod notify;
mod output;
mod rotation;
mod scan;
mod sync;
mod transit;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fedkey_server::{AppState, ServeOptions, TlsFiles};
use serde_json::{Map, Value, json};

use config::{LogFormat, Settings};
use output::{ColorChoice, Output};

#[derive(Parser)]
#[command(
    name = "fedkey",
    version,
    about = "Federation provisioning keys: issue, rotate, audit, and serve SCIM with them"
)]
struct Cli {
    /// TOML configuration file [env: FEDKEY_CONFIG].
    #[arg(long, global = true, env = "FEDKEY_CONFIG", hide_env = true)]
    config: Option<PathBuf>,
    /// Data directory: SQLite database and master key file [env: FEDKEY_DATA_DIR].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// `sqlite:PATH` or `postgres://…`; default SQLite in the data directory [env: FEDKEY_DATABASE_URL(_FILE)].
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Master key file; default DATA_DIR/master.key [env: FEDKEY_MASTER_KEY_FILE].
    #[arg(long, global = true)]
    master_key_file: Option<PathBuf>,
    /// Admin API URL for admin commands [env: FEDKEY_URL].
    #[arg(long, global = true)]
    server: Option<String>,
    /// CA certificate (PEM) the server's TLS certificate must chain to, besides the
    /// system's roots [env: FEDKEY_CACERT].
    #[arg(long, global = true, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Admin token for admin commands [env: FEDKEY_TOKEN, FEDKEY_TOKEN_FILE].
    #[arg(long, global = true)]
    token: Option<String>,
    /// How long an admin command waits for the server, e.g. 10m (default 60s)
    /// [env: FEDKEY_REQUEST_TIMEOUT].
    #[arg(long, global = true)]
    request_timeout: Option<String>,
    /// Human-readable tables, or JSON for scripts.
    #[arg(long, global = true, value_enum, default_value = "table")]
    output: Output,
    /// Tables: every column and full timestamps, however wide.
    #[arg(long, global = true)]
    wide: bool,
    /// Print nothing on success but a one-time secret (bare); errors still go to stderr.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
    /// Print only this field: one value per row of a table, or the field of a record.
    #[arg(long, global = true, value_name = "NAME")]
    field: Option<String>,
    /// Colour table cells: auto (a terminal without NO_COLOR), always or never.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    color: ColorChoice,
    /// Log format on stderr [env: FEDKEY_LOG_FORMAT].
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Log level, e.g. info or debug [env: FEDKEY_LOG_LEVEL; FEDKEY_LOG takes a full filter].
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Set up (if needed) and serve the admin API and SCIM endpoints.
    Serve(ServeArgs),
    /// Set up the data directory, database and master key without serving.
    Init,
    /// Directories (one per tenant).
    #[command(subcommand)]
    Directory(admin::DirectoryCmd),
    /// Trusts between a directory and a peer.
    #[command(subcommand)]
    Trust(admin::TrustCmd),
    /// Key versions of a trust.
    #[command(subcommand)]
    Key(admin::KeyCmd),
    /// Admin API tokens.
    #[command(subcommand)]
    Token(admin::TokenCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(admin::AuditCmd),
    /// The master key that wraps every stored secret.
    #[command(subcommand, name = "master-key")]
    MasterKey(MasterKeyCmd),
    /// Scheduled, manual and emergency rotations through the rotation engine.
    #[command(subcommand)]
    Rotation(rotation::RotationCmd),
    /// How new key versions reach a trust's peer (Entra ID, Okta, OpenBao, file, webhook).
    #[command(subcommand)]
    Connector(rotation::ConnectorCmd),
    /// The peer's published signing keys (JWKS, SAML metadata): watched, versioned, approved.
    #[command(subcommand)]
    Material(rotation::MaterialCmd),
    /// Outbound provisioning: targets, delivery and deprovisioning status, dead letters.
    #[command(subcommand)]
    Sync(sync::SyncCmd),
    /// Import users and groups into a directory from a CSV or JSON-lines file, through the
    /// SCIM write path (validated, audited, fanned out to targets). Re-running is safe:
    /// rows match existing resources and unchanged ones are not rewritten. Exit 1 when a row failed.
    Import(import::ImportArgs),
    /// Find fedkey keys and admin tokens in files, directories and git history (`--git`);
    /// `--report URL` sends them to a server's leak endpoint. Exit 0: nothing found,
    /// 1: found, 2: the scan or the report failed.
    Scan(scan::ScanArgs),
    /// What needs attention (trusts, sync targets, audit log), with the action to take
    ///
    /// Trusts (key expiry, rotations, trust material), sync targets (dead letters,
    /// failures, lag), connectors and the audit log. Exit 0: healthy or information only,
    /// 1: warnings, 2: critical.
    Doctor,
    /// Print a shell completion script: `fedkey completions bash > /etc/bash_completion.d/fedkey`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (fedkey.1 and one per subcommand) into --dir, or print fedkey(1).
    Man {
        /// Directory to write every page into, e.g. /usr/local/share/man/man1.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The configuration: `config check` validates it as `serve` would and shows it redacted.
    #[command(subcommand)]
    Config(check::ConfigCmd),
    /// GET this node's /healthz, for container health checks (no curl needed).
    /// Exit 0: healthy, 1: not.
    #[command(name = "health-probe")]
    HealthProbe(check::ProbeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080) [env: FEDKEY_LISTEN].
    #[arg(long)]
    listen: Option<String>,
    /// PEM certificate chain for TLS [env: FEDKEY_TLS_CERT].
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS [env: FEDKEY_TLS_KEY].
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Development only: serve TLS with a local CA and a certificate for localhost,
    /// 127.0.0.1 and ::1, made in DATA_DIR/dev-tls (clients: --ca-cert DATA_DIR/dev-tls/ca.pem).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    dev_tls: bool,
    /// How long a verified key stays cached, e.g. 5s; 0s disables [env: FEDKEY_AUTH_CACHE_TTL].
    #[arg(long)]
    auth_cache_ttl: Option<String>,
    /// Allow plain HTTP on a non-loopback address. Keys travel in headers: use TLS.
    #[arg(long)]
    insecure_http: bool,
    /// How long a client has to send a request's header, at most 10s (default 10s)
    /// [env: FEDKEY_HEADER_READ_TIMEOUT].
    #[arg(long)]
    header_read_timeout: Option<String>,
    /// How long a connection with no request in progress stays open (default 60s)
    /// [env: FEDKEY_IDLE_TIMEOUT].
    #[arg(long)]
    idle_timeout: Option<String>,
    /// Connections served at once; more wait in the listen backlog (default 512)
    /// [env: FEDKEY_MAX_CONNECTIONS].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Testing only: let an admin advance the server clock through the API. Refused by
    /// builds without the `test-hooks` feature.
    #[arg(long, hide = true)]
    unsafe_test_clock: bool,
}

#[derive(Subcommand)]
enum MasterKeyCmd {
    /// Generate a new master key and rewrap every stored secret under it (online).
    Rotate,
}

fn flags(cli: &Cli) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    put("data_dir", cli.data_dir.as_ref().map(|p| json!(p)));
    put("database_url", cli.database_url.as_ref().map(|v| json!(v)));
    put("master_key_file", cli.master_key_file.as_ref().map(|p| json!(p)));
    put("url", cli.server.as_ref().map(|v| json!(v)));
    put("token", cli.token.as_ref().map(|v| json!(v)));
    put("cacert", cli.ca_cert.as_ref().map(|p| json!(p)));
    put("request_timeout", cli.request_timeout.as_ref().map(|v| json!(v)));
    put("log_format", cli.log_format.map(|v| json!(v)));
    put("log_level", cli.log_level.as_ref().map(|v| json!(v)));
    if let Cmd::Serve(a) = &cli.cmd {
        put("listen", a.listen.as_ref().map(|v| json!(v)));
        put("auth_cache_ttl", a.auth_cache_ttl.as_ref().map(|v| json!(v)));
        put("tls_cert", a.tls_cert.as_ref().map(|p| json!(p)));
        put("tls_key", a.tls_key.as_ref().map(|p| json!(p)));
        put("insecure_http", a.insecure_http.then_some(json!(true)));
        put("unsafe_test_clock", a.unsafe_test_clock.then_some(json!(true)));
        put("header_read_timeout", a.header_read_timeout.as_ref().map(|v| json!(v)));
        put("idle_timeout", a.idle_timeout.as_ref().map(|v| json!(v)));
        put("max_connections", a.max_connections.map(|v| json!(v)));
    }
    m
}

fn init_tracing(s: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("FEDKEY_LOG").unwrap_or_else(|_| EnvFilter::new(format!("{},sqlx=warn", s.log_level)));
    let no_color = std::env::var("NO_COLOR").ok();
    let ansi = output::color_enabled(
        ColorChoice::Auto,
        no_color.as_deref(),
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = match s.log_format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.try_init(),
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    configure_output(&cli);
    // Generated from the command definitions alone: no settings to load.
    match &cli.cmd {
        Cmd::Completions { shell } => return completions(*shell),
        Cmd::Man { dir } => return man(dir.as_deref()),
        _ => {}
    }
    let settings = match Settings::load(cli.config.as_deref(), &flags(&cli)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(exit::USAGE);
        }
    };
    init_tracing(&settings);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli, settings)) {
        Ok(_) if output::field_missed() => {
            eprintln!("error: --field names a field that this command's output does not have (see --output json)");
            ExitCode::from(exit::USAGE)
        }
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::code_for(&e)
        }
    }
}

fn configure_output(cli: &Cli) {
    use std::io::IsTerminal as _;
    let tty = std::io::stdout().is_terminal();
    let no_color = std::env::var("NO_COLOR").ok();
    let columns = std::env::var("COLUMNS").ok();
    output::configure(output::Style {
        wide: cli.wide,
        quiet: cli.quiet,
        field: cli.field.clone(),
        color: output::color_enabled(cli.color, no_color.as_deref(), tty),
        width: output::terminal_width(columns.as_deref(), tty),
    });
}

fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "fedkey", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// fedkey(1) on stdout, or every page (`fedkey.1`, `fedkey-trust-create.1`, …) into `dir`.
fn man(dir: Option<&std::path::Path>) -> ExitCode {
    let cmd = <Cli as clap::CommandFactory>::command();
    let written = match dir {
        Some(d) => std::fs::create_dir_all(d).and_then(|_| clap_mangen::generate_to(cmd, d).map(|_| ())),
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the manual pages: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, s: Settings) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Serve(a) => serve(&s, a.dev_tls).await.map(|_| ExitCode::SUCCESS),
        Cmd::Completions { .. } | Cmd::Man { .. } => Ok(ExitCode::SUCCESS),
        Cmd::Init => {
            let opened = local::open(&s).await?;
            match (cli.output, &opened.bootstrap_token) {
                (Output::Json, t) => output::json(&json!({
                    "admin_token": t.as_ref().map(|t| t.expose()),
                    "data_dir": s.data_dir,
                    "database": redact_db_url(&s.database_url()),
                })),
                (Output::Table, Some(t)) => local::print_bootstrap(t),
                (Output::Table, None) => {
                    outln!("already initialised; no new admin token was created")
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::MasterKey(MasterKeyCmd::Rotate) => {
            local::master_key_rotate(&s, true, cli.output).await.map(|_| ExitCode::SUCCESS)
        }
        Cmd::Directory(c) => admin::directory(&s, cli.output, c).await,
        Cmd::Trust(c) => admin::trust(&s, cli.output, c).await,
        Cmd::Key(c) => admin::key(&s, cli.output, c).await,
        Cmd::Token(c) => admin::token(&s, cli.output, c).await,
        Cmd::Audit(c) => admin::audit(&s, cli.output, c).await,
        Cmd::Rotation(c) => rotation::rotation(&s, cli.output, c).await,
        Cmd::Connector(c) => rotation::connector(&s, cli.output, c).await,
        Cmd::Doctor => rotation::doctor(&s, cli.output).await,
        Cmd::Material(c) => rotation::material(&s, cli.output, c).await,
        Cmd::Sync(c) => sync::sync(&s, cli.output, c).await,
        Cmd::Import(a) => import::import(&s, cli.output, a).await,
        Cmd::Scan(a) => scan::scan(&s, cli.output, a).await,
        Cmd::Config(c) => Ok(check::config(&s, cli.config.as_deref(), cli.output, c).await),
        Cmd::HealthProbe(a) => check::probe(&s, a).await,
    }
}

fn redact_db_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(a), Some(b)) if b > a => format!("{}://***@{}", &url[..a], &url[b + 1..]),
        _ => url.to_owned(),
    }
}

/// What `serve` checks before it binds: every refusal here is a configuration error (exit 2).
struct ServePlan {
    addr: SocketAddr,
    tls: Option<TlsFiles>,
    dev_ca: Option<PathBuf>,
}

async fn serve_plan(s: &Settings, dev_tls: bool) -> anyhow::Result<ServePlan> {
    let addr: SocketAddr = match tokio::net::lookup_host(&s.listen).await.ok().and_then(|mut a| a.next()) {
        Some(a) => a,
        None => {
            return Err(exit::config(format!(
                "listen: {:?} is not an address like 127.0.0.1:8080 or localhost:8080",
                s.listen
            )));
        }
    };
    let mut dev_ca = None;
    let tls = match (&s.tls_cert, &s.tls_key, dev_tls) {
        (None, None, true) => {
            local::ensure_data_dir(s)?;
            let files = devtls::ensure(&s.data_dir)?;
            dev_ca = Some(files.ca);
            Some(TlsFiles { cert: files.cert, key: files.key })
        }
        (Some(_), _, true) | (_, Some(_), true) => {
            return Err(exit::config("--dev-tls makes its own certificate: leave out --tls-cert and --tls-key"));
        }
        (Some(cert), Some(key), false) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
        (None, None, false) => None,
        _ => return Err(exit::config("TLS needs both --tls-cert and --tls-key")),
    };
    if tls.is_none() && !fedkey_server::serve::plain_http_allowed(&addr) && !s.insecure_http {
        return Err(exit::config(format!(
            "refusing to serve plain HTTP on non-loopback address {addr}: keys travel in headers. Use --tls-cert/--tls-key, or --insecure-http behind a TLS-terminating proxy"
        )));
    }
    if let Some(t) = &tls {
        fedkey_server::serve::tls_acceptor(t).map_err(exit::config)?;
    }
    if s.unsafe_test_clock && !fedkey_server::TEST_HOOKS {
        return Err(exit::config(
            "--unsafe-test-clock (unsafe_test_clock) is refused: this fedkey is built without test hooks (cargo feature test-hooks), which are for tests only",
        ));
    }
    Ok(ServePlan { addr, tls, dev_ca })
}

async fn serve(s: &Settings, dev_tls: bool) -> anyhow::Result<()> {
    let ServePlan { addr, tls, dev_ca } = serve_plan(s, dev_tls).await?;
    let limits = s.conn_limits().map_err(exit::config)?;
    let engine_interval = s.engine_interval().map_err(exit::config)?;
    let source_limits = s.source_limits().map_err(exit::config)?;
    let trusted_proxies = s.trusted_proxies().map_err(exit::config)?;
    s.failed_auth_policy().map_err(exit::config)?;
    let egress = s.egress().map_err(exit::config)?;
    // Checked before anything is bound, opened or printed: a bad channel stops the start
    // (the signed webhook needs its secret; chat and SMTP settings are checked too).
    let channels = notify::channels(s, &egress).map_err(exit::config)?;
    let notify_policy = s.notify.policy().map_err(exit::config)?;
    let leaks = leak_intake(s).map_err(exit::config)?;
    let audit_sinks = s.audit_sinks(&egress).map_err(exit::config)?;
    // Bind before opening the store: a busy port must fail before a bootstrap token is
    // created, or that token would be printed by a server that never ran and the next
    // start would print none.
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local_addr = listener.local_addr()?;
    let opened = local::open(s).await?;
    if let Some(t) = &opened.bootstrap_token {
        local::print_bootstrap(t);
        tracing::info!("a bootstrap admin token was created and printed on stdout (never logged)");
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(ca) = &dev_ca {
        outln!("development TLS: clients trust {} (--ca-cert or FEDKEY_CACERT)", ca.display());
        if !local_addr.ip().is_loopback() {
            tracing::warn!(%local_addr, "--dev-tls certifies only localhost, 127.0.0.1 and ::1; other clients will refuse it");
        }
    }
    outln!("fedkey listening on {scheme}://{local_addr}");
    tracing::info!(%local_addr, scheme, database = %redact_db_url(&s.database_url()), "serving");
    if s.unsafe_test_clock {
        tracing::warn!("--unsafe-test-clock is on: admins can move this server's clock. Never use this in production.");
    }
    let public_url = s.public_url.clone().unwrap_or_else(|| format!("{scheme}://{local_addr}"));
    if s.public_url.is_none() && !local_addr.ip().is_loopback() {
        tracing::warn!(%public_url, "public_url is not set: connectors deliver a SCIM base URL and wrapped links built from the listen address; set FEDKEY_PUBLIC_URL to the address peers use");
    }
    let notifier = fedkey_notify::Notifier::new(opened.store.clone(), channels, notify_policy, egress.clone());
    let engine =
        std::sync::Arc::new(rotation_engine(s, &opened, &public_url, &egress, notifier.clone()).map_err(exit::config)?);
    let watchers = std::sync::Arc::new(fedkey_rotation::Watchers::new(
        opened.store.clone(),
        std::sync::Arc::new(opened.clock.clone()),
        engine.alerts().clone(),
        engine.node_id().to_owned(),
        egress.clone(),
    ));
    let dispatcher = std::sync::Arc::new(
        fedkey_sync::Dispatcher::new(
            opened.store.clone(),
            fedkey_sync::DispatcherConfig::new(engine.node_id().to_owned()),
            egress.clone(),
        )
        .with_notifier(notifier),
    );
    let scheduler = std::sync::Arc::new(fedkey_sync::Scheduler::new(
        dispatcher.clone(),
        fedkey_sync::SchedulerConfig::new(engine.node_id().to_owned()),
    ));
    let pusher = std::sync::Arc::new(fedkey_server::events::push::Pusher::new(
        opened.store.clone(),
        egress.clone(),
        public_url.clone(),
        fedkey_server::events::push::PushConfig::new(engine.node_id().to_owned()),
    ));
    let state = AppState::from(fedkey_server::state::AppParts {
        store: opened.store.clone(),
        test_clock: s.unsafe_test_clock.then(|| opened.clock.clone()),
        scheme,
        limiter: std::sync::Arc::new(fedkey_server::ratelimit::RateLimiter::new()),
        source_limiter: std::sync::Arc::new(fedkey_server::source_limit::SourceLimiter::new(source_limits)),
        trusted_proxies: trusted_proxies.into(),
        engine: Some(engine.clone()),
        watchers: Some(watchers.clone()),
        sync: Some(dispatcher.clone()),
        reconcile_schedule: Some(scheduler.clone()),
        events: Some(pusher.clone()),
        public_url,
        egress,
        leaks: std::sync::Arc::new(leaks),
        metrics_token: s.metrics_token.as_deref().map(|t| fedkey_crypto::sha256(t.as_bytes())),
    });
    if s.metrics_token.is_none() && !local_addr.ip().is_loopback() {
        tracing::warn!("metrics_token is not set: /metrics is open to anyone who can reach {local_addr}");
    }
    // With the test clock, the engine, the watchers and deliveries run only when a test asks
    // (`POST /api/v1/test/{engine,watchers,sync}/tick`, `/test/sync/reconcile-tick`), so what a
    // test observes is what it did.
    let node_id = engine.node_id().to_owned();
    let background = !s.unsafe_test_clock;
    let tasks: Vec<tokio::task::JoinHandle<()>> = if background {
        vec![
            tokio::spawn(engine.run(engine_interval)),
            tokio::spawn(watchers.run(engine_interval)),
            tokio::spawn(dispatcher.run(std::time::Duration::from_secs(2))),
            tokio::spawn(scheduler.run(std::time::Duration::from_secs(30))),
            tokio::spawn(pusher.run(std::time::Duration::from_secs(1))),
        ]
    } else {
        Vec::new()
    };
    // Audit streaming runs also under the test clock: it only moves records along.
    let streamer = fedkey_server::audit_stream::Streamer::new(opened.store.clone(), node_id, audit_sinks);
    let streams = streamer.spawn();
    // Summaries of failed authentications are written by this task (it follows the
    // store's clock, so also under the test clock) and once more on shutdown below.
    let failures = opened.store.spawn_auth_failure_flush(std::time::Duration::from_secs(1));
    let opts = ServeOptions { tls, sweep_interval: std::time::Duration::from_secs(5), limits };
    fedkey_server::serve(listener, state, opts, shutdown_signal()).await?;
    for t in tasks {
        t.abort();
    }
    failures.abort();
    for t in streams {
        t.abort();
    }
    streamer.release().await;
    match opened.store.flush_auth_failures(true).await {
        Ok(n) => tracing::info!(summarized = n, "failed-authentication summaries written"),
        Err(e) => tracing::error!(error = %e, "failed-authentication summaries could not be written at shutdown"),
    }
    opened.store.db.close().await;
    Ok(())
}

fn rotation_engine(
    s: &Settings,
    opened: &local::Opened,
    public_url: &str,
    egress: &fedkey_egress::Egress,
    notifier: fedkey_notify::Notifier,
) -> anyhow::Result<fedkey_rotation::Engine> {
    let node_id = s.node_id.clone().unwrap_or_else(|| format!("node-{}", uuid::Uuid::new_v4()));
    let alerts = fedkey_rotation::Alerter::new(notifier);
    let mut cfg = fedkey_rotation::EngineConfig::new(node_id, public_url.to_owned());
    if s.unsafe_test_clock {
        // Crash tests stop the engine at a named step and SIGKILL the process there.
        cfg.failpoint = std::env::var("FEDKEY_UNSAFE_FAILPOINT").ok();
    }
    cfg.delivery_root = Some(delivery_root(s)?);
    Ok(fedkey_rotation::Engine::new(opened.store.clone(), cfg, alerts, egress.clone()))
}

/// The leak endpoint's GitHub keys, read once at start so a bad file stops the server.
fn leak_intake(s: &Settings) -> anyhow::Result<fedkey_server::leaks::LeakIntake> {
    let Some(path) = &s.leak_github_keys_file else {
        return Ok(fedkey_server::leaks::LeakIntake::new());
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("leak_github_keys_file {}: {e}", path.display()))?;
    fedkey_server::leaks::LeakIntake::with_github_keys(&text)
        .map_err(|e| anyhow::anyhow!("leak_github_keys_file {}: {e}", path.display()))
}

/// The file connectors' delivery root: the default one is created (mode 0700); a configured
/// one must exist. Refused when it holds the master key, the database or another secret file.
fn delivery_root(s: &Settings) -> anyhow::Result<fedkey_connectors::DeliveryRoot> {
    let dir = s.delivery_root();
    if s.delivery_root.is_none() && !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| anyhow::anyhow!("delivery_root {}: {e}", dir.display()))?;
    }
    fedkey_connectors::DeliveryRoot::new(&dir, &s.secret_files()).map_err(anyhow::Error::msg)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

//! `fedkey serve` refuses a database migrated by another build (a migration whose recorded
//! checksum differs from the binary's), with a message that names the migration and both
//! checksums, and the configuration exit code; fixed, it serves again.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, Backend, Server, backends, psql_on, sqlite_script};

/// Runs `fedkey serve` on `s`'s data and database; its exit status and stderr, or a panic if
/// it is still running after 60 s (it would be serving).
fn serve_until_exit(s: &Server) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(s.data_dir())
        .args(["--database-url", &s.db_url])
        .env_remove("FEDKEY_TOKEN")
        .env_remove("FEDKEY_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fedkey serve started on a database whose migration changed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read;
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.code(), err)
}

fn run_sql(b: Backend, s: &Server, sql: &str) {
    match b {
        Backend::Sqlite => sqlite_script(s, sql),
        Backend::Postgres => {
            psql_on(&s.db_url, sql);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_database_whose_migration_changed() {
    for b in backends() {
        let mut s = Server::start(b);
        let _ = s.child.kill();
        let _ = s.child.wait();
        let backend =
            if b == Backend::Sqlite { fedkey_store::Backend::Sqlite } else { fedkey_store::Backend::Postgres };
        let sums = fedkey_store::migration_checksums(backend).unwrap();
        let ours = sums.iter().find(|(v, _)| *v == 2).map(|(_, c)| c.clone()).unwrap();
        let forged = "0f".repeat(32);
        run_sql(b, &s, &format!("UPDATE schema_migrations SET checksum = '{forged}' WHERE version = 2"));

        let (code, err) = serve_until_exit(&s);
        assert_eq!(code, Some(2), "{b:?}: a configuration error: {err}");
        for part in ["migration 0002", &forged, &ours, "another build of fedkey"] {
            assert!(err.contains(part), "{b:?}: {part:?} missing from: {err}");
        }
        assert_eq!(err.lines().filter(|l| l.starts_with("error: ")).count(), 1, "{b:?}: one readable error: {err}");

        // Put back, the database serves again.
        run_sql(b, &s, &format!("UPDATE schema_migrations SET checksum = '{ours}' WHERE version = 2"));
        s.restart(&[], &[]);
        assert_eq!(s.api(reqwest::Method::GET, "/healthz", None, None).await.0, 200, "{b:?}");
    }
}

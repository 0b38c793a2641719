//! OpenBao transit as the master-key provider, against a real OpenBao dev server: the
//! keyring exists on disk only as transit ciphertext; fedkey restarts, verifies its audit
//! log and rotates its master key through transit; without OpenBao it refuses to start.

#[allow(unused_imports)]
use super::*;

struct Bao {
    child: Child,
    addr: String,
    token: String,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_bao() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FEDKEY_BAO_BIN") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tools/bin/bao");
    venv.is_file().then_some(venv)
}

/// A dev server with the transit engine and a `fedkey` key; `None` (loudly) when `bao` is not
/// installed outside CI.
async fn start_bao() -> Option<Bao> {
    let Some(bin) = find_bao() else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true needs OpenBao: run scripts/install-tools.sh");
        eprintln!("*** SKIPPED transit tests: OpenBao `bao` not found (scripts/install-tools.sh) ***");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let token = format!("root-{}", uuid_hex());
    let child = Command::new(bin)
        .args([
            "server",
            "-dev",
            &format!("-dev-listen-address=127.0.0.1:{port}"),
            &format!("-dev-root-token-id={token}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bao = Bao { child, addr: format!("http://127.0.0.1:{port}"), token };
    let c = reqwest::Client::new();
    for _ in 0..200 {
        if c.get(format!("{}/v1/sys/health", bao.addr)).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let call = |path: &str, body: Value| {
        c.post(format!("{}/v1/{path}", bao.addr)).header("X-Vault-Token", &bao.token).json(&body).send()
    };
    assert!(call("sys/mounts/transit", json!({"type": "transit"})).await.unwrap().status().is_success());
    assert!(call("transit/keys/fedkey", json!({})).await.unwrap().status().is_success());
    Some(bao)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_sealed_by_openbao_transit() {
    for b in backends() {
        let Some(bao) = start_bao().await else { return };
        let (addr, token) = (bao.addr.clone(), bao.token.clone());
        let env = [
            ("FEDKEY_MASTER_KEY_PROVIDER", "openbao-transit"),
            ("FEDKEY_OPENBAO_ADDRESS", addr.as_str()),
            ("FEDKEY_OPENBAO_TOKEN", token.as_str()),
        ];
        let mut s = Server::start_with(b, &[], &env);
        let data = s.data_dir();
        assert!(!data.join("master.key").exists(), "no plaintext keyring on disk");
        let sealed = std::fs::read_to_string(data.join("master.key.transit")).unwrap();
        assert!(sealed.starts_with("fedkey-transit-v1 fedkey\nvault:v1:"), "{sealed}");
        s.cli_json(&["directory", "create", "acme"]);
        let v = s.cli_json(&["trust", "create", "--directory", "acme", "--name", "entra", "--direction", "inbound"]);
        let k1 = v["key"].as_str().unwrap().to_owned();
        assert_eq!(s.scim_status("acme", &k1).await, 200);

        // Restart: the keyring is unsealed through transit again; offline verification too.
        s.restart(&[], &env);
        assert_eq!(s.scim_status("acme", &k1).await, 200);
        let out = fedkey(&data, &s.db_url, &["audit", "verify", "--offline"], &env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

        // Master-key rotation reseals through transit; the running server picks it up.
        let out = fedkey(&data, &s.db_url, &["master-key", "rotate", "--output", "json"], &env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_ne!(std::fs::read_to_string(data.join("master.key.transit")).unwrap(), sealed);
        s.restart(&[], &env);
        assert_eq!(s.scim_status("acme", &k1).await, 200);
        let out = fedkey(&data, &s.db_url, &["audit", "verify", "--offline"], &env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

        // Without OpenBao the master key cannot be unsealed: fedkey refuses to start.
        drop(bao);
        let out = fedkey(&data, &s.db_url, &["audit", "verify", "--offline"], &env);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("OpenBao transit could not unseal"), "{err}");
        assert!(!err.contains("root-"), "the OpenBao token is not echoed: {err}");
    }
}

//! The operator console (`/ui`) on the real binary.
//!
//! - Over HTTP, on both backends: sign-in and the cookie's flags, the security headers,
//!   CSRF and origin checks (a refused POST changes nothing), roles, typed revocation,
//!   sign-out and expiry ending the session on the server, and the audit of all of it.
//! - In a real browser (Debian's headless `chromium` through `chromedriver`): sign in and
//!   find a trust, rotate and see the new version, revoke after typing the confirmation,
//!   approve trust material, see a dead letter, an auditor cannot act, a form without its
//!   CSRF token is refused, the cookie's flags. SQLite, and the core flow on PostgreSQL.
//!   Screenshots of every page go to `docs/screenshots/` with
//!   `FEDKEY_UPDATE_SCREENSHOTS=1`, otherwise to a temporary directory.

#[path = "console/webdriver.rs"]
mod webdriver;

#[allow(unused_imports)]
use super::*;

use reqwest::Method as M;

use super::federation::{Idp, IdpKey};
use super::provisioning::{directory_with_inbound, outbound_trust, user_body};

// ---------------------------------------------------------------- HTTP helpers

/// A console client: no redirects followed, the session cookie kept by hand.
struct Ui<'a> {
    s: &'a Server,
    http: reqwest::Client,
    cookie: Option<String>,
}

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The CSRF token of the page's forms.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
        self.body[at..at + 64].to_owned()
    }
}

impl<'a> Ui<'a> {
    fn new(s: &'a Server) -> Ui<'a> {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Ui { s, http, cookie: None }
    }

    async fn send(&self, m: M, path: &str, form: Option<&[(&str, &str)]>, extra: &[(&str, &str)]) -> Page {
        let mut req = self.http.request(m, format!("{}{path}", self.s.url));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", format!("fedkey_console={c}"));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        Page { status, headers, body: resp.text().await.unwrap() }
    }

    async fn get(&self, path: &str) -> Page {
        self.send(M::GET, path, None, &[]).await
    }

    /// A POST as the console's own pages send it.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(M::POST, path, Some(form), &[("sec-fetch-site", "same-origin")]).await
    }

    /// Signs in with `token`; returns the `Set-Cookie` header.
    async fn sign_in(&mut self, token: &str) -> String {
        let p = self.post("/ui/login", &[("token", token)]).await;
        assert_eq!((p.status, p.location()), (303, "/ui"), "{}", p.body);
        let set = p.headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
        let value = set.split(';').next().unwrap().strip_prefix("fedkey_console=").unwrap();
        self.cookie = Some(value.to_owned());
        set
    }
}

async fn trust_status(s: &Server, trust: &str) -> String {
    let path = format!("/api/v1/directories/{}", trust.replace('/', "/trusts/"));
    let (st, v) = s.api(M::GET, &path, Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    v["trust"]["status"].as_str().unwrap().to_owned()
}

async fn audit_count(s: &Server, action: &str, outcome: &str) -> usize {
    let (st, v) = s.api(M::GET, &format!("/api/v1/audit?action={action}&limit=1000"), Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    v["records"].as_array().unwrap().iter().filter(|r| r["outcome"] == outcome).count()
}

async fn auditor_token(s: &Server, name: &str) -> String {
    let body = json!({"name": name, "role": "auditor"});
    let (st, v) = s.api(M::POST, "/api/v1/tokens", Some(&s.token), Some(body)).await;
    assert_eq!(st, 201, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------- over HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sessions_csrf_and_roles_over_http() {
    for b in backends() {
        console_over_http(b).await;
    }
}

async fn console_over_http(b: Backend) {
    let s = Server::start(b);
    directory_with_inbound(&s, "acme", "okta").await;
    let mut ui = Ui::new(&s);

    // `/` leads to the console; without a session, to the sign-in page.
    let root = ui.get("/").await;
    assert_eq!((root.status, root.location()), (303, "/ui"), "{b:?}");
    let p = ui.get("/ui").await;
    assert_eq!((p.status, p.location()), (303, "/ui/login"));
    let login = ui.get("/ui/login").await;
    assert_eq!(login.status, 200);
    let csp = login.headers.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("http"), "{csp}");
    assert_eq!(login.headers.get("x-frame-options").unwrap(), "DENY");
    assert_eq!(login.headers.get("cache-control").unwrap(), "no-store");
    assert!(!login.body.contains("<script>") && !login.body.contains("style="), "no inline script or style");

    // A wrong token: 401, no cookie, audited by the authentication.
    let bad = ui.post("/ui/login", &[("token", "fk_admin_not-a-real-token")]).await;
    assert_eq!(bad.status, 401);
    assert!(bad.headers.get("set-cookie").is_none());
    assert!(bad.body.contains("not valid"));

    // Sign-in: the cookie's flags, and the session works.
    let set = ui.sign_in(&s.token).await;
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: no Secure flag ({set})");
    assert_eq!(audit_count(&s, "console.sign_in", "success").await, 1);
    let overview = ui.get("/ui").await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("acme/okta") && overview.body.contains("Keys expiring within 14 days"));
    // The trust table (after the health panels, which link to trusts too) follows the search.
    let table = |p: Page| p.body.split("id=\"trust-table\"").nth(1).unwrap_or_default().to_owned();
    assert!(table(ui.get("/ui?q=OKTA").await).contains("href=\"/ui/trusts/acme/okta\""));
    assert!(!table(ui.get("/ui?q=nothing-like-this").await).contains("href=\"/ui/trusts/acme/okta\""));

    let page = ui.get("/ui/trusts/acme/okta").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf();

    // A POST without the token, with a wrong one, or from another site: 403, nothing changes.
    for (form, extra) in [
        (vec![("overlap", "1h")], vec![("sec-fetch-site", "same-origin")]),
        (vec![("overlap", "1h"), ("csrf", "0000000000000000000000000000000000000000000000000000000000000000")], vec![]),
        (vec![("overlap", "1h"), ("csrf", csrf.as_str())], vec![("sec-fetch-site", "cross-site")]),
        (vec![("overlap", "1h"), ("csrf", csrf.as_str())], vec![("origin", "http://evil.example")]),
    ] {
        let p = ui.send(M::POST, "/ui/trusts/acme/okta/rotate", Some(&form), &extra).await;
        assert_eq!(p.status, 403, "{form:?} {extra:?}: {}", p.body);
    }
    assert_eq!(s.key_states("okta").await.len(), 1, "refused POSTs rotated nothing");
    assert!(audit_count(&s, "console.request", "denied").await >= 2, "CSRF refusals are audited");

    // Rotate with an overlap: the new key is shown once, never cached.
    let r = ui.post("/ui/trusts/acme/okta/rotate", &[("csrf", &csrf), ("overlap", "2h")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
    assert!(r.body.contains("value=\"fkp_") && r.body.contains("shown once"), "{}", r.body);
    assert_eq!(s.key_states("okta").await, vec![(1, "previous".into()), (2, "current".into())]);
    let bad_overlap = ui.post("/ui/trusts/acme/okta/rotate", &[("csrf", &csrf), ("overlap", "soon")]).await;
    assert_eq!(bad_overlap.status, 400, "{}", bad_overlap.body);
    assert_eq!(s.key_states("okta").await.len(), 2);

    // Revoke: the typed confirmation must match; the last usable key needs force.
    let wrong = ui.post("/ui/trusts/acme/okta/revoke", &[("csrf", &csrf), ("version", "1"), ("confirm", "okt")]).await;
    assert_eq!(wrong.status, 400);
    assert_eq!(s.key_states("okta").await[0].1, "previous");
    let ok = ui.post("/ui/trusts/acme/okta/revoke", &[("csrf", &csrf), ("version", "1"), ("confirm", "okta")]).await;
    assert_eq!((ok.status, ok.location()), (303, "/ui/trusts/acme/okta?done=revoked"), "{}", ok.body);
    assert_eq!(s.key_states("okta").await[0].1, "revoked");
    let last = ui.post("/ui/trusts/acme/okta/revoke", &[("csrf", &csrf), ("version", "2"), ("confirm", "okta")]).await;
    assert_eq!(last.status, 409, "{}", last.body);
    assert!(last.body.contains("last"), "{}", last.body);
    assert_eq!(s.key_states("okta").await[1].1, "current");

    // Suspend and resume.
    let p = ui.post("/ui/trusts/acme/okta/suspend", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    assert_eq!(trust_status(&s, "acme/okta").await, "suspended");
    let p = ui.post("/ui/trusts/acme/okta/resume", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    assert_eq!(trust_status(&s, "acme/okta").await, "active");

    // A reconcile dry run needs a target: a readable 404 page, not a crash.
    let p = ui.post("/ui/trusts/acme/okta/reconcile", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 404, "{}", p.body);
    assert!(p.body.contains("<h1>404"), "{}", p.body);
    // Retrying the dead letters of a directory that has none changes nothing and says so.
    let p = ui.post("/ui/directories/acme/dead-letters/retry", &[("csrf", &csrf)]).await;
    assert_eq!((p.status, p.location()), (303, "/ui/provisioning?done=retried"));

    // The other pages render.
    for path in [
        "/ui/provisioning",
        "/ui/audit",
        "/ui/audit?verify=1",
        "/ui/directories/acme",
        "/ui/directories/acme?type=Group",
    ] {
        let p = ui.get(path).await;
        assert_eq!(p.status, 200, "{path}: {}", p.body);
    }
    assert!(ui.get("/ui/audit?verify=1").await.body.contains("verified"));
    let export = ui.get("/ui/audit/export?action=key.rotate").await;
    assert_eq!(export.status, 200);
    let lines: Vec<Value> = export.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "the rotation and the refused one: {}", export.body);
    assert!(lines.iter().all(|r| r["action"] == "key.rotate" && r["hash"].is_string()));
    let bad_filter = ui.get("/ui/directories/acme?filter=userName%20eq").await;
    assert_eq!(bad_filter.status, 200);
    assert!(bad_filter.body.contains("invalid filter"), "{}", bad_filter.body);

    // An auditor sees everything, gets no action forms, and is refused (and audited) if it posts.
    let token = auditor_token(&s, "auditor1").await;
    let mut aud = Ui::new(&s);
    aud.sign_in(&token).await;
    let page = aud.get("/ui/trusts/acme/okta").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("/rotate") && !page.body.contains("/revoke") && !page.body.contains("/suspend"));
    assert_eq!(aud.get("/ui/audit").await.status, 200);
    let p = aud.post("/ui/trusts/acme/okta/rotate", &[("csrf", &page.csrf())]).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert_eq!(s.key_states("okta").await.len(), 2);
    assert_eq!(audit_count(&s, "key.rotate", "denied").await, 1);

    // Sign-out ends the session on the server: the old cookie no longer works.
    let out = aud.post("/ui/logout", &[("csrf", &page.csrf())]).await;
    assert_eq!(out.status, 303);
    assert!(out.headers.get("set-cookie").unwrap().to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(aud.get("/ui").await.location(), "/ui/login");
    assert_eq!(audit_count(&s, "console.sign_out", "success").await, 1);

    // Revoking the admin token ends its sessions.
    let other = auditor_token(&s, "auditor2").await;
    let mut third = Ui::new(&s);
    third.sign_in(&other).await;
    assert_eq!(third.get("/ui").await.status, 200);
    let (st, v) = s.api(M::POST, "/api/v1/tokens/auditor2/revoke", Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(third.get("/ui").await.location(), "/ui/login");

    // An hour without a request ends a session (the test clock moves, no sleeping).
    assert_eq!(ui.get("/ui").await.status, 200);
    s.advance("61m").await;
    assert_eq!(ui.get("/ui").await.location(), "/ui/login");
    // … and so do eight hours, however active.
    ui.sign_in(&s.token).await;
    for _ in 0..9 {
        s.advance("55m").await;
        if ui.get("/ui").await.status != 200 {
            break;
        }
    }
    assert_eq!(ui.get("/ui").await.location(), "/ui/login", "absolute limit");

    // Secrets stay out of the log.
    assert!(!s.logs().contains(&s.token) && !s.logs().contains(&token));
}

// ---------------------------------------------------------------- in a browser

/// The browser and its driver, or a loud skip (a failure under CI=true).
fn browser_tools() -> Option<(String, String)> {
    match webdriver::installed() {
        Some(t) => Some(t),
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "chromium and chromedriver are required under CI=true (apt-get install chromium chromium-driver)"
            );
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n*** SKIPPED console browser tests: /usr/bin/chromium or /usr/bin/chromedriver not found \
                 (apt-get install chromium chromium-driver) ***\n"
            );
            None
        }
    }
}

/// Where screenshots go: the committed `docs/screenshots/` only when asked to update them.
fn screenshot_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    if std::env::var("FEDKEY_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        (dir, None)
    } else {
        let t = tempfile::tempdir().unwrap();
        (t.path().to_owned(), Some(t))
    }
}

async fn shot(b: &webdriver::Browser, dir: &Path, name: &str) {
    let png = b.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn sign_in(b: &webdriver::Browser, s: &Server, token: &str) {
    b.goto(&format!("{}/ui", s.url)).await;
    assert!(b.url().await.ends_with("/ui/login"), "{}", b.url().await);
    b.find("#token").await.type_text(token).await;
    b.find("form button[type=submit]").await.click().await;
    for _ in 0..200 {
        if b.url().await.ends_with("/ui") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("sign-in did not reach the overview: {}", b.url().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser_tools() else { return };
    let driver = webdriver::Driver::start(&chromedriver);
    let (shots, _keep) = screenshot_dir();
    browser_scenario(Backend::Sqlite, &driver, &chromium, Some(&shots)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser_on_postgres() {
    if !pg_available() {
        return;
    }
    let Some((chromium, chromedriver)) = browser_tools() else { return };
    let driver = webdriver::Driver::start(&chromedriver);
    browser_scenario(Backend::Postgres, &driver, &chromium, None).await;
}

async fn browser_scenario(backend: Backend, driver: &webdriver::Driver, chromium: &str, shots: Option<&Path>) {
    let s = Server::start(backend);
    let key = directory_with_inbound(&s, "acme", "okta").await;
    for (name, title) in [("alice@acme.test", "Engineer"), ("bob@acme.test", "Analyst")] {
        let (st, v) = s.api(M::POST, "/scim/v2/acme/Users", Some(&key), Some(user_body(name, title))).await;
        assert_eq!(st, 201, "{v}");
    }
    // A target nobody listens on, one attempt allowed: its delivery becomes a dead letter.
    outbound_trust(&s, "acme", "crm", "crm-app-key-0123456789").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/scim/v2", dead.local_addr().unwrap());
    drop(dead);
    let body = json!({"url": dead_url, "max_attempts": 1});
    let (st, v) = s.api(M::PUT, "/api/v1/directories/acme/trusts/crm/target", Some(&s.token), Some(body)).await;
    assert_eq!(st, 200, "{v}");
    for _ in 0..3 {
        s.sync_tick().await;
        s.advance("2m").await;
    }
    // A federated trust whose IdP replaced every key: the new set awaits approval.
    let idp = Idp::start().await;
    let (ka, kc) = (IdpKey::new("a"), IdpKey::new("c"));
    idp.publish(&[&ka]);
    s.cli_json(&["trust", "create", "--directory", "acme", "--name", "entra", "--direction", "inbound"]);
    s.cli_json(&["material", "source", "acme/entra", "--jwks-url", &format!("{}/jwks", idp.url)]);
    assert_eq!(s.watch().await["accepted"], 1);
    idp.publish(&[&kc]);
    s.advance("20m").await;
    assert_eq!(s.watch().await["held"], 1);

    // A rotation policy whose period ends within 14 days: the key shows as expiring.
    s.cli_json(&["rotation", "policy", "set", "acme/okta", "--period", "10d", "--overlap", "1h"]);

    let profile = tempfile::tempdir().unwrap();
    let b = driver.browser(chromium, profile.path(), 1280, 800).await;

    // Sign in; the cookie's flags as the browser stored them.
    b.goto(&format!("{}/ui", s.url)).await;
    if let Some(d) = shots {
        shot(&b, d, "login").await;
    }
    sign_in(&b, &s, &s.token).await;
    let cookies = b.cookies().await;
    let c = cookies.iter().find(|c| c["name"] == "fedkey_console").expect("the session cookie");
    assert_eq!((c["httpOnly"].as_bool(), c["secure"].as_bool()), (Some(true), Some(false)), "{c}");
    assert_eq!((c["sameSite"].as_str(), c["path"].as_str()), (Some("Strict"), Some("/ui")), "{c}");
    assert_eq!(b.execute("return document.cookie").await, "", "HttpOnly: invisible to scripts");
    assert!(b.find("#panel-expiring").await.text().await.contains("acme/okta"));
    let material_panel = b.find("#panel-material").await.text().await;
    assert!(material_panel.contains("acme/entra"), "{material_panel}");
    if let Some(d) = shots {
        shot(&b, d, "overview").await;
    }

    // Find a trust.
    b.find("#q").await.type_text("okta").await;
    b.find("form[role=search] button").await.click().await;
    b.wait_url("q=okta").await;
    let rows = b.find("#trust-table tbody").await.text().await;
    assert!(rows.contains("acme/okta") && !rows.contains("acme/crm"), "{rows}");
    b.find("#trust-table a").await.click().await;
    b.wait_url("/ui/trusts/acme/okta").await;

    // Rotate (the script asks first), and see the new version.
    b.find("#overlap").await.property("value").await;
    b.find("#rotate").await.click().await;
    assert!(b.accept_dialog().await.contains("Rotate the key of acme/okta"));
    b.wait_url("/rotate").await;
    let shown = b.find("#newkey").await.property("value").await;
    assert!(shown.as_str().unwrap().starts_with("fkp_"), "{shown}");
    b.goto(&format!("{}/ui/trusts/acme/okta", s.url)).await;
    assert!(b.find("#v2 .badge").await.text().await.contains("current"));
    assert!(b.find("#v1 .badge").await.text().await.contains("previous"));
    if backend == Backend::Postgres {
        b.close().await;
        return;
    }

    // Revoke v1: the button stays disabled until the trust's name is typed.
    b.find("#v1 summary").await.click().await;
    let button = b.find("#v1 button[data-needs-match]").await;
    assert_eq!(button.property("disabled").await, true);
    b.find("#confirm-1").await.type_text("okta").await;
    assert_eq!(button.property("disabled").await, false);
    button.click().await;
    b.wait_url("done=revoked").await;
    assert!(b.find("#v1 .badge").await.text().await.contains("revoked"));
    assert!(b.find(".notice").await.text().await.contains("revoked"));
    assert_eq!(s.key_states("okta").await[0].1, "revoked");
    if let Some(d) = shots {
        shot(&b, d, "trust").await;
    }

    // A form whose CSRF token was removed is refused and changes nothing.
    b.execute("document.querySelector('form[action$=\"/suspend\"] input[name=csrf]').remove(); return 1").await;
    b.find("#suspend").await.click().await;
    b.accept_dialog().await;
    b.wait_url("/suspend").await;
    assert!(b.find("h1").await.text().await.contains("403"), "{}", b.source().await);
    assert_eq!(trust_status(&s, "acme/okta").await, "active");

    // Approve the held trust material.
    b.goto(&format!("{}/ui/trusts/acme/entra", s.url)).await;
    assert!(b.source().await.contains("mat-pending"));
    b.find("#approve-material").await.click().await;
    b.accept_dialog().await;
    b.wait_url("done=approved").await;
    assert!(b.find(".notice").await.text().await.contains("approved"));
    assert!(!b.source().await.contains("mat-pending"));

    // See the dead letter and its cause.
    b.goto(&format!("{}/ui/provisioning", s.url)).await;
    let dl = b.find("table.dead-letters").await.text().await;
    assert!(dl.contains("acme/crm") && dl.contains("alice@acme.test"), "{dl}");
    if let Some(d) = shots {
        shot(&b, d, "provisioning").await;
    }
    // Retry one (queued again; nobody listens, so it may die again), then discard them all.
    b.find("table.dead-letters form[action$=\"/retry\"] button").await.click().await;
    b.wait_url("done=retried").await;
    assert_eq!(audit_count(&s, "sync.dead_letter.retry", "success").await, 1);
    b.find("form[action$=\"/discard\"]:not(table form) button").await.click().await;
    b.accept_dialog().await;
    b.wait_url("done=discarded").await;
    assert!(b.absent("table.dead-letters").await, "no dead letters left");

    // The remaining pages, and the overview at phone width.
    if let Some(d) = shots {
        b.goto(&format!("{}/ui/audit", s.url)).await;
        shot(&b, d, "audit").await;
        b.goto(&format!("{}/ui/directories/acme", s.url)).await;
        assert!(b.source().await.contains("bob@acme.test"));
        shot(&b, d, "directory").await;
        b.resize(390, 844).await;
        b.goto(&format!("{}/ui", s.url)).await;
        shot(&b, d, "overview-phone").await;
        b.resize(1280, 800).await;
    }

    // Sign out, then an auditor: it sees the trust but no action, and its POST is refused.
    b.goto(&format!("{}/ui", s.url)).await;
    b.find(".who button").await.click().await;
    b.wait_url("/ui/login").await;
    let token = auditor_token(&s, "auditor").await;
    sign_in(&b, &s, &token).await;
    b.goto(&format!("{}/ui/trusts/acme/okta", s.url)).await;
    assert!(b.absent("#rotate").await, "no rotate form for an auditor");
    assert!(b.absent("#suspend").await && b.absent("details.revoke").await);
    let cookie = b.cookies().await.iter().find(|c| c["name"] == "fedkey_console").unwrap()["value"].clone();
    let mut aud = Ui::new(&s);
    aud.cookie = cookie.as_str().map(str::to_owned);
    let csrf = aud.get("/ui/trusts/acme/okta").await.csrf();
    assert_eq!(aud.post("/ui/trusts/acme/okta/rotate", &[("csrf", &csrf)]).await.status, 403);
    assert_eq!(s.key_states("okta").await.len(), 2);
    b.close().await;
}

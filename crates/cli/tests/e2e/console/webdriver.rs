//! A small W3C WebDriver client for the console's browser tests: Debian's `chromedriver`
//! driving headless `chromium`, both started here on loopback (the driver on port 0, its
//! chosen port read from its output). Only the commands the tests use.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where Debian installs the browser and its driver.
pub fn installed() -> Option<(String, String)> {
    let find =
        |names: &[&str]| names.iter().map(|n| format!("/usr/bin/{n}")).find(|p| std::path::Path::new(p).exists());
    Some((find(&["chromium", "chromium-browser"])?, find(&["chromedriver"])?))
}

pub struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Driver {
    pub fn start(chromedriver: &str) -> Driver {
        let mut child = Command::new(chromedriver)
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = loop {
            let line = lines.next().expect("chromedriver exited before it listened").unwrap();
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest.trim_end_matches('.').trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Driver { child, url: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() }
    }

    /// A new headless browser window of `width`×`height`.
    pub async fn browser(&self, chromium: &str, profile: &std::path::Path, width: u32, height: u32) -> Browser {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // Confirmation dialogs stay open until a test answers them.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-extensions", "--hide-scrollbars",
                         format!("--user-data-dir={}", profile.display()),
                         format!("--window-size={width},{height}")],
            },
        }}});
        let v = call(&self.http, reqwest::Method::POST, &format!("{}/session", self.url), Some(caps)).await;
        let id = v["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {v}")).to_owned();
        let b = Browser { http: self.http.clone(), base: format!("{}/session/{id}", self.url) };
        // Element look-ups wait for the element to appear (bounded).
        b.cmd(reqwest::Method::POST, "/timeouts", Some(json!({"implicit": 5000, "pageLoad": 30000}))).await;
        b
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(http: &reqwest::Client, m: reqwest::Method, url: &str, body: Option<Value>) -> Value {
    let mut req = http.request(m.clone(), url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("WebDriver {m} {url}: {e}"));
    let v: Value = resp.json().await.unwrap();
    v["value"].clone()
}

/// One browser session.
pub struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    async fn cmd(&self, m: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        call(&self.http, m, &format!("{}{path}", self.base), body).await
    }

    /// Like [`Browser::cmd`], but a WebDriver error is an `Err` with its message.
    async fn try_cmd(&self, m: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let v = self.cmd(m, path, body).await;
        match v.get("error") {
            Some(e) => Err(format!("{e}: {}", v["message"])),
            None => Ok(v),
        }
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// Waits (at most 10 s) until the address contains `part`: a click that submits a form
    /// or follows a link returns before the next page has loaded.
    pub async fn wait_url(&self, part: &str) {
        for _ in 0..200 {
            if self.url().await.contains(part) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the browser never reached {part:?}; it is at {}", self.url().await);
    }

    pub async fn source(&self) -> String {
        self.cmd(reqwest::Method::GET, "/source", None).await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn find(&self, css: &str) -> Element<'_> {
        self.try_find(css).await.unwrap_or_else(|e| panic!("no element {css:?}: {e}"))
    }

    pub async fn try_find(&self, css: &str) -> Result<Element<'_>, String> {
        let v = self
            .try_cmd(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css})))
            .await?;
        let id = v[ELEMENT].as_str().ok_or_else(|| format!("no element id in {v}"))?;
        Ok(Element { b: self, id: id.to_owned() })
    }

    /// Whether no element matches `css` now (without the implicit wait for one to appear).
    pub async fn absent(&self, css: &str) -> bool {
        self.cmd(reqwest::Method::POST, "/timeouts", Some(json!({"implicit": 0}))).await;
        let found = self.try_find(css).await.is_ok();
        self.cmd(reqwest::Method::POST, "/timeouts", Some(json!({"implicit": 5000}))).await;
        !found
    }

    /// The text of the open confirmation dialog, which is then accepted.
    pub async fn accept_dialog(&self) -> String {
        let text = self.try_cmd(reqwest::Method::GET, "/alert/text", None).await.expect("a confirmation dialog");
        self.cmd(reqwest::Method::POST, "/alert/accept", Some(json!({}))).await;
        text.as_str().unwrap_or_default().to_owned()
    }

    pub async fn cookies(&self) -> Vec<Value> {
        self.cmd(reqwest::Method::GET, "/cookie", None).await.as_array().cloned().unwrap_or_default()
    }

    pub async fn execute(&self, script: &str) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).unwrap()
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

pub struct Element<'a> {
    b: &'a Browser,
    id: String,
}

impl Element<'_> {
    pub async fn click(&self) {
        let r = self.b.try_cmd(reqwest::Method::POST, &format!("/element/{}/click", self.id), Some(json!({}))).await;
        r.unwrap_or_else(|e| panic!("click: {e}"));
    }

    pub async fn type_text(&self, text: &str) {
        let path = format!("/element/{}/value", self.id);
        self.b.try_cmd(reqwest::Method::POST, &path, Some(json!({"text": text}))).await.unwrap();
    }

    pub async fn text(&self) -> String {
        let v = self.b.cmd(reqwest::Method::GET, &format!("/element/{}/text", self.id), None).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    pub async fn property(&self, name: &str) -> Value {
        self.b.cmd(reqwest::Method::GET, &format!("/element/{}/property/{name}", self.id), None).await
    }
}

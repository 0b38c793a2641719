//! The admin API's OpenAPI document on the real binary: `GET /api/v1/openapi.json` answers
//! without a token, byte for byte the committed docs/openapi.json, and every operation it
//! lists is routed: called without a token it answers 401 `unauthorized`, not the 404 or 405
//! of a path or method the server does not have. (No storage involved: SQLite only.)

use super::*;

/// `/api/v1/directories/{d}/keys/{v}/revoke` → `/api/v1/directories/x/keys/1/revoke`.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some("v") => "1",
            Some(_) => "x",
            None => seg,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn served_openapi_is_the_committed_document_and_every_operation_is_routed() {
    let s = Server::start(Backend::Sqlite);
    let resp = reqwest::get(format!("{}/api/v1/openapi.json", s.url)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let served = resp.text().await.unwrap();
    let committed =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")).unwrap();
    assert!(
        served == committed,
        "the served OpenAPI document differs from docs/openapi.json: regenerate it with \
         `FEDKEY_UPDATE_OPENAPI=1 cargo test -p fedkey-server --lib openapi` and commit it"
    );
    let doc: Value = serde_json::from_str(&served).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = s.api(m, &concrete(path), None, None).await;
            checked += 1;
            if path == "/api/v1/openapi.json" {
                assert_eq!(status, 200, "{method} {path}");
                continue;
            }
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (401, Some("unauthorized")),
                "{method} {path} without a token: {body}"
            );
        }
    }
    assert!(checked > 40, "only {checked} operations");
}

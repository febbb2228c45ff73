//! The OpenAPI document is an artifact: `docs/openapi.json` must match the code, and the
//! server serves the same document and a docs page that works offline.
//!
//! To refresh the file after changing the API: `SIGNALBOX_UPDATE_OPENAPI=1 cargo test -p signalbox-tests openapi`.

use std::path::PathBuf;

use signalbox_tests::Signalbox;

fn generated() -> String {
    let mut json = signalbox_api::Api::openapi().to_pretty_json().expect("serializable");
    json.push('\n');
    json
}

#[test]
fn docs_openapi_json_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let generated = generated();
    if std::env::var_os("SIGNALBOX_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: run SIGNALBOX_UPDATE_OPENAPI=1 cargo test -p signalbox-tests openapi"
    );
}

#[tokio::test]
async fn the_server_serves_the_document_and_an_offline_docs_page() {
    let signalbox = Signalbox::start().await;
    let http = reqwest::Client::new();
    let served: serde_json::Value = http
        .get(format!("{}/openapi.json", signalbox.http_url()))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let generated: serde_json::Value = serde_json::from_str(&generated()).expect("json");
    assert_eq!(served, generated);
    assert_eq!(served["openapi"], "3.1.0");
    for path in ["/v1/tenants", "/v1/apps/{app}/groups/{group}/messages", "/v1/apps/{app}/connections/{connection}"] {
        assert!(served["paths"].get(path).is_some(), "{path} documented");
    }
    let page = http.get(format!("{}/docs/", signalbox.http_url())).send().await.expect("get");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "the docs page");
    assert!(!html.contains("cdn.") && !html.contains("unpkg.com"), "no CDN: works offline");
    let bundle = http.get(format!("{}/docs/swagger-ui-bundle.js", signalbox.http_url())).send().await.expect("get");
    assert_eq!(bundle.status().as_u16(), 200, "the UI's script is served locally");
}

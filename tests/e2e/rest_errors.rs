//! Bad REST input gets problem+json with the right status, never a 500.

use reqwest::Method;
use serde_json::{Value, json};
use signalbox_tests::Signalbox;

/// Sends a request with a raw body and returns (status, problem code).
async fn call(
    base: &str,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, String) {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some((content_type, body)) = body {
        request = request.header("content-type", content_type).body(body);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_owned());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{path}: {status}");
        assert_eq!(body["status"], status, "{path}");
        assert!(body["type"].as_str().is_some_and(|t| t.starts_with("https://signalbox.dev/problems/")));
    }
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// A request body: content type and bytes.
type RawBody = Option<(&'static str, Vec<u8>)>;

/// method, path, bearer, body, expected status, expected problem code.
type Case<'a> = (Method, String, Option<&'a str>, RawBody, u16, &'static str);

fn json_body(value: &Value) -> RawBody {
    Some(("application/json", value.to_string().into_bytes()))
}

#[tokio::test]
async fn bad_requests_get_the_right_problem() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(json!({"limits": {"max_message_bytes": 1000}})).await;
    let base = signalbox.http_url();
    let key = app.backend.clone();
    let credential = format!("{}.{}", app.key_id, app.secret);
    let k = Some(credential.as_str());
    let group_path = format!("/v1/apps/{}/groups/room/messages", app.id);
    let ok = json!({"event": "e", "data": 1});

    let cases: Vec<Case<'_>> = vec![
        (Method::GET, "/v1/nope".into(), k, None, 404, "not_found"),
        (Method::DELETE, "/v1/tenants".into(), k, None, 405, "method_not_allowed"),
        (Method::POST, group_path.clone(), None, json_body(&ok), 401, "unauthorized"),
        (Method::POST, group_path.clone(), Some("key_nope.secret"), json_body(&ok), 401, "unauthorized"),
        (Method::POST, group_path.clone(), Some("garbage"), json_body(&ok), 401, "unauthorized"),
        (
            Method::POST,
            group_path.clone(),
            k,
            Some(("application/json", b"{\"event\":".to_vec())),
            400,
            "malformed_json",
        ),
        (Method::POST, group_path.clone(), k, Some(("text/plain", b"hello".to_vec())), 415, "unsupported_media_type"),
        (Method::POST, group_path.clone(), k, json_body(&json!({"event": 5})), 422, "invalid_body"),
        (Method::POST, group_path.clone(), k, json_body(&json!({"data": 1})), 422, "invalid_body"),
        (Method::POST, group_path.clone(), k, json_body(&json!({"event": "e", "surprise": 1})), 422, "invalid_body"),
        (Method::POST, group_path.clone(), k, json_body(&json!({"event": ""})), 422, "invalid_name"),
        (
            Method::POST,
            group_path.clone(),
            k,
            json_body(&json!({"event": "e", "data": "x".repeat(2000)})),
            413,
            "message_too_large",
        ),
        (
            Method::POST,
            group_path.clone(),
            k,
            json_body(&json!({"event": "e", "exclude": ["bad id!"]})),
            422,
            "invalid_field",
        ),
        (
            Method::POST,
            group_path.clone(),
            k,
            Some(("application/json", vec![b' '; 3 * 1024 * 1024])),
            413,
            "payload_too_large",
        ),
        (
            Method::POST,
            format!("/v1/apps/{}/groups/{}/messages", app.id, "x".repeat(200)),
            k,
            json_body(&ok),
            422,
            "invalid_name",
        ),
        (Method::POST, format!("/v1/apps/{}/groups/a%00b/messages", app.id), k, json_body(&ok), 422, "invalid_name"),
        (Method::POST, format!("/v1/apps/{}/users/%0A/messages", app.id), k, json_body(&ok), 422, "invalid_name"),
        (Method::POST, "/v1/apps/app_doesnotexist/broadcast".into(), k, json_body(&ok), 403, "forbidden"),
        (Method::POST, "/v1/apps/not%20an%20id/broadcast".into(), k, json_body(&ok), 404, "not_found"),
        (
            Method::POST,
            format!("/v1/apps/{}/connections/nonsense/messages", app.id),
            k,
            json_body(&ok),
            404,
            "not_found",
        ),
        (Method::GET, format!("/v1/apps/{}/connections/x_y", app.id), k, None, 404, "not_found"),
        (
            Method::DELETE,
            format!("/v1/apps/{}/connections/x_y?reason={}", app.id, "r".repeat(200)),
            k,
            None,
            422,
            "invalid_field",
        ),
        (
            Method::PUT,
            format!("/v1/apps/{}/groups/g/users/u", app.id),
            k,
            json_body(&json!({"ttl_seconds": 0})),
            422,
            "invalid_field",
        ),
        (Method::GET, "/v1/apps?cursor=%%%".into(), None, None, 401, "unauthorized"),
    ];
    for (method, path, bearer, body, status, code) in cases {
        let got = call(&base, method.clone(), &path, bearer, body).await;
        assert_eq!(got, (status, code.to_owned()), "{method} {path}");
    }
    drop(key);
}

#[tokio::test]
async fn management_input_is_validated() {
    let signalbox = Signalbox::start().await;
    let base = signalbox.http_url();
    let admin = signalbox.server.admin_token().to_owned();
    let a = Some(admin.as_str());
    let app = signalbox.app().await;
    let tenant_token = app.tenant.clone();
    let tenant = signalbox.operator().create_tenant("t2").await.expect("tenant").token;
    let t = Some(tenant.as_str());
    let cases: Vec<Case<'_>> = vec![
        (Method::POST, "/v1/tenants".into(), Some("wrong"), json_body(&json!({"name": "x"})), 401, "unauthorized"),
        (Method::POST, "/v1/tenants".into(), t, json_body(&json!({"name": "x"})), 401, "unauthorized"),
        (Method::POST, "/v1/tenants".into(), a, json_body(&json!({"name": ""})), 422, "invalid_field"),
        (Method::POST, "/v1/tenants".into(), a, json_body(&json!({"name": "x".repeat(201)})), 422, "invalid_field"),
        (Method::POST, "/v1/tenants".into(), a, json_body(&json!({"name": 7})), 422, "invalid_body"),
        (Method::POST, "/v1/apps".into(), a, json_body(&json!({"name": "x"})), 401, "unauthorized"),
        (
            Method::POST,
            "/v1/apps".into(),
            t,
            json_body(&json!({"name": "x", "limits": {"max_connections": 0}})),
            422,
            "invalid_settings",
        ),
        (
            Method::POST,
            "/v1/apps".into(),
            t,
            json_body(&json!({"name": "x", "limits": {"max_message_bytes": 99999999}})),
            422,
            "invalid_settings",
        ),
        (
            Method::POST,
            "/v1/apps".into(),
            t,
            json_body(&json!({"name": "x", "nonsense": true})),
            422,
            "invalid_settings",
        ),
        (Method::GET, "/v1/apps?limit=abc".into(), t, None, 400, "invalid_query"),
        (Method::GET, "/v1/apps?cursor=!!!".into(), t, None, 400, "invalid_query"),
        (Method::GET, "/v1/apps/app_missing".into(), t, None, 404, "not_found"),
        (Method::GET, "/v1/apps/bad%20id".into(), t, None, 404, "not_found"),
        (Method::PATCH, format!("/v1/apps/{}", app.id), t, json_body(&json!({"name": "x"})), 404, "not_found"),
        (
            Method::POST,
            format!("/v1/apps/{}/keys", app.id),
            t,
            json_body(&json!({"scopes": ["fly"]})),
            404,
            "not_found",
        ),
        (Method::DELETE, format!("/v1/apps/{}/keys/key_missing", app.id), t, None, 404, "not_found"),
    ];
    for (method, path, bearer, body, status, code) in cases {
        let got = call(&base, method.clone(), &path, bearer, body).await;
        assert_eq!(got, (status, code.to_owned()), "{method} {path}");
    }
    // The app's own tenant gets validation errors rather than 404s.
    let own = tenant_token
        .send(Method::PATCH, &["v1", "apps", &app.id], Some(&json!({"limits": {"max_connections": -5}})))
        .await
        .expect("send");
    assert_eq!(own.status().as_u16(), 422);
    let own = tenant_token
        .send(Method::POST, &["v1", "apps", &app.id, "keys"], Some(&json!({"scopes": ["fly"]})))
        .await
        .expect("send");
    assert_eq!(own.status().as_u16(), 422);
    let own = tenant_token
        .send(Method::POST, &["v1", "apps", &app.id, "keys"], Some(&json!({"scopes": []})))
        .await
        .expect("send");
    assert_eq!(own.status().as_u16(), 422);
}

#[tokio::test]
async fn apps_are_created_listed_patched_and_deleted() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let tenant = &app.tenant;
    let patched =
        tenant.update_app(&app.id, json!({"name": "renamed", "limits": {"max_connections": 5}})).await.expect("patch");
    assert_eq!(patched.name, "renamed");
    assert_eq!(patched.settings["limits"]["max_connections"], 5);
    assert_eq!(patched.settings["limits"]["max_message_bytes"], 65536, "untouched settings keep their values");
    let reset = tenant.update_app(&app.id, json!({"limits": {"max_connections": null}})).await.expect("patch");
    assert_eq!(reset.settings["limits"]["max_connections"], 10000);

    for i in 0..4 {
        tenant.create_app(&format!("more {i}"), Value::Null).await.expect("create");
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = tenant.list_apps(Some(2), cursor.as_deref()).await.expect("list");
        seen.extend(page.items.into_iter().map(|a| a.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], app.id, "oldest first");

    tenant.delete_app(&app.id).await.expect("delete");
    assert_eq!(tenant.get_app(&app.id).await.expect_err("gone").status(), Some(404));
    assert_eq!(tenant.delete_app(&app.id).await.expect_err("gone").status(), Some(404));
}

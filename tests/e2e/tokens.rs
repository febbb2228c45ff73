//! Tokens: every bad token is refused with a close code the client can act on, and a revoked
//! key stops working at once — for REST, for new connections and for open ones.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use signalbox_core::token::{ClientClaims, sign};
use signalbox_core::{AppId, KeyId, clock};
use signalbox_sdk::realtime::{ConnectError, Connection};
use signalbox_sdk::server::Message;
use signalbox_sdk::token::TokenBuilder;
use signalbox_tests::{Signalbox, closed, next_message, within};

async fn refused(url: &str, token: &str) -> (u16, String) {
    match within("connect", Connection::connect(url, token)).await {
        Err(ConnectError::Closed { code, reason }) => (code, reason),
        other => panic!("expected a close, got {other:?}"),
    }
}

fn forge(header: serde_json::Value, claims: serde_json::Value, signature: &str) -> String {
    let encode = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{signature}", encode(header), encode(claims))
}

#[tokio::test]
async fn bad_tokens_are_closed_with_a_documented_code() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let other = signalbox.app().await;
    let url = &app.ws_url;
    let now = clock::unix_seconds();
    let claims = |exp: u64, for_app: &str| ClientClaims {
        sub: Some(signalbox_core::UserId::new("mallory").expect("user")),
        exp,
        iat: None,
        app: AppId::new(for_app).expect("app"),
        groups: vec![],
        permissions: vec![],
        info: None,
    };
    let key = KeyId::new(&app.key_id).expect("key id");

    let expired = sign(&claims(now - 3600, &app.id), &key, app.secret.as_bytes());
    assert_eq!(refused(url, &expired).await.0, 4402, "expired");

    let wrong_secret = sign(&claims(now + 60, &app.id), &key, b"not the secret");
    assert_eq!(refused(url, &wrong_secret).await.0, 4401, "bad signature");

    // Signed with app A's key, claiming app B: the key is not B's.
    let wrong_app = sign(&claims(now + 60, &other.id), &key, app.secret.as_bytes());
    assert_eq!(refused(url, &wrong_app).await.0, 4401, "wrong app");

    let unknown_key = sign(&claims(now + 60, &app.id), &KeyId::generate(), app.secret.as_bytes());
    assert_eq!(refused(url, &unknown_key).await.0, 4401, "unknown key");

    let body = json!({"app": app.id, "exp": now + 60, "sub": "mallory"});
    let none = forge(json!({"alg": "none", "typ": "JWT", "kid": app.key_id}), body.clone(), "");
    let (code, reason) = refused(url, &none).await;
    assert_eq!(code, 4401, "alg none");
    assert!(reason.contains("algorithm"), "safe, specific reason: {reason}");
    let confused = forge(json!({"alg": "RS256", "typ": "JWT", "kid": app.key_id}), body.clone(), "c2ln");
    assert_eq!(refused(url, &confused).await.0, 4401, "algorithm confusion");
    let no_kid = forge(json!({"alg": "HS256", "typ": "JWT"}), body, "c2ln");
    assert_eq!(refused(url, &no_kid).await.0, 4401, "no kid");

    for garbage in ["garbage", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9"] {
        assert_eq!(refused(url, garbage).await.0, 4401, "{garbage}");
    }
    assert_eq!(refused(url, "").await.0, 4401, "missing");

    // A valid token still works after all that.
    let good = TokenBuilder::new(&app.id, 60).user("ok").sign(&app.key_id, app.secret.as_bytes()).expect("sign");
    let connection = within("connect", Connection::connect(url, &good)).await.expect("valid token connects");
    assert_eq!(connection.welcome().user_id.as_deref(), Some("ok"));
}

#[tokio::test]
async fn locally_signed_tokens_work_like_minted_ones() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let token = TokenBuilder::new(&app.id, 300)
        .user("frank")
        .group("g1")
        .permission("join:g*")
        .sign(&app.key_id, app.secret.as_bytes())
        .expect("sign");
    let mut client = within("connect", Connection::connect(&app.ws_url, &token)).await.expect("connects");
    within("join", client.join("g2")).await.expect("permitted by join:g*");
    app.publish_to_group("g1", "e", json!(1)).await;
    assert_eq!(next_message(&mut client).await.group.as_deref(), Some("g1"));
}

#[tokio::test]
async fn revoking_a_key_stops_rest_new_and_open_connections() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let spare = app.tenant.create_key(&app.id, Some("spare"), None).await.expect("second key");
    let mut open = app.connect(Some("gina"), &[], &[]).await;
    let token = app.token(Some("gina"), &[], &[]).await;

    app.tenant.revoke_key(&app.id, &app.key_id).await.expect("revoke");

    let err = app.backend.broadcast(&app.id, &Message::new("e", json!(1))).await.expect_err("revoked for REST");
    assert_eq!(err.status(), Some(401));
    assert_eq!(closed(&mut open).await.0, 4403, "open connection closed");
    assert_eq!(refused(&app.ws_url, &token).await.0, 4403, "new connection refused");

    // The other key keeps working, and revocation is listed.
    let spare_backend = app.backend.with_bearer(&spare.credential);
    spare_backend.broadcast(&app.id, &Message::new("e", json!(1))).await.expect("spare key works");
    let keys = app.tenant.list_keys(&app.id, None, None).await.expect("list");
    let revoked = keys.items.iter().find(|k| k.id == app.key_id).expect("listed");
    assert!(revoked.revoked_at.is_some());
    let listing = app.tenant.send(reqwest::Method::GET, &["v1", "apps", &app.id, "keys"], None).await.expect("list");
    let listing = listing.text().await.expect("body");
    assert!(!listing.contains(&spare.secret) && !listing.contains(&app.secret), "secrets are never listed");
}

#[tokio::test]
async fn minting_validates_its_input() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(json!({"limits": {"max_groups_per_connection": 2}})).await;
    let mint = |body: serde_json::Value| {
        let backend = app.backend.clone();
        let id = app.id.clone();
        async move { backend.send(reqwest::Method::POST, &["v1", "apps", &id, "tokens"], Some(&body)).await.expect("send") }
    };
    for (body, status) in [
        (json!({"ttl_seconds": 0}), 422),
        (json!({"ttl_seconds": 100000}), 422),
        (json!({"groups": ["a", "b", "c"]}), 422),
        (json!({"groups": [""]}), 422),
        (json!({"permissions": ["fly:*"]}), 422),
        (json!({"user_id": "a\u{0}b"}), 422),
        (json!({"info": {"blob": "x".repeat(2000)}}), 422),
        (json!({"bogus": 1}), 422),
        (json!({"ttl_seconds": "soon"}), 422),
    ] {
        let response = mint(body.clone()).await;
        assert_eq!(response.status().as_u16(), status, "{body}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
    }
    // A tenant token may mint too (with the app's newest active key).
    let minted = app
        .tenant
        .mint_token(&app.id, &signalbox_sdk::server::TokenRequest { user_id: Some("t".into()), ..Default::default() })
        .await
        .expect("tenant mints");
    assert_eq!(minted.key_id, app.key_id);
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused_with_4401() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app().await;
    let key = KeyId::new(&app.key_id).expect("key id");
    let now = clock::unix_seconds();
    let issued_at = |iat: u64| {
        let claims = ClientClaims {
            sub: Some(signalbox_core::UserId::new("marty").expect("user")),
            exp: now + 3600,
            iat: Some(iat),
            app: AppId::new(&app.id).expect("app"),
            groups: vec![],
            permissions: vec![],
            info: None,
        };
        sign(&claims, &key, app.secret.as_bytes())
    };
    // Beyond the 30 seconds of skew the protocol tolerates: refused, and told why.
    let (code, reason) = refused(&app.ws_url, &issued_at(now + 600)).await;
    assert_eq!(code, 4401, "{reason}");
    assert!(reason.contains("issued in the future"), "{reason}");
    // Within the skew, and in the past: accepted.
    within("connect", Connection::connect(&app.ws_url, &issued_at(now + 10))).await.expect("within the skew");
    within("connect", Connection::connect(&app.ws_url, &issued_at(now - 60))).await.expect("issued earlier");
}

#[tokio::test]
async fn a_token_with_too_many_groups_is_refused_for_good_with_4004() {
    let signalbox = Signalbox::start().await;
    let app = signalbox.app_with(json!({"limits": {"max_groups_per_connection": 2}})).await;
    let key = KeyId::new(&app.key_id).expect("key id");
    let now = clock::unix_seconds();
    let with_groups = |groups: &[&str]| {
        let claims = ClientClaims {
            sub: None,
            exp: now + 3600,
            iat: Some(now),
            app: AppId::new(&app.id).expect("app"),
            groups: groups.iter().map(|g| signalbox_core::GroupName::new(*g).expect("group")).collect(),
            permissions: vec![],
            info: None,
        };
        sign(&claims, &key, app.secret.as_bytes())
    };
    // The API does not mint such a token, but a backend can sign one itself.
    let (code, reason) = refused(&app.ws_url, &with_groups(&["a", "b", "c"])).await;
    assert_eq!(code, 4004, "{reason}");
    assert_eq!(signalbox.server.connection_count(), 0, "nothing was registered");
    // At the limit, it connects.
    within("connect", Connection::connect(&app.ws_url, &with_groups(&["a", "b"]))).await.expect("two groups");
}

//! One repository suite, run against SQLite and against Postgres: the two backends must
//! behave exactly alike.

use signalbox_core::{AppId, AppSettings, GroupName, HubName, KeyId, KeyScope, KeyScopes, TenantId, UserId};
use signalbox_store::{AppRecord, Backend, KeyRecord, PageRequest, Store, StoreError, TenantRecord};
use signalbox_test_support::{TestDatabase, tempfile::TempDir};

/// Keeps the backing database alive for the test's duration.
enum Backing {
    Sqlite(#[allow(dead_code)] TempDir),
    Postgres(#[allow(dead_code)] TestDatabase),
}

async fn sqlite() -> (Store, Backing) {
    let dir = TempDir::new().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("test.db").display());
    let store = Store::connect(&url).await.expect("connect sqlite");
    store.migrate().await.expect("migrate");
    assert_eq!(store.backend(), Backend::Sqlite);
    (store, Backing::Sqlite(dir))
}

async fn postgres() -> (Store, Backing) {
    let db = TestDatabase::create().await;
    let store = Store::connect(&db.url()).await.expect("connect postgres");
    store.migrate().await.expect("migrate");
    // Migrating twice is a no-op.
    store.migrate().await.expect("migrate again");
    assert_eq!(store.backend(), Backend::Postgres);
    (store, Backing::Postgres(db))
}

/// Generates one test per backend for each suite function.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test] async fn $name() { let (store, _keep) = super::sqlite().await; super::$name(&store).await; })*
        }
        mod postgres_backend {
            $(#[tokio::test] async fn $name() { let (store, _keep) = super::postgres().await; super::$name(&store).await; })*
        }
    };
}

on_both_backends!(tenants, apps_are_scoped_to_their_tenant, app_pages, keys_and_revocation, user_groups, unicode_names);

async fn tenant(store: &Store, name: &str) -> TenantRecord {
    let record = TenantRecord { id: TenantId::generate(), name: name.into(), created_at: 1 };
    store.create_tenant(&record, &format!("hash-{}", record.id)).await.expect("create tenant");
    record
}

async fn app(store: &Store, tenant: &TenantRecord, created_at: i64) -> AppRecord {
    let record = AppRecord {
        id: AppId::generate(),
        tenant_id: tenant.id.clone(),
        name: format!("app {created_at}"),
        settings: AppSettings::default(),
        created_at,
        updated_at: created_at,
    };
    store.create_app(&record).await.expect("create app");
    record
}

fn key(app: &AppRecord, created_at: i64) -> KeyRecord {
    KeyRecord {
        id: KeyId::generate(),
        app_id: app.id.clone(),
        tenant_id: app.tenant_id.clone(),
        name: "k".into(),
        scopes: [KeyScope::Publish].into_iter().collect(),
        secret_sealed: "sealed".into(),
        created_at,
        revoked_at: None,
    }
}

async fn tenants(store: &Store) {
    let t = tenant(store, "acme").await;
    let found = store.tenant_by_token_hash(&format!("hash-{}", t.id)).await.expect("query");
    assert_eq!(found, Some(t.clone()));
    assert_eq!(store.tenant_by_token_hash("nope").await.expect("query"), None);
    let dup = TenantRecord { id: TenantId::generate(), name: "dup".into(), created_at: 2 };
    let err = store.create_tenant(&dup, &format!("hash-{}", t.id)).await.expect_err("duplicate hash");
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    store.ping().await.expect("ping");
}

async fn apps_are_scoped_to_their_tenant(store: &Store) {
    let a = tenant(store, "a").await;
    let b = tenant(store, "b").await;
    let mut app_a = app(store, &a, 10).await;
    assert_eq!(store.app_of_tenant(&a.id, &app_a.id).await.expect("get"), Some(app_a.clone()));
    assert_eq!(store.app_of_tenant(&b.id, &app_a.id).await.expect("get"), None, "other tenant");
    assert_eq!(store.app(&app_a.id).await.expect("get"), Some(app_a.clone()));

    app_a.name = "renamed".into();
    app_a.settings.limits.max_connections = 7;
    app_a.updated_at = 11;
    assert!(store.update_app(&app_a).await.expect("update"));
    assert_eq!(store.app(&app_a.id).await.expect("get"), Some(app_a.clone()));
    let mut foreign = app_a.clone();
    foreign.tenant_id = b.id.clone();
    assert!(!store.update_app(&foreign).await.expect("update"), "other tenant cannot update");

    assert!(!store.delete_app(&b.id, &app_a.id).await.expect("delete"), "other tenant cannot delete");
    let k = key(&app_a, 12);
    store.create_key(&k).await.expect("key");
    assert!(store.delete_app(&a.id, &app_a.id).await.expect("delete"));
    assert_eq!(store.app(&app_a.id).await.expect("get"), None);
    assert_eq!(store.key(&k.id).await.expect("key"), None, "keys go with their app");
}

async fn app_pages(store: &Store) {
    let t = tenant(store, "paged").await;
    let other = tenant(store, "other").await;
    app(store, &other, 5).await;
    let mut ids = Vec::new();
    // Two apps share a timestamp to exercise the (created_at, id) tie-break.
    for created_at in [1, 2, 2, 3, 4] {
        ids.push(app(store, &t, created_at).await.id);
    }
    let mut seen = Vec::new();
    let mut request = PageRequest::first(2);
    loop {
        let page = store.list_apps(&t.id, &request).await.expect("list");
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|a| a.id.clone()));
        match page.next {
            Some(cursor) => request.after = Some(cursor),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.sort_by_key(|id| {
        let pos = ids.iter().position(|x| x == id).expect("known");
        ([1, 2, 2, 3, 4][pos], id.clone())
    });
    assert_eq!(seen, expected, "every app once, in (created_at, id) order, none of the other tenant");
}

async fn keys_and_revocation(store: &Store) {
    let t = tenant(store, "keys").await;
    let app_a = app(store, &t, 1).await;
    let app_b = app(store, &t, 2).await;
    let k1 = key(&app_a, 1);
    let k2 = key(&app_a, 2);
    store.create_key(&k1).await.expect("k1");
    store.create_key(&k2).await.expect("k2");
    assert_eq!(store.key(&k1.id).await.expect("get"), Some(k1.clone()));
    let listed = store.list_keys(&app_a.id, &PageRequest::first(10)).await.expect("list");
    assert_eq!(listed.items, vec![k1.clone(), k2.clone()]);
    assert!(store.list_keys(&app_b.id, &PageRequest::first(10)).await.expect("list").items.is_empty());

    assert!(!store.revoke_key(&app_b.id, &k1.id, 50).await.expect("revoke"), "wrong app");
    assert!(store.revoke_key(&app_a.id, &k1.id, 50).await.expect("revoke"));
    assert!(store.revoke_key(&app_a.id, &k1.id, 60).await.expect("revoke again"));
    assert_eq!(store.key(&k1.id).await.expect("get").and_then(|k| k.revoked_at), Some(50));
    assert_eq!(store.key(&k2.id).await.expect("get").and_then(|k| k.revoked_at), None);
    let all = KeyRecord { scopes: KeyScopes::all(), ..key(&app_a, 3) };
    store.create_key(&all).await.expect("all scopes");
    assert_eq!(store.key(&all.id).await.expect("get").map(|k| k.scopes), Some(KeyScopes::all()));
}

async fn user_groups(store: &Store) {
    let t = tenant(store, "ug").await;
    let a = app(store, &t, 1).await;
    let b = app(store, &t, 2).await;
    let native = HubName::native();
    let chat = HubName::new("chat").expect("hub");
    let user = UserId::new("alice").expect("user");
    let g = |s: &str| GroupName::new(s).expect("group");

    store.add_user_group(&a.id, &native, &user, &g("forever"), None, 100).await.expect("add");
    store.add_user_group(&a.id, &native, &user, &g("brief"), Some(200), 100).await.expect("add");
    store.add_user_group(&a.id, &chat, &user, &g("in-hub"), None, 100).await.expect("add");
    store.add_user_group(&b.id, &native, &user, &g("other-app"), None, 100).await.expect("add");

    assert_eq!(store.user_groups(&a.id, &native, &user, 150).await.expect("list"), vec![g("brief"), g("forever")]);
    assert_eq!(store.user_groups(&a.id, &native, &user, 200).await.expect("list"), vec![g("forever")], "expired");
    assert_eq!(store.user_groups(&a.id, &chat, &user, 150).await.expect("list"), vec![g("in-hub")]);

    // Re-adding refreshes the expiry.
    store.add_user_group(&a.id, &native, &user, &g("brief"), Some(500), 150).await.expect("refresh");
    assert_eq!(store.user_groups(&a.id, &native, &user, 300).await.expect("list"), vec![g("brief"), g("forever")]);

    assert!(store.remove_user_group(&a.id, &native, &user, &g("forever")).await.expect("remove"));
    assert!(!store.remove_user_group(&a.id, &native, &user, &g("forever")).await.expect("remove"));
    assert_eq!(store.purge_expired_user_groups(600).await.expect("purge"), 1);
    assert!(store.user_groups(&a.id, &native, &user, 0).await.expect("list").is_empty());
    assert_eq!(store.user_groups(&b.id, &native, &user, 0).await.expect("list"), vec![g("other-app")]);
}

async fn unicode_names(store: &Store) {
    let t = tenant(store, "Zürich 🚀 — \"quoted\"").await;
    let a = app(store, &t, 1).await;
    let user = UserId::new("ü.*>'; DROP TABLE apps; --").expect("user");
    let group = GroupName::new("🚀".repeat(128)).expect("group");
    store.add_user_group(&a.id, &HubName::native(), &user, &group, None, 1).await.expect("add");
    assert_eq!(store.user_groups(&a.id, &HubName::native(), &user, 1).await.expect("list"), vec![group]);
    let found = store.tenant_by_token_hash(&format!("hash-{}", t.id)).await.expect("query").expect("found");
    assert_eq!(found.name, "Zürich 🚀 — \"quoted\"");
}

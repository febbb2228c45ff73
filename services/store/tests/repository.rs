//! One repository suite, run against SQLite and against Postgres: the two backends must
//! behave exactly alike.

use signalbox_core::{
    AppId, AppSettings, GroupName, HubName, KeyId, KeyScope, KeyScopes, TenantId, UserId, WebhookEvent, WebhookEvents,
    WebhookId,
};
use signalbox_store::{
    AppRecord, AttemptRecord, Backend, KeyRecord, NewDelivery, OpenConnection, PageRequest, Store, StoreError,
    TenantRecord, WebhookRecord,
};
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

on_both_backends!(
    tenants,
    apps_are_scoped_to_their_tenant,
    app_pages,
    keys_and_revocation,
    user_groups,
    unicode_names,
    webhooks_are_scoped_to_their_app,
    deliveries_go_one_at_a_time_per_key_in_order,
    claims_are_leases,
    the_attempt_log_keeps_the_newest,
    open_connections_by_node,
);

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

fn webhook(app: &AppRecord, created_at: i64) -> WebhookRecord {
    WebhookRecord {
        id: WebhookId::generate(),
        app_id: app.id.clone(),
        url: "https://example.com/hook".into(),
        events: [WebhookEvent::Connected, WebhookEvent::Disconnected].into_iter().collect(),
        secret_sealed: "sealed".into(),
        previous_secret_sealed: None,
        created_at,
        updated_at: created_at,
    }
}

async fn webhooks_are_scoped_to_their_app(store: &Store) {
    let t = tenant(store, "hooks").await;
    let (a, b) = (app(store, &t, 1).await, app(store, &t, 2).await);
    let mut first = webhook(&a, 10);
    store.create_webhook(&first).await.expect("create");
    let second = webhook(&a, 11);
    store.create_webhook(&second).await.expect("create");
    assert_eq!(store.webhook(&a.id, &first.id).await.expect("get"), Some(first.clone()));
    assert_eq!(store.webhook(&b.id, &first.id).await.expect("get"), None, "another app's");
    let page = store.list_webhooks(&a.id, &PageRequest::first(1)).await.expect("list");
    assert_eq!(page.items, vec![first.clone()]);
    let rest = store.list_webhooks(&a.id, &PageRequest { limit: 5, after: page.next }).await.expect("list");
    assert_eq!(rest.items, vec![second.clone()]);
    first.events = WebhookEvents::parse(["connect"]).expect("known");
    first.previous_secret_sealed = Some("old".into());
    first.updated_at = 12;
    assert!(store.update_webhook(&first).await.expect("update"));
    assert_eq!(store.webhooks_of_app(&a.id).await.expect("all"), vec![first.clone(), second.clone()]);
    assert!(!store.delete_webhook(&b.id, &first.id).await.expect("delete"), "another app cannot delete");
    assert!(store.delete_webhook(&a.id, &first.id).await.expect("delete"));
    assert!(store.webhook(&a.id, &first.id).await.expect("get").is_none());
}

fn delivery(webhook: &WebhookRecord, event: &str, key: &str) -> NewDelivery {
    NewDelivery {
        webhook_id: webhook.id.clone(),
        event_id: event.into(),
        event_type: "connected".into(),
        ordering_key: key.into(),
        body: format!(r#"{{"event":"{event}"}}"#),
        event_time: 5,
    }
}

async fn deliveries_go_one_at_a_time_per_key_in_order(store: &Store) {
    let t = tenant(store, "queue").await;
    let a = app(store, &t, 1).await;
    let hook = webhook(&a, 1);
    store.create_webhook(&hook).await.expect("create");
    let queued = [delivery(&hook, "e1", "c1"), delivery(&hook, "e2", "c1"), delivery(&hook, "e3", "c2")];
    store.queue_deliveries(&queued, 100).await.expect("queue");
    store.queue_deliveries(&queued[..1], 100).await.expect("a repeat is skipped");
    assert_eq!(store.pending_deliveries(&hook.id).await.expect("count"), 3);
    // Only the head of each connection's queue.
    let claimed = store.claim_deliveries(100, 200, 10).await.expect("claim");
    assert_eq!(claimed.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(), ["e1", "e3"]);
    assert!(store.claim_deliveries(100, 200, 10).await.expect("claim").is_empty(), "claimed already");
    // e1 fails and waits; e2 must wait behind it.
    store.retry_delivery(claimed[0].id, 1, 150).await.expect("retry");
    store.finish_delivery(claimed[1].id).await.expect("done");
    assert!(store.claim_deliveries(120, 300, 10).await.expect("claim").is_empty(), "e1 is not due, e2 waits");
    let again = store.claim_deliveries(150, 300, 10).await.expect("claim");
    assert_eq!(again.iter().map(|d| (d.event_id.as_str(), d.attempts)).collect::<Vec<_>>(), [("e1", 1)]);
    store.finish_delivery(again[0].id).await.expect("done");
    let next = store.claim_deliveries(150, 300, 10).await.expect("claim");
    assert_eq!(next.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(), ["e2"]);
    assert_eq!(next[0].body, r#"{"event":"e2"}"#);
}

async fn claims_are_leases(store: &Store) {
    let t = tenant(store, "leases").await;
    let a = app(store, &t, 1).await;
    let hook = webhook(&a, 1);
    store.create_webhook(&hook).await.expect("create");
    store.queue_deliveries(&[delivery(&hook, "e1", "c1")], 0).await.expect("queue");
    assert_eq!(store.claim_deliveries(10, 20, 5).await.expect("claim").len(), 1);
    assert!(store.claim_deliveries(19, 40, 5).await.expect("claim").is_empty(), "the lease holds");
    assert_eq!(store.claim_deliveries(21, 40, 5).await.expect("claim").len(), 1, "a lapsed lease is claimed again");
    // Deleting the webhook drops what it was owed.
    assert!(store.delete_webhook(&a.id, &hook.id).await.expect("delete"));
    assert!(store.claim_deliveries(100, 200, 5).await.expect("claim").is_empty());
}

async fn the_attempt_log_keeps_the_newest(store: &Store) {
    let t = tenant(store, "log").await;
    let a = app(store, &t, 1).await;
    let hook = webhook(&a, 1);
    store.create_webhook(&hook).await.expect("create");
    for i in 0..(signalbox_store::deliveries::ATTEMPTS_KEPT + 5) {
        let attempt = AttemptRecord {
            id: 0,
            webhook_id: hook.id.clone(),
            event_id: format!("e{i}"),
            event_type: "connected".into(),
            attempt: 1,
            outcome: if i % 2 == 0 { "delivered".into() } else { "failed".into() },
            status: (i % 2 == 0).then_some(200),
            latency_ms: i,
            error: (i % 2 == 1).then(|| "boom".into()),
            at: i,
        };
        store.record_attempt(&attempt).await.expect("record");
    }
    let newest = store.attempts(&hook.id, None, 10).await.expect("log");
    assert_eq!(newest[0].event_id, format!("e{}", signalbox_store::deliveries::ATTEMPTS_KEPT + 4));
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = store.attempts(&hook.id, before, 30).await.expect("log");
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        all.extend(page);
    }
    assert_eq!(all.len() as i64, signalbox_store::deliveries::ATTEMPTS_KEPT, "older attempts pruned");
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(all.last().map(|a| a.event_id.as_str()), Some("e5"));
}

async fn open_connections_by_node(store: &Store) {
    let t = tenant(store, "open").await;
    let a = app(store, &t, 1).await;
    let connection = |id: &str, node: &str| OpenConnection {
        app_id: a.id.clone(),
        connection_id: id.into(),
        node: node.into(),
        hub: "_".into(),
        user_id: Some("bob".into()),
        groups: vec!["room".into()],
        connected_at: 7,
    };
    store.add_open_connection(&connection("n1_a", "n1")).await.expect("add");
    store.add_open_connection(&connection("n1_a", "n1")).await.expect("a repeat is ignored");
    store.add_open_connection(&connection("n2_b", "n2")).await.expect("add");
    let mut nodes = store.nodes_with_open_connections().await.expect("nodes");
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2"]);
    assert_eq!(store.open_connections_of_node("n1", 100, 10).await.expect("of node"), vec![connection("n1_a", "n1")]);
    assert!(store.open_connections_of_node("n1", 7, 10).await.expect("of node").is_empty(), "none before 7");
    store.remove_open_connection(&a.id, "n1_a").await.expect("remove");
    assert!(store.open_connections_of_node("n1", 100, 10).await.expect("of node").is_empty());
}

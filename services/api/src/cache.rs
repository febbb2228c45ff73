//! Keys and apps as the data plane needs them on every request, cached briefly and dropped
//! at once when this node or another announces a change (revocation, settings, deletion).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use signalbox_core::{AppId, KeyId, WebhookEvent, WebhookEvents, WebhookId};
use signalbox_store::{AppRecord, KeyRecord, PageRequest, Store, WebhookRecord};

use crate::crypto::MasterKey;
use crate::error::ApiError;

/// A key with its secret opened.
#[derive(Debug)]
pub(crate) struct OpenKey {
    pub(crate) record: KeyRecord,
    pub(crate) secret: Vec<u8>,
}

/// A webhook with its signing secrets opened: the current one, then the previous one while a
/// rotation is under way.
#[derive(Debug)]
pub(crate) struct OpenWebhook {
    pub(crate) record: WebhookRecord,
    pub(crate) secrets: Vec<Vec<u8>>,
}

/// An app's webhooks, oldest first.
#[derive(Debug, Default)]
pub(crate) struct AppWebhooks {
    pub(crate) all: Vec<Arc<OpenWebhook>>,
    /// Every event some webhook asks for.
    pub(crate) events: WebhookEvents,
}

impl AppWebhooks {
    /// The webhooks that ask for `event`.
    pub(crate) fn for_event(&self, event: WebhookEvent) -> impl Iterator<Item = &Arc<OpenWebhook>> {
        self.all.iter().filter(move |w| w.record.events.contains(event))
    }
}

#[derive(Debug)]
pub(crate) struct Cache {
    ttl: Duration,
    /// The bus epoch the entries were learnt in: after a reconnect, announcements from other
    /// api nodes may have been missed, so everything is dropped.
    epoch: AtomicU64,
    /// Plain mutexes: held for one map operation, never across a store query.
    keys: Mutex<HashMap<KeyId, (Instant, Arc<OpenKey>)>>,
    apps: Mutex<HashMap<AppId, (Instant, Arc<AppRecord>)>>,
    webhooks: Mutex<HashMap<AppId, (Instant, Arc<AppWebhooks>)>>,
    webhooks_by_id: Mutex<HashMap<WebhookId, (Instant, Arc<OpenWebhook>)>>,
    /// Each app's live keys as access keys (`{key_id}.{secret}`), for SignalR upstream signatures.
    access_keys: Mutex<HashMap<AppId, (Instant, AccessKeys)>>,
}

/// An app's access keys, `{key_id}.{secret}` each.
pub(crate) type AccessKeys = Arc<Vec<Vec<u8>>>;

/// The most keys of an app an upstream signature is made with.
const MAX_SIGNING_KEYS: u32 = 200;

impl Cache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            epoch: AtomicU64::new(0),
            keys: Mutex::default(),
            apps: Mutex::default(),
            webhooks: Mutex::default(),
            webhooks_by_id: Mutex::default(),
            access_keys: Mutex::default(),
        }
    }

    /// Drops everything if the bus reconnected since the entries were learnt.
    pub(crate) fn sync_epoch(&self, epoch: u64) {
        if self.epoch.swap(epoch, Ordering::SeqCst) != epoch {
            self.keys.lock().clear();
            self.apps.lock().clear();
            self.webhooks.lock().clear();
            self.webhooks_by_id.lock().clear();
            self.access_keys.lock().clear();
        }
    }

    /// A key (revoked or not) with its secret, or None if it does not exist.
    pub(crate) async fn key(
        &self,
        store: &Store,
        master: &MasterKey,
        id: &KeyId,
    ) -> Result<Option<Arc<OpenKey>>, ApiError> {
        if let Some((at, key)) = self.keys.lock().get(id)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(Arc::clone(key)));
        }
        let Some(record) = store.key(id).await? else { return Ok(None) };
        let secret = master.unseal(&record.secret_sealed, record.id.as_str()).map_err(|err| {
            tracing::error!(key = %record.id, error = %err, "cannot open a key secret: is the master key right?");
            ApiError::Internal("cannot open a key secret")
        })?;
        let key = Arc::new(OpenKey { record, secret });
        self.keys.lock().insert(id.clone(), (Instant::now(), Arc::clone(&key)));
        Ok(Some(key))
    }

    pub(crate) async fn app(&self, store: &Store, id: &AppId) -> Result<Option<Arc<AppRecord>>, ApiError> {
        if let Some((at, app)) = self.apps.lock().get(id)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(Arc::clone(app)));
        }
        let Some(app) = store.app(id).await? else { return Ok(None) };
        let app = Arc::new(app);
        self.apps.lock().insert(id.clone(), (Instant::now(), Arc::clone(&app)));
        Ok(Some(app))
    }

    /// The app's webhooks.
    pub(crate) async fn webhooks(
        &self,
        store: &Store,
        master: &MasterKey,
        app: &AppId,
    ) -> Result<Arc<AppWebhooks>, ApiError> {
        if let Some((at, webhooks)) = self.webhooks.lock().get(app)
            && at.elapsed() < self.ttl
        {
            return Ok(Arc::clone(webhooks));
        }
        let mut webhooks = AppWebhooks::default();
        for record in store.webhooks_of_app(app).await? {
            let open = open_webhook(master, record)?;
            for event in open.record.events.iter() {
                webhooks.events.insert(event);
            }
            webhooks.all.push(Arc::new(open));
        }
        let webhooks = Arc::new(webhooks);
        self.webhooks.lock().insert(app.clone(), (Instant::now(), Arc::clone(&webhooks)));
        Ok(webhooks)
    }

    /// One webhook by id (for deliveries, which name only their webhook).
    pub(crate) async fn webhook(
        &self,
        store: &Store,
        master: &MasterKey,
        id: &WebhookId,
    ) -> Result<Option<Arc<OpenWebhook>>, ApiError> {
        if let Some((at, webhook)) = self.webhooks_by_id.lock().get(id)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(Arc::clone(webhook)));
        }
        let Some(record) = store.webhook_by_id(id).await? else { return Ok(None) };
        let webhook = Arc::new(open_webhook(master, record)?);
        self.webhooks_by_id.lock().insert(id.clone(), (Instant::now(), Arc::clone(&webhook)));
        Ok(Some(webhook))
    }

    /// The app's live keys as Azure's SDKs hold them, `{key_id}.{secret}` (a new key is used
    /// once the entry ages out; a revoked one is dropped at once with the announcement).
    pub(crate) async fn access_keys(
        &self,
        store: &Store,
        master: &MasterKey,
        app: &AppId,
    ) -> Result<AccessKeys, ApiError> {
        if let Some((at, keys)) = self.access_keys.lock().get(app)
            && at.elapsed() < self.ttl
        {
            return Ok(Arc::clone(keys));
        }
        let page = store.list_keys(app, &PageRequest::first(MAX_SIGNING_KEYS)).await?;
        let mut keys = Vec::new();
        for record in page.items.into_iter().filter(|k| k.revoked_at.is_none()) {
            let secret = master.unseal(&record.secret_sealed, record.id.as_str()).map_err(|err| {
                tracing::error!(key = %record.id, error = %err, "cannot open a key secret: is the master key right?");
                ApiError::Internal("cannot open a key secret")
            })?;
            keys.push(signalbox_core::signalr::access_key(&record.id, &secret));
        }
        let keys = Arc::new(keys);
        self.access_keys.lock().insert(app.clone(), (Instant::now(), Arc::clone(&keys)));
        Ok(keys)
    }

    pub(crate) fn forget_key(&self, id: &KeyId) {
        self.keys.lock().remove(id);
        // The announcement names the key, not its app: every app's list is re-read.
        self.access_keys.lock().clear();
    }

    pub(crate) fn forget_app(&self, app: &AppId) {
        self.apps.lock().remove(app);
        self.keys.lock().retain(|_, (_, key)| &key.record.app_id != app);
        self.webhooks.lock().remove(app);
        self.webhooks_by_id.lock().retain(|_, (_, webhook)| &webhook.record.app_id != app);
        self.access_keys.lock().remove(app);
    }
}

fn open_webhook(master: &MasterKey, record: WebhookRecord) -> Result<OpenWebhook, ApiError> {
    let open = |sealed: &str| {
        master.unseal(sealed, record.id.as_str()).map_err(|err| {
            tracing::error!(webhook = %record.id, error = %err, "cannot open a webhook secret: is the master key right?");
            ApiError::Internal("cannot open a webhook secret")
        })
    };
    let mut secrets = vec![open(&record.secret_sealed)?];
    if let Some(previous) = &record.previous_secret_sealed {
        secrets.push(open(previous)?);
    }
    Ok(OpenWebhook { record, secrets })
}

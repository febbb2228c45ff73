//! Keys and apps as the data plane needs them on every request, cached briefly and dropped
//! at once when this node or another announces a change (revocation, settings, deletion).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use signalbox_core::{AppId, KeyId};
use signalbox_store::{AppRecord, KeyRecord, Store};

use crate::crypto::MasterKey;
use crate::error::ApiError;

/// A key with its secret opened.
#[derive(Debug)]
pub(crate) struct OpenKey {
    pub(crate) record: KeyRecord,
    pub(crate) secret: Vec<u8>,
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
}

impl Cache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { ttl, epoch: AtomicU64::new(0), keys: Mutex::default(), apps: Mutex::default() }
    }

    /// Drops everything if the bus reconnected since the entries were learnt.
    pub(crate) fn sync_epoch(&self, epoch: u64) {
        if self.epoch.swap(epoch, Ordering::SeqCst) != epoch {
            self.keys.lock().clear();
            self.apps.lock().clear();
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

    pub(crate) fn forget_key(&self, id: &KeyId) {
        self.keys.lock().remove(id);
    }

    pub(crate) fn forget_app(&self, app: &AppId) {
        self.apps.lock().remove(app);
        self.keys.lock().retain(|_, (_, key)| &key.record.app_id != app);
    }
}

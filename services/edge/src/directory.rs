//! What an edge knows about apps without a database: keys and settings, asked of the api
//! over the routing plane and cached until the api announces a change or the entry ages out.
//!
//! Concurrent lookups of one key share one request, so a reconnect storm of ten thousand
//! clients with the same key costs the api one query. Failures to reach the api are never
//! cached; "no such key" is cached briefly so garbage tokens cannot hammer the api.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use signalbox_bus::{Bus, BusError};
use signalbox_core::{AppId, AppSettings, GroupName, HubName, KeyId, UserId, WebhookEvent, WebhookEvents};
use signalbox_proto::wire::{self, ApiAnswer, ApiFailureKind, ApiQuery, ApiReply, ApiRequest, Body, UserGroupsQuery};
use signalbox_proto::{ApiOp, Subjects};
use tokio::sync::OnceCell;

/// How long "no such key" is remembered.
const NOT_FOUND_TTL: Duration = Duration::from_secs(5);

/// A key as an edge needs it.
#[derive(Debug)]
pub(crate) struct KeyEntry {
    pub(crate) app: AppId,
    pub(crate) secret: Vec<u8>,
    pub(crate) revoked: bool,
    pub(crate) settings: Arc<AppSettings>,
    /// The events the app's webhooks ask for.
    pub(crate) webhook_events: WebhookEvents,
}

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LookupError {
    #[error("not found")]
    NotFound,
    #[error("the api is unavailable")]
    Unavailable,
}

type Lookup = Result<Arc<KeyEntry>, LookupError>;

#[derive(Debug)]
struct Slot {
    created: Instant,
    /// The bus epoch when the slot was made: after a reconnect, announcements may have been
    /// missed, so the entry is no longer trusted.
    epoch: u64,
    app: AppId,
    result: OnceCell<Lookup>,
}

#[derive(Debug)]
pub(crate) struct Directory {
    bus: Arc<dyn Bus>,
    subjects: Subjects,
    ttl: Duration,
    timeout: Duration,
    /// Held only to find, insert or drop one slot; lookups wait on the slot, not the map.
    slots: Mutex<HashMap<KeyId, Arc<Slot>>>,
}

impl Directory {
    pub(crate) fn new(bus: Arc<dyn Bus>, subjects: Subjects, ttl: Duration, timeout: Duration) -> Self {
        Self { bus, subjects, ttl, timeout, slots: Mutex::default() }
    }

    fn fresh(&self, slot: &Slot) -> bool {
        if slot.epoch != self.bus.epoch() {
            return false;
        }
        match slot.result.get() {
            None => true,
            Some(Ok(_)) => slot.created.elapsed() < self.ttl,
            Some(Err(LookupError::NotFound)) => slot.created.elapsed() < NOT_FOUND_TTL,
            Some(Err(LookupError::Unavailable)) => false,
        }
    }

    /// The key `key` of `app` (the app comes from the unverified token and only chooses
    /// whom to ask: a key of another app is "not found").
    pub(crate) async fn key(&self, app: &AppId, key: &KeyId) -> Lookup {
        let slot = {
            let mut slots = self.slots.lock();
            match slots.get(key) {
                Some(slot) if &slot.app == app && self.fresh(slot) => Arc::clone(slot),
                _ => {
                    let slot = Arc::new(Slot {
                        created: Instant::now(),
                        epoch: self.bus.epoch(),
                        app: app.clone(),
                        result: OnceCell::new(),
                    });
                    slots.insert(key.clone(), Arc::clone(&slot));
                    slot
                }
            }
        };
        let result = slot.result.get_or_init(|| self.fetch_key(app, key)).await.clone();
        if matches!(result, Err(LookupError::Unavailable)) {
            let mut slots = self.slots.lock();
            if slots.get(key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                slots.remove(key);
            }
        }
        result
    }

    /// The key `key`, whatever its app (for tokens that name no app).
    pub(crate) async fn key_of_any_app(&self, key: &KeyId) -> Lookup {
        let any = AppId::new(wire::ANY_APP).map_err(|_| LookupError::NotFound)?;
        self.key(&any, key).await
    }

    async fn ask(&self, app: &AppId, op: ApiOp, query: ApiQuery) -> Result<ApiAnswer, LookupError> {
        match self.request(app, op, query, self.timeout).await? {
            ApiAnswer::Error(failure) if failure.kind == ApiFailureKind::NotFound as i32 => Err(LookupError::NotFound),
            ApiAnswer::Error(_) => Err(LookupError::Unavailable),
            answer => Ok(answer),
        }
    }

    /// Asks the api and returns its answer as it is (failures included); `Unavailable` when
    /// no answer came within `timeout`.
    pub(crate) async fn request(
        &self,
        app: &AppId,
        op: ApiOp,
        query: ApiQuery,
        timeout: Duration,
    ) -> Result<ApiAnswer, LookupError> {
        let request = wire::encode(Body::ApiRequest(ApiRequest { app: app.to_string(), query: Some(query) }));
        let reply = self.bus.request(self.subjects.api(app, op), request, timeout).await.map_err(|err| {
            if !matches!(err, BusError::NoResponders) {
                tracing::warn!(app = %app, error = %err, "api request failed");
            }
            LookupError::Unavailable
        })?;
        match wire::decode(reply) {
            Ok(Body::ApiReply(ApiReply { answer: Some(answer) })) => Ok(answer),
            Ok(_) | Err(_) => {
                metrics::counter!("signalbox_bus_bad_packets_total", "kind" => "api_reply").increment(1);
                tracing::warn!(app = %app, "unreadable api reply");
                Err(LookupError::Unavailable)
            }
        }
    }

    async fn fetch_key(&self, app: &AppId, key: &KeyId) -> Lookup {
        let ApiAnswer::Key(info) = self.ask(app, ApiOp::Key, ApiQuery::Key(key.to_string())).await? else {
            return Err(LookupError::Unavailable);
        };
        let settings = serde_json::from_str(&info.settings_json).ok().and_then(|v| AppSettings::from_json(v).ok());
        let (Ok(key_app), Some(settings)) = (AppId::new(&info.app), settings) else {
            tracing::warn!(app = %app, key = %key, "api sent an invalid key record");
            return Err(LookupError::Unavailable);
        };
        if &key_app != app && app.as_str() != wire::ANY_APP {
            return Err(LookupError::NotFound);
        }
        Ok(Arc::new(KeyEntry {
            app: key_app,
            secret: info.secret,
            revoked: info.revoked,
            settings: Arc::new(settings),
            // Events a newer api knows and this edge does not are ignored.
            webhook_events: info.webhook_events.iter().filter_map(|e| WebhookEvent::parse(e)).collect(),
        }))
    }

    /// The groups a user was added to through the REST API (not cached: they change).
    pub(crate) async fn user_groups(
        &self,
        app: &AppId,
        hub: &HubName,
        user: &UserId,
    ) -> Result<Vec<GroupName>, LookupError> {
        let query = ApiQuery::UserGroups(UserGroupsQuery { hub: hub.to_string(), user: user.to_string() });
        let ApiAnswer::UserGroups(list) = self.ask(app, ApiOp::UserGroups, query).await? else {
            return Err(LookupError::Unavailable);
        };
        Ok(list.groups.iter().filter_map(|g| GroupName::new(g).ok()).collect())
    }

    /// Forgets one key.
    pub(crate) fn forget_key(&self, key: &KeyId) {
        self.slots.lock().remove(key);
    }

    /// Forgets every key of an app (its settings changed, or it was deleted).
    pub(crate) fn forget_app(&self, app: &AppId) {
        // A slot looked up for any app (Azure-style tokens) names the app only in its result.
        let of_app = |slot: &Slot| {
            &slot.app == app || slot.result.get().is_some_and(|found| found.as_ref().is_ok_and(|key| &key.app == app))
        };
        self.slots.lock().retain(|_, slot| !of_app(slot));
    }
}

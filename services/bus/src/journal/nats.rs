//! The journal on JetStream: one stream per app over `{root}.h.{app}.>`, republishing every
//! stored message on `{root}.m.{app}.>` in stream order — so live delivery follows the order
//! positions were assigned in, and carries `Nats-Sequence` (the position) and
//! `Nats-Last-Sequence` (the group's previous position).
//!
//! Each append is a compare-and-set on the group: it says which position it expects to be the
//! group's last (`Nats-Expected-Last-Subject-Sequence`), so the stored message carries its exact
//! predecessor for readers too. A stale expectation (another appender got there first) is
//! refreshed from the stream and retried.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use bytes::Bytes;
use parking_lot::Mutex;
use signalbox_core::AppId;
use signalbox_proto::{Subject, Subjects};

use super::{Appended, Bounds, Journal, Retention, Stored};
use crate::{BoxFuture, Bus as _, BusError, NatsBus, Position};

/// Whether a JetStream API error says the app has no history stream (yet).
fn stream_missing(err: &async_nats::jetstream::Error) -> bool {
    err.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
}

const EXPECTED_LAST: &str = "Nats-Expected-Last-Subject-Sequence";
/// Appends tried before giving up on a group under heavy contention.
const MAX_ATTEMPTS: u32 = 64;
/// Groups whose last position is remembered; beyond this the memory is cleared.
const REMEMBERED_GROUPS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct NatsJournal {
    js: jetstream::Context,
    bus: NatsBus,
    subjects: Subjects,
    /// The retention each app's stream was last configured with by this node, so an append
    /// configures only when needed. A mutex held for one lookup or insert.
    configured: Arc<Mutex<HashMap<AppId, Retention>>>,
    /// The last position this node knows for each group: the expectation of its next append.
    last: Arc<Mutex<HashMap<Subject, u64>>>,
}

impl NatsJournal {
    pub fn new(bus: &NatsBus, subjects: Subjects) -> Self {
        Self {
            js: jetstream::new(bus.client().clone()),
            bus: bus.clone(),
            subjects,
            configured: Arc::default(),
            last: Arc::default(),
        }
    }

    /// One append: a compare-and-set on the group's last position, retried while other
    /// appenders win the race.
    async fn append_once(
        &self,
        app: &AppId,
        retention: Retention,
        subject: Subject,
        payload: Bytes,
        dedup_id: String,
    ) -> Result<Appended, BusError> {
        if !self.bus.is_connected() {
            return Err(BusError::Unavailable);
        }
        self.ensure_configured(app, retention).await?;
        let mut expected = self.last.lock().get(&subject).copied();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 1 {
                // Appenders racing on one group: spread the retries out.
                let jitter = rand::random::<u64>() % (200 * u64::from(attempt.min(20)));
                tokio::time::sleep(std::time::Duration::from_micros(jitter)).await;
            }
            let previous = match expected {
                Some(previous) => previous,
                None => self.last_of(app, &subject).await?,
            };
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", dedup_id.as_str());
            headers.insert(EXPECTED_LAST, previous.to_string().as_str());
            let ack = self
                .js
                .publish_with_headers(subject.to_string(), headers, payload.clone())
                .await
                .map_err(|_| BusError::Unavailable)?
                .await;
            match ack {
                Ok(ack) => {
                    if !ack.duplicate {
                        self.remember(&subject, ack.sequence);
                    }
                    return Ok(Appended { seq: ack.sequence, duplicate: ack.duplicate });
                }
                // Another appender stored a message on this group first: learn where the
                // group is now (JetStream says so in the error), and try again after it.
                Err(err) if err.kind() == PublishErrorKind::WrongLastSequence => {
                    expected = last_from_error(&err.to_string());
                }
                Err(err) if err.kind() == PublishErrorKind::StreamNotFound => {
                    self.configured.lock().remove(app);
                    self.ensure_configured(app, retention).await?;
                    expected = Some(0);
                }
                Err(err) if err.kind() == PublishErrorKind::MaxPayloadExceeded => return Err(BusError::TooLarge),
                Err(err) if err.kind() == PublishErrorKind::TimedOut => return Err(BusError::Timeout),
                Err(err) => return Err(Self::transport(err)),
            }
        }
        Err(BusError::Timeout)
    }

    fn stream_name(&self, app: &AppId) -> String {
        format!("{}_HISTORY_{app}", self.subjects.resource_prefix())
    }

    fn transport(err: impl std::error::Error + Send + Sync + 'static) -> BusError {
        BusError::Transport(Box::new(err))
    }

    async fn ensure_configured(&self, app: &AppId, retention: Retention) -> Result<(), BusError> {
        if self.configured.lock().get(app) == Some(&retention) {
            return Ok(());
        }
        let config = stream::Config {
            name: self.stream_name(app),
            subjects: vec![self.subjects.history_pattern(app).to_string()],
            max_age: retention.max_age,
            max_messages_per_subject: i64::from(retention.max_messages),
            duplicate_window: retention.dedup_window(),
            allow_direct: true,
            // An update with another count rescales an existing stream.
            num_replicas: self.bus.replicas(),
            republish: Some(stream::Republish {
                source: self.subjects.history_pattern(app).to_string(),
                destination: self.subjects.live_pattern(app).to_string(),
                headers_only: false,
            }),
            ..stream::Config::default()
        };
        match self.js.get_stream(&config.name).await {
            Ok(stream) => {
                // Keep the first sequence it was created with: it is the history's origin.
                let first_sequence = stream.cached_info().config.first_sequence;
                self.js.update_stream(stream::Config { first_sequence, ..config }).await.map_err(Self::transport)?;
            }
            Err(err) if matches!(err.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref e) if stream_missing(e)) =>
            {
                // A new stream starts from the clock, so a recreated one never reuses the
                // positions of an earlier one that clients may still hold.
                let first = signalbox_core::clock::unix_micros().max(1);
                let created =
                    self.js.create_stream(stream::Config { first_sequence: Some(first), ..config.clone() }).await;
                if created.is_err() {
                    // Another node created it first (with another first sequence): use theirs.
                    let stream = self.js.get_stream(&config.name).await.map_err(Self::transport)?;
                    let first_sequence = stream.cached_info().config.first_sequence;
                    self.js
                        .update_stream(stream::Config { first_sequence, ..config })
                        .await
                        .map_err(Self::transport)?;
                }
            }
            Err(err) => return Err(Self::transport(err)),
        }
        self.configured.lock().insert(app.clone(), retention);
        Ok(())
    }

    /// The group's last stored position, from the stream.
    async fn last_of(&self, app: &AppId, subject: &Subject) -> Result<u64, BusError> {
        let stream = self.js.get_stream(self.stream_name(app)).await.map_err(Self::transport)?;
        match stream.direct_get_last_for_subject(subject.as_str()).await {
            Ok(message) => Ok(message.sequence),
            Err(err) if err.kind() == stream::DirectGetErrorKind::NotFound => Ok(0),
            Err(err) => Err(Self::transport(err)),
        }
    }

    fn remember(&self, subject: &Subject, seq: u64) {
        let mut last = self.last.lock();
        if last.len() >= REMEMBERED_GROUPS {
            last.clear();
        }
        let entry = last.entry(subject.clone()).or_insert(0);
        *entry = (*entry).max(seq);
    }
}

/// The group's actual last position, from "wrong last sequence: N".
fn last_from_error(description: &str) -> Option<u64> {
    description.match_indices("wrong last sequence: ").find_map(|(at, marker)| {
        let digits: String = description[at + marker.len()..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

impl Journal for NatsJournal {
    fn configure(&self, app: &AppId, retention: Retention) -> BoxFuture<'_, Result<(), BusError>> {
        let app = app.clone();
        Box::pin(async move {
            self.configured.lock().remove(&app);
            self.ensure_configured(&app, retention).await
        })
    }

    fn append(
        &self,
        app: &AppId,
        retention: Retention,
        subject: Subject,
        payload: Bytes,
        dedup_id: String,
    ) -> BoxFuture<'_, Result<Appended, BusError>> {
        let app = app.clone();
        Box::pin(async move {
            let appended = self.append_once(&app, retention, subject, payload, dedup_id).await;
            if let Err(err) = &appended {
                metrics::counter!("signalbox_history_append_errors_total", "kind" => err.label()).increment(1);
            }
            appended
        })
    }

    fn read(
        &self,
        app: &AppId,
        subject: &Subject,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Stored>, BusError>> {
        let (app, subject) = (app.clone(), subject.clone());
        Box::pin(async move {
            let stream = match self.js.get_stream(self.stream_name(&app)).await {
                Ok(stream) => stream,
                Err(err) if matches!(err.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref e) if stream_missing(e)) =>
                {
                    return Ok(Vec::new());
                }
                Err(err) => return Err(Self::transport(err)),
            };
            let mut stored = Vec::new();
            let mut from = after + 1;
            while stored.len() < limit {
                let message = match stream.direct_get_next_for_subject(subject.as_str(), Some(from)).await {
                    Ok(message) => message,
                    Err(err) if err.kind() == stream::DirectGetErrorKind::NotFound => break,
                    Err(err) => return Err(Self::transport(err)),
                };
                let previous = message
                    .headers
                    .get(EXPECTED_LAST)
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    // Without the header (never written by us) nothing is claimed about the past.
                    .unwrap_or(message.sequence);
                from = message.sequence + 1;
                stored
                    .push(Stored { position: Position { seq: message.sequence, previous }, payload: message.payload });
            }
            Ok(stored)
        })
    }

    fn bounds(&self, app: &AppId) -> BoxFuture<'_, Result<Option<Bounds>, BusError>> {
        let app = app.clone();
        Box::pin(async move {
            match self.js.get_stream(self.stream_name(&app)).await {
                Ok(mut stream) => {
                    let info = stream.info().await.map_err(Self::transport)?;
                    // The configured first sequence is where this stream's positions began (a
                    // stream from before it was set began at 1).
                    let origin = info.config.first_sequence.unwrap_or(1).max(1);
                    // An empty stream reports its next position as `first_sequence` (or 0 before
                    // its first message: then the origin).
                    let first = match info.state.first_sequence {
                        0 => origin,
                        first => first,
                    };
                    Ok(Some(Bounds { origin, first: first.max(1) }))
                }
                Err(err) if matches!(err.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref e) if stream_missing(e)) => {
                    Ok(None)
                }
                Err(err) => Err(Self::transport(err)),
            }
        })
    }

    fn remove(&self, app: &AppId) -> BoxFuture<'_, Result<(), BusError>> {
        let app = app.clone();
        Box::pin(async move {
            self.configured.lock().remove(&app);
            match self.js.delete_stream(self.stream_name(&app)).await {
                Ok(_) => Ok(()),
                Err(err) if matches!(err.kind(), jetstream::context::DeleteStreamErrorKind::JetStream(ref e) if stream_missing(e)) => {
                    Ok(())
                }
                Err(err) => Err(Self::transport(err)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_last_sequence_from_the_error() {
        let text = "wrong last sequence: wrong last sequence: 3 (code 400, error code 10071)";
        assert_eq!(super::last_from_error(text), Some(3));
        assert_eq!(super::last_from_error("something else"), None);
    }
}

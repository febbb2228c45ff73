//! Presence on an edge: telling group members who came and went, and telling the other edges
//! this one is alive. The bookkeeping on each group target is the hub's (`hub::presence`);
//! this module does the I/O.
//!
//! **Events without a storm.** When an app turns presence events on, joins and leaves are
//! not sent one by one (a 10 000-member group filling up would cost 10 000 × 10 000 frames).
//! Each group target collects its changes, and once per [`INTERVAL`] the node publishes one
//! `PresenceUpdate` for the group to the other nodes and delivers one frame to each local
//! member with everything that changed meanwhile, here and elsewhere: at most one presence
//! frame per member per interval, however many join. Lists are cut at `MAX_LISTED` entries
//! per frame (`truncated`), after which the client asks for the full list.
//!
//! **Counts** come from every node's own count, carried by its updates. A node that gets its
//! first member in a group asks the others for theirs; a node not heard from for
//! `PEER_TIMEOUT` is dropped from the count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use signalbox_proto::native::PresenceChange;
use signalbox_proto::wire::{self, Body, Heartbeat, PresenceMember};

use crate::EdgeState;
use crate::conn::ConnKey;
use crate::hub::{Notice, PresenceFlush, Target, UserChange};
use crate::protocol::{Format, Outbound, PresenceNotice};

/// How often presence changes are published and delivered.
pub(crate) const INTERVAL: Duration = Duration::from_millis(250);
/// How often an edge says it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);

/// Publishes and delivers queued presence changes once per interval; drops silent peers.
pub(crate) async fn run(edge: Arc<EdgeState>) {
    let mut interval = tokio::time::interval(INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_peer_check = Instant::now();
    loop {
        interval.tick().await;
        if last_peer_check.elapsed() >= HEARTBEAT {
            last_peer_check = Instant::now();
            edge.hub.forget_silent_peers();
        }
        let queued = std::mem::take(&mut *edge.hub.presence_queue.lock());
        for target in queued {
            flush(&edge, &target).await;
        }
    }
}

async fn flush(edge: &EdgeState, target: &Arc<Target>) {
    let Some(group) = target.group() else { return };
    let Some(PresenceFlush { update, notice }) = edge.hub.take_presence(target) else { return };
    if let Some(update) = update {
        metrics::counter!("signalbox_presence_updates_published_total").increment(1);
        if let Err(err) = edge.hub.bus.publish(target.subject.clone(), wire::encode(Body::PresenceUpdate(update))).await
        {
            tracing::warn!(subject = %target.subject, error = %err, "could not publish a presence update");
        }
    }
    if let Some(notice) = notice {
        let delivered = deliver(target, group.as_str(), &notice);
        metrics::counter!("signalbox_presence_frames_total").increment(delivered as u64);
    }
}

/// Gives every local member the notice, framed once per format in use (as messages are);
/// returns how many frames went out.
fn deliver(target: &Target, group: &str, notice: &Notice) -> usize {
    match notice {
        Notice::Members(changes, count) => {
            let joined: Vec<PresenceChange<'_>> = changes.joined.iter().map(change_view).collect();
            let left: Vec<PresenceChange<'_>> = changes.left.iter().map(change_view).collect();
            let truncated = changes.truncated;
            let notice = PresenceNotice::Members { group, joined: &joined, left: &left, count: *count, truncated };
            deliver_one(target, notice, |_| true)
        }
        Notice::Count(count) => deliver_one(target, PresenceNotice::Count { group, count: *count }, |_| true),
        // One notice per user who came or went, in order; the connection that brought a user
        // is not told (it knows, from its own join's answer).
        Notice::Users(changes, count, joined_at) => changes
            .iter()
            .enumerate()
            .map(|(index, change)| {
                // Not to a connection that joined after it (its join's answer said who was there).
                let news_to = |key: &ConnKey| joined_at.get(key).is_none_or(|joined| index >= *joined);
                match change {
                    UserChange::Added { user, info, by } => {
                        let notice = PresenceNotice::UserAdded { group, user, info: info.as_deref(), count: *count };
                        deliver_one(target, notice, |key| Some(key) != by.as_ref() && news_to(key))
                    }
                    UserChange::Removed { user } => {
                        deliver_one(target, PresenceNotice::UserRemoved { group, user, count: *count }, news_to)
                    }
                }
            })
            .sum(),
    }
}

/// Gives the notice to the local members `to` accepts.
fn deliver_one(target: &Target, notice: PresenceNotice<'_>, to: impl Fn(&ConnKey) -> bool) -> usize {
    let mut frames: [Option<Option<bytes::Bytes>>; Format::COUNT] = Default::default();
    target.with_members(|members| {
        let mut delivered = 0;
        for (key, conn) in members {
            if !to(key) {
                continue;
            }
            let format = conn.format();
            let frame = frames[format.index()].get_or_insert_with(|| format.encode(&Outbound::Presence(notice)));
            if let Some(frame) = frame {
                conn.outbox.push_counted(frame.clone(), None);
                delivered += 1;
            }
        }
        delivered
    })
}

fn change_view(member: &PresenceMember) -> PresenceChange<'_> {
    PresenceChange { user_id: member.user.as_deref(), connection_id: &member.connection_id }
}

/// Publishes this node's heartbeat now and every [`HEARTBEAT`] (retrying soon when the bus is
/// not up yet, so a starting node is known at once).
pub(crate) async fn beat(edge: Arc<EdgeState>) {
    loop {
        let wait = if send_heartbeat(&edge).await { HEARTBEAT } else { Duration::from_millis(100) };
        tokio::time::sleep(wait).await;
    }
}

/// Publishes this node's heartbeat; false if the bus refused it.
pub(crate) async fn send_heartbeat(edge: &EdgeState) -> bool {
    let heartbeat = Heartbeat {
        node: edge.hub.config.node.to_string(),
        started_at_millis: edge.hub.started_at_millis,
        connections: edge.hub.connection_count() as u64,
    };
    let subject = edge.hub.config.subjects.heartbeat(&edge.hub.config.node);
    match edge.hub.bus.publish(subject, wire::encode(Body::Heartbeat(heartbeat))).await {
        Ok(()) => {
            edge.announced.store(true, std::sync::atomic::Ordering::Relaxed);
            true
        }
        Err(err) => {
            tracing::debug!(error = %err, "could not publish a heartbeat");
            false
        }
    }
}

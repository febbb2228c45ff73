//! The one conformance suite every [`Bus`] implementation passes (see the crate docs for
//! the contract it checks). Each check takes a fresh bus and panics on a violation.
//!
//! "Nothing arrives" is never checked by waiting: a check publishes a marker on another
//! subject after the message that must not arrive, and asserts the marker comes first
//! (messages of one publisher reach one inbox in order).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use signalbox_proto::Subject;

use crate::{Bus, BusError, Delivery, Inbox, QueueGroup};

/// Generous deadline for something that must arrive; never a pass/fail timing.
const ARRIVAL_DEADLINE: Duration = Duration::from_secs(10);

fn subject(s: &str) -> Subject {
    Subject::new(s).expect("valid subject")
}

async fn next(inbox: &mut Inbox) -> Delivery {
    tokio::time::timeout(ARRIVAL_DEADLINE, inbox.recv())
        .await
        .expect("a delivery within the deadline")
        .expect("inbox open")
}

/// Runs every check against buses made by `make`.
pub async fn run_all<B: Bus>(make: impl Fn() -> B) {
    publish_reaches_every_inbox_once(make()).await;
    order_is_kept_per_publisher_and_subject(make()).await;
    interest_lifecycle(make()).await;
    patterns_match_nats_rules(make()).await;
    queue_groups_deliver_to_one_member(make()).await;
    requests_get_replies_and_typed_errors(make()).await;
    payloads_arrive_byte_for_byte(make()).await;
}

/// Two inboxes on one subject each get every message exactly once.
pub async fn publish_reaches_every_inbox_once(bus: impl Bus) {
    let (a, mut inbox_a) = bus.open_inbox();
    let (b, mut inbox_b) = bus.open_inbox();
    let s = subject("conf.fanout");
    let marker = subject("conf.fanout.marker");
    a.subscribe(s.clone(), None).await.expect("subscribe a");
    b.subscribe(s.clone(), None).await.expect("subscribe b");
    a.subscribe(marker.clone(), None).await.expect("marker a");
    b.subscribe(marker.clone(), None).await.expect("marker b");
    bus.publish(s.clone(), Bytes::from_static(b"one")).await.expect("publish");
    bus.publish(marker.clone(), Bytes::from_static(b"end")).await.expect("publish marker");
    for inbox in [&mut inbox_a, &mut inbox_b] {
        let first = next(inbox).await;
        assert_eq!((&first.subject, &first.payload[..]), (&s, &b"one"[..]));
        let second = next(inbox).await;
        assert_eq!(second.subject, marker, "exactly one copy, then the marker");
    }
}

/// A thousand numbered messages from one publisher on one subject arrive in order.
pub async fn order_is_kept_per_publisher_and_subject(bus: impl Bus) {
    let (interest, mut inbox) = bus.open_inbox();
    let s = subject("conf.order");
    interest.subscribe(s.clone(), None).await.expect("subscribe");
    let count = 1000u32;
    let bus = Arc::new(bus);
    let publisher = {
        let bus = Arc::clone(&bus);
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..count {
                bus.publish(s.clone(), Bytes::from(i.to_be_bytes().to_vec())).await.expect("publish");
            }
        })
    };
    for expected in 0..count {
        let d = next(&mut inbox).await;
        let got = u32::from_be_bytes(d.payload[..].try_into().expect("4 bytes"));
        assert_eq!(got, expected, "messages out of order");
    }
    publisher.await.expect("publisher");
}

/// Nothing before subscribe, everything while subscribed, nothing after unsubscribe.
pub async fn interest_lifecycle(bus: impl Bus) {
    let (interest, mut inbox) = bus.open_inbox();
    let s = subject("conf.life");
    let marker = subject("conf.life.marker");
    interest.subscribe(marker.clone(), None).await.expect("marker");

    bus.publish(s.clone(), Bytes::from_static(b"before")).await.expect("publish");
    bus.publish(marker.clone(), Bytes::from_static(b"m1")).await.expect("publish");
    assert_eq!(next(&mut inbox).await.payload, Bytes::from_static(b"m1"), "no delivery before subscribe");

    let id = interest.subscribe(s.clone(), None).await.expect("subscribe");
    bus.publish(s.clone(), Bytes::from_static(b"during")).await.expect("publish");
    let during = next(&mut inbox).await;
    assert_eq!((during.subscription, &during.payload[..]), (id, &b"during"[..]));

    interest.unsubscribe(id);
    // Unsubscribing is fire-and-forget; a subscribe round trip on the marker makes sure
    // the server has processed it before we publish.
    let settle = subject("conf.life.settle");
    let settle_id = interest.subscribe(settle, None).await.expect("settle");
    interest.unsubscribe(settle_id);
    bus.publish(s.clone(), Bytes::from_static(b"after")).await.expect("publish");
    bus.publish(marker.clone(), Bytes::from_static(b"m2")).await.expect("publish");
    assert_eq!(next(&mut inbox).await.payload, Bytes::from_static(b"m2"), "no delivery after unsubscribe");

    // Unsubscribing twice, or an unknown id, is harmless.
    interest.unsubscribe(id);
}

/// `*` matches one token, `>` one or more, as in NATS.
pub async fn patterns_match_nats_rules(bus: impl Bus) {
    let (interest, mut inbox) = bus.open_inbox();
    let one = interest.subscribe(subject("conf.pat.*.x"), None).await.expect("subscribe");
    let many = interest.subscribe(subject("conf.deep.>"), None).await.expect("subscribe");
    let marker = subject("conf.pat.marker");
    interest.subscribe(marker.clone(), None).await.expect("marker");
    bus.publish(subject("conf.pat.a.x"), Bytes::from_static(b"1")).await.expect("publish");
    bus.publish(subject("conf.pat.a.b.x"), Bytes::from_static(b"no")).await.expect("publish");
    bus.publish(subject("conf.deep.a.b.c"), Bytes::from_static(b"2")).await.expect("publish");
    bus.publish(subject("conf.deep"), Bytes::from_static(b"no")).await.expect("publish");
    bus.publish(marker, Bytes::from_static(b"end")).await.expect("publish");
    let d1 = next(&mut inbox).await;
    assert_eq!((d1.subscription, d1.subject.as_str()), (one, "conf.pat.a.x"));
    let d2 = next(&mut inbox).await;
    assert_eq!((d2.subscription, d2.subject.as_str()), (many, "conf.deep.a.b.c"));
    assert_eq!(next(&mut inbox).await.payload, Bytes::from_static(b"end"));
}

/// Each message on a queue group goes to exactly one member.
pub async fn queue_groups_deliver_to_one_member(bus: impl Bus) {
    let queue = QueueGroup::new("conf-q");
    let s = subject("conf.queue");
    let (a, mut inbox_a) = bus.open_inbox();
    let (b, mut inbox_b) = bus.open_inbox();
    a.subscribe(s.clone(), Some(queue.clone())).await.expect("a");
    b.subscribe(s.clone(), Some(queue)).await.expect("b");
    let count = 200usize;
    for i in 0..count {
        bus.publish(s.clone(), Bytes::from(i.to_string())).await.expect("publish");
    }
    let mut seen = Vec::new();
    while seen.len() < count {
        tokio::select! {
            Some(d) = inbox_a.recv() => seen.push(d.payload),
            Some(d) = inbox_b.recv() => seen.push(d.payload),
            () = tokio::time::sleep(ARRIVAL_DEADLINE) => panic!("queue deliveries missing: {}", seen.len()),
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), count, "each message exactly once across the group");
}

/// A served subject replies; an unserved one fails with `NoResponders`; a server that does
/// not answer makes the request fail with `Timeout`.
pub async fn requests_get_replies_and_typed_errors(bus: impl Bus) {
    let bus = Arc::new(bus);
    let (interest, mut inbox) = bus.open_inbox();
    interest.subscribe(subject("conf.svc.*"), Some(QueueGroup::new("svc"))).await.expect("serve");
    let server = tokio::spawn(async move {
        while let Some(request) = inbox.recv().await {
            let reply = request.reply.expect("a request carries a reply route");
            if request.subject.as_str() == "conf.svc.echo" {
                reply.send(request.payload).await.expect("reply");
            }
            // conf.svc.silent: drop the request without answering.
        }
    });
    let reply = bus.request(subject("conf.svc.echo"), Bytes::from_static(b"ping"), ARRIVAL_DEADLINE).await;
    assert_eq!(reply.expect("reply"), Bytes::from_static(b"ping"));
    let none = bus.request(subject("conf.nobody"), Bytes::new(), ARRIVAL_DEADLINE).await;
    assert!(matches!(none, Err(BusError::NoResponders)), "{none:?}");
    let silent = bus.request(subject("conf.svc.silent"), Bytes::new(), Duration::from_millis(300)).await;
    assert!(matches!(silent, Err(BusError::Timeout)), "{silent:?}");
    server.abort();
}

/// Binary payloads, including an envelope with exclusions, arrive unchanged.
pub async fn payloads_arrive_byte_for_byte(bus: impl Bus) {
    use signalbox_proto::wire::{self, Body, Envelope, Target};
    let (interest, mut inbox) = bus.open_inbox();
    let s = subject("conf.bytes");
    interest.subscribe(s.clone(), None).await.expect("subscribe");
    let envelope = Envelope {
        app: "app_x".into(),
        hub: "_".into(),
        target: Some(Target::Group("g".into())),
        exclude: vec!["n1_a".into(), "n2_b".into()],
        event: "e".into(),
        data: Bytes::from_static(&[0, 255, 1, 254]),
        ..Envelope::default()
    };
    let encoded = wire::encode(Body::Message(envelope.clone()));
    bus.publish(s, encoded.clone()).await.expect("publish");
    let got = next(&mut inbox).await;
    assert_eq!(got.payload, encoded);
    assert_eq!(wire::decode(got.payload), Ok(Body::Message(envelope)));
}

// ---- Journal ------------------------------------------------------------------------------

use signalbox_core::{AppId, GroupName, Scope};
use signalbox_proto::Subjects;

use crate::journal::{Continuity, Journal, Retention, continuity};
use crate::{Claim, Idempotency, Position};

fn group_subjects(app: &AppId, group: &str) -> (Subject, Subject) {
    let subjects = Subjects::default();
    let scope = Scope::native(app.clone());
    let group = GroupName::new(group).expect("group");
    (subjects.history(&scope, &group), subjects.group(&scope, &group))
}

fn retention(max_messages: u32) -> Retention {
    Retention { max_age: Duration::from_secs(600), max_messages }
}

/// Runs every journal check; `make` returns one node's bus and journal, all nodes sharing
/// one routing plane.
pub async fn run_journal<B: Bus, J: Journal>(make: impl Fn() -> (B, J)) {
    appends_are_positioned_and_delivered_in_order(make()).await;
    each_group_has_its_own_chain(make()).await;
    repeats_are_recognised(make()).await;
    reads_return_what_is_kept(make()).await;
    racing_appenders_keep_an_exact_chain(make(), make()).await;
    a_history_begun_again_is_a_reset(make()).await;
}

/// A position given out by a history that was removed reads as a reset in the history that
/// replaced it — never as "nothing missed", though the new history's first message names no
/// predecessor.
pub async fn a_history_begun_again_is_a_reset<B: Bus, J: Journal>((_bus, journal): (B, J)) {
    let app = AppId::generate();
    let (history, _) = group_subjects(&app, "room");
    let old = journal.append(&app, retention(100), history.clone(), Bytes::from_static(b"old"), "o".into()).await;
    let old = old.expect("append").seq;
    journal.remove(&app).await.expect("remove");
    let new = journal.append(&app, retention(100), history.clone(), Bytes::from_static(b"new"), "n".into()).await;
    assert!(new.expect("append").seq > old, "positions only grow");
    let stored = journal.read(&app, &history, old, 10).await.expect("read");
    assert_eq!(stored.len(), 1);
    let bounds = journal.bounds(&app).await.expect("bounds");
    assert_eq!(continuity(old, stored.first(), bounds), Continuity::Reset);
}

/// What was stored before a restart of the journal (the process, or the server behind it) is
/// there after it: the messages, their positions and chains, the duplicates window, the
/// bounds. `reopen` stops the journal and returns a new one over the same storage.
pub async fn history_survives_a_restart<J: Journal>(journal: J, reopen: impl AsyncFnOnce(J) -> J) {
    let app = AppId::generate();
    let (a, _) = group_subjects(&app, "a");
    let (b, _) = group_subjects(&app, "b");
    let mut seqs = Vec::new();
    for i in 0..6u8 {
        let subject = if i % 2 == 0 { a.clone() } else { b.clone() };
        let appended =
            journal.append(&app, retention(100), subject, Bytes::from(vec![i]), format!("d{i}")).await.expect("append");
        seqs.push(appended.seq);
    }
    let before_a = journal.read(&app, &a, 0, 100).await.expect("read");
    let before_bounds = journal.bounds(&app).await.expect("bounds");

    let journal = reopen(journal).await;
    assert_eq!(journal.read(&app, &a, 0, 100).await.expect("read after restart"), before_a, "same messages");
    assert_eq!(journal.bounds(&app).await.expect("bounds"), before_bounds, "same origin and first");
    let again = journal.append(&app, retention(100), a.clone(), Bytes::from(vec![4]), "d4".into()).await;
    assert_eq!(again.expect("append").seq, seqs[4], "a repeat from before the restart is still recognised");
    let next = journal.append(&app, retention(100), a.clone(), Bytes::from_static(b"n"), "n".into()).await;
    let next = next.expect("append").seq;
    assert!(next > seqs[5], "positions go on growing");
    let read = journal.read(&app, &a, seqs[4], 10).await.expect("read");
    assert_eq!(read.iter().map(|s| s.position).collect::<Vec<_>>(), vec![Position { seq: next, previous: seqs[4] }]);
    let bounds = journal.bounds(&app).await.expect("bounds");
    assert_eq!(
        continuity(seqs[1], journal.read(&app, &a, seqs[1], 1).await.expect("read").first(), bounds),
        Continuity::Complete
    );
}

pub async fn appends_are_positioned_and_delivered_in_order<B: Bus, J: Journal>((bus, journal): (B, J)) {
    let app = AppId::generate();
    let (history, live) = group_subjects(&app, "room");
    let (interest, mut inbox) = bus.open_inbox();
    interest.subscribe(live.clone(), None).await.expect("subscribe");
    let mut positions = Vec::new();
    for i in 0..5u8 {
        let appended = journal
            .append(&app, retention(100), history.clone(), Bytes::from(vec![i]), format!("m{i}"))
            .await
            .expect("append");
        assert!(!appended.duplicate);
        positions.push(appended.seq);
    }
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions increase: {positions:?}");
    let mut previous = 0;
    for (i, seq) in positions.iter().enumerate() {
        let d = next(&mut inbox).await;
        assert_eq!((d.subject.as_str(), &d.payload[..]), (live.as_str(), &[i as u8][..]), "in order");
        assert_eq!(d.position, Some(Position { seq: *seq, previous }), "live delivery carries its position");
        previous = *seq;
    }
}

pub async fn each_group_has_its_own_chain<B: Bus, J: Journal>((_bus, journal): (B, J)) {
    let app = AppId::generate();
    let (a, _) = group_subjects(&app, "a");
    let (b, _) = group_subjects(&app, "b");
    let a1 = journal.append(&app, retention(100), a.clone(), Bytes::from_static(b"a1"), "a1".into()).await.expect("a1");
    let b1 = journal.append(&app, retention(100), b.clone(), Bytes::from_static(b"b1"), "b1".into()).await.expect("b1");
    let a2 = journal.append(&app, retention(100), a.clone(), Bytes::from_static(b"a2"), "a2".into()).await.expect("a2");
    let read = journal.read(&app, &a, 0, 10).await.expect("read");
    let positions: Vec<Position> = read.iter().map(|s| s.position).collect();
    assert_eq!(positions, vec![Position { seq: a1.seq, previous: 0 }, Position { seq: a2.seq, previous: a1.seq }]);
    assert!(b1.seq > a1.seq && b1.seq < a2.seq, "one order per app");
    assert_eq!(journal.read(&app, &b, 0, 10).await.expect("read")[0].position, Position { seq: b1.seq, previous: 0 });
}

pub async fn repeats_are_recognised<B: Bus, J: Journal>((bus, journal): (B, J)) {
    let app = AppId::generate();
    let (history, live) = group_subjects(&app, "room");
    let (interest, mut inbox) = bus.open_inbox();
    interest.subscribe(live.clone(), None).await.expect("subscribe");
    let first = journal
        .append(&app, retention(100), history.clone(), Bytes::from_static(b"x"), "same".into())
        .await
        .expect("append");
    let again = journal
        .append(&app, retention(100), history.clone(), Bytes::from_static(b"x"), "same".into())
        .await
        .expect("append");
    assert_eq!((again.seq, again.duplicate), (first.seq, true));
    let marker =
        journal.append(&app, retention(100), history, Bytes::from_static(b"m"), "marker".into()).await.expect("marker");
    assert_eq!(next(&mut inbox).await.payload, Bytes::from_static(b"x"));
    let d = next(&mut inbox).await;
    assert_eq!(
        d.position.map(|p| (p.seq, p.previous)),
        Some((marker.seq, first.seq)),
        "delivered once; the chain skips nothing"
    );
}

pub async fn reads_return_what_is_kept<B: Bus, J: Journal>((_bus, journal): (B, J)) {
    let app = AppId::generate();
    let (history, _) = group_subjects(&app, "room");
    let mut seqs = Vec::new();
    for i in 0..5u8 {
        let a = journal
            .append(&app, retention(3), history.clone(), Bytes::from(vec![i]), format!("r{i}"))
            .await
            .expect("append");
        seqs.push(a.seq);
    }
    let kept = journal.read(&app, &history, 0, 100).await.expect("read");
    assert_eq!(kept.iter().map(|s| s.position.seq).collect::<Vec<_>>(), seqs[2..], "the newest 3");
    assert_eq!(kept[0].position.previous, seqs[1], "the oldest kept one still names its predecessor");
    let bounds = journal.bounds(&app).await.expect("bounds");
    assert!(bounds.is_some_and(|b| b.origin <= seqs[0] && b.first <= seqs[2]), "{bounds:?} {seqs:?}");
    assert_eq!(continuity(0, kept.first(), bounds), Continuity::Expired, "from the start: two expired");
    assert_eq!(continuity(seqs[1], kept.first(), bounds), Continuity::Complete, "after the second: nothing missed");
    let after = journal.read(&app, &history, seqs[2], 1).await.expect("read");
    assert_eq!(after.iter().map(|s| s.position.seq).collect::<Vec<_>>(), [seqs[3]], "after a position, limited");
    assert!(journal.read(&app, &history, seqs[4], 10).await.expect("read").is_empty());
    assert_eq!(continuity(seqs[4], None, bounds), Continuity::Complete, "up to date");
    let (other, _) = group_subjects(&app, "nobody");
    assert!(journal.read(&app, &other, 0, 10).await.expect("read").is_empty());
    journal.remove(&app).await.expect("remove");
    assert!(journal.read(&app, &history, 0, 10).await.expect("read").is_empty(), "removed");
}

pub async fn racing_appenders_keep_an_exact_chain<B: Bus, J: Journal>((_bus_a, a): (B, J), (_bus_b, b): (B, J)) {
    let app = AppId::generate();
    let (history, _) = group_subjects(&app, "contested");
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for (node, journal) in [("a", Arc::clone(&a)), ("b", Arc::clone(&b))] {
        let history = history.clone();
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let id = format!("{node}{i}");
                journal
                    .append(&app, retention(1000), history.clone(), Bytes::from(id.clone()), id)
                    .await
                    .expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("appender");
    }
    let stored = a.read(&app, &history, 0, 1000).await.expect("read");
    assert_eq!(stored.len(), 100, "every append stored once");
    let mut previous = 0;
    for s in &stored {
        assert_eq!(s.position.previous, previous, "each message names the one before it");
        previous = s.position.seq;
    }
}

// ---- Idempotency ----------------------------------------------------------------------------

/// One key, claimed by two nodes.
pub async fn run_idempotency<I: Idempotency>(first: I, second: I) {
    let key = format!("conf.{}", signalbox_core::ids::random_token(12));
    assert_eq!(first.claim(&key).await.expect("claim"), Claim::First);
    assert_eq!(second.claim(&key).await.expect("claim"), Claim::InProgress, "seen by the other node");
    first.complete(&key, Bytes::from_static(b"{\"id\":\"m1\"}")).await.expect("complete");
    assert_eq!(second.claim(&key).await.expect("claim"), Claim::Done(Bytes::from_static(b"{\"id\":\"m1\"}")));
    let failed = format!("conf.{}", signalbox_core::ids::random_token(12));
    assert_eq!(first.claim(&failed).await.expect("claim"), Claim::First);
    first.release(&failed).await.expect("release");
    assert_eq!(second.claim(&failed).await.expect("claim"), Claim::First, "a released key can be retried");
}

/// An abandoned claim (its node died before completing it) is taken over after the lease;
/// `first` and `second` share a store whose lease is zero.
pub async fn run_idempotency_lease<I: Idempotency>(first: I, second: I) {
    let key = format!("conf.{}", signalbox_core::ids::random_token(12));
    assert_eq!(first.claim(&key).await.expect("claim"), Claim::First);
    assert_eq!(second.claim(&key).await.expect("claim"), Claim::First, "the abandoned claim is taken over");
    second.complete(&key, Bytes::from_static(b"{\"id\":\"m2\"}")).await.expect("complete");
    assert_eq!(
        first.claim(&key).await.expect("claim"),
        Claim::Done(Bytes::from_static(b"{\"id\":\"m2\"}")),
        "a completed key is never taken over"
    );
}

// ---- Event queue ------------------------------------------------------------------------------

/// Events appended before anyone consumes arrive in order, once per id; acknowledged ones do
/// not come back.
pub async fn run_event_queue<Q: crate::EventQueue>(queue: Q) {
    use futures_util::StreamExt as _;
    let app = AppId::new("app_events").expect("valid");
    for i in 0..20u32 {
        let id = format!("evt_{i}");
        queue.append(&app, &id, Bytes::from(i.to_string())).await.expect("append");
    }
    queue.append(&app, "evt_3", Bytes::from_static(b"3")).await.expect("a repeated id is accepted");
    let mut events = queue.consume().await.expect("consume");
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("event");
        seen.push(String::from_utf8(event.payload.to_vec()).expect("utf-8"));
        event.ack().await.expect("ack");
    }
    assert_eq!(seen, (0..20).map(|i| i.to_string()).collect::<Vec<_>>(), "in order, once");
    queue.append(&app, "evt_20", Bytes::from_static(b"20")).await.expect("append while consuming");
    let next = tokio::time::timeout(Duration::from_secs(10), events.next()).await.expect("in time");
    assert_eq!(&next.expect("open").expect("event").payload[..], b"20", "nothing repeated before it");
}

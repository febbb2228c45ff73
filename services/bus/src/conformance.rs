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

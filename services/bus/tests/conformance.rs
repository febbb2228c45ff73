//! The one Bus conformance suite, against both implementations.

use std::time::Duration;

use signalbox_bus::{
    Handover, LocalBus, LocalEventQueue, LocalIdempotency, LocalJournal, NatsBus, NatsConfig, NatsEventQueue,
    NatsIdempotency, NatsJournal, conformance,
};
use signalbox_proto::Subjects;
use signalbox_test_support::{NatsServer, tempfile};

#[tokio::test]
async fn local_bus_conforms() {
    conformance::run_all(LocalBus::new).await;
}

#[tokio::test]
async fn nats_bus_conforms() {
    let server = NatsServer::start();
    let config = NatsConfig::new(server.url(), "conformance");
    // Each check gets its own connection, as separate nodes would have.
    let mut buses = Vec::new();
    for _ in 0..7 {
        let bus = NatsBus::connect(&config).await.expect("connect");
        bus.wait_connected(Duration::from_secs(10)).await.expect("connected");
        buses.push(bus);
    }
    let buses = std::sync::Mutex::new(buses);
    conformance::run_all(|| buses.lock().expect("lock").pop().expect("a bus per check")).await;
}

/// What an error means on NATS: while the server is gone, `publish` and `request` fail with
/// `Unavailable` (nothing was sent); subscriptions made before the outage, and during it, work
/// again once the server is back.
#[tokio::test]
async fn nats_outages_fail_loudly_and_subscriptions_come_back() {
    use bytes::Bytes;
    use signalbox_bus::{Bus, BusError};
    use signalbox_proto::Subject;

    let mut server = NatsServer::start();
    let bus = NatsBus::connect(&NatsConfig::new(server.url(), "outage")).await.expect("connect");
    bus.wait_connected(Duration::from_secs(10)).await.expect("connected");
    let (interest, mut inbox) = bus.open_inbox();
    let before = Subject::new("outage.before").expect("subject");
    let during = Subject::new("outage.during").expect("subject");
    interest.subscribe(before.clone(), None).await.expect("subscribe");
    let epoch = bus.epoch();

    server.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while bus.is_connected() {
        assert!(tokio::time::Instant::now() < deadline, "the client never noticed the outage");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(bus.publish(before.clone(), Bytes::from_static(b"x")).await, Err(BusError::Unavailable)));
    assert!(matches!(
        bus.request(before.clone(), Bytes::new(), Duration::from_secs(1)).await,
        Err(BusError::Unavailable)
    ));
    interest.subscribe(during.clone(), None).await.expect("subscribing while disconnected is queued");

    server.start_again();
    bus.wait_connected(Duration::from_secs(10)).await.expect("reconnected");
    assert!(bus.epoch() > epoch, "a reconnect changes the epoch");
    // Published by another connection, so only the server's resubscription can deliver them.
    let other = NatsBus::connect(&NatsConfig::new(server.url(), "other")).await.expect("connect");
    other.wait_connected(Duration::from_secs(10)).await.expect("connected");
    for subject in [before, during] {
        let delivered = async {
            loop {
                other.publish(subject.clone(), Bytes::from_static(b"back")).await.expect("publish");
                if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(200), inbox.recv()).await {
                    return d;
                }
            }
        };
        let delivery = tokio::time::timeout(Duration::from_secs(10), delivered).await.expect("delivered after restart");
        assert_eq!(delivery.subject, subject);
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), inbox.recv()).await {}
    }
}

async fn local_journal(dir: &std::path::Path) -> (LocalBus, LocalJournal) {
    let bus = LocalBus::new();
    let journal = LocalJournal::open(bus.clone(), Subjects::default(), &dir.join("history.db")).await.expect("open");
    (bus, journal)
}

#[tokio::test]
async fn local_journal_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (bus, journal) = local_journal(dir.path()).await;
    conformance::run_journal(|| (bus.clone(), journal.clone())).await;
}

#[tokio::test]
async fn local_journal_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_bus, journal) = local_journal(dir.path()).await;
    conformance::history_survives_a_restart(journal, async |journal| {
        drop(journal);
        local_journal(dir.path()).await.1
    })
    .await;
}

#[tokio::test]
async fn nats_journal_survives_a_restart() {
    let mut server = NatsServer::start();
    let config = NatsConfig::new(server.url(), "journal-restart");
    let bus = NatsBus::connect(&config).await.expect("connect");
    bus.wait_connected(Duration::from_secs(10)).await.expect("connected");
    let journal = NatsJournal::new(&bus, Subjects::default());
    conformance::history_survives_a_restart(journal, async |journal| {
        drop(journal);
        server.stop();
        server.start_again();
        bus.wait_connected(Duration::from_secs(10)).await.expect("reconnected");
        let fresh = NatsBus::connect(&config).await.expect("connect");
        fresh.wait_connected(Duration::from_secs(10)).await.expect("connected");
        NatsJournal::new(&fresh, Subjects::default())
    })
    .await;
}

#[tokio::test]
async fn nats_journal_conforms() {
    let server = NatsServer::start();
    let config = NatsConfig::new(server.url(), "journal");
    let mut nodes = Vec::new();
    for _ in 0..7 {
        let bus = NatsBus::connect(&config).await.expect("connect");
        bus.wait_connected(Duration::from_secs(10)).await.expect("connected");
        let journal = NatsJournal::new(&bus, Subjects::default());
        nodes.push((bus, journal));
    }
    let nodes = std::sync::Mutex::new(nodes);
    conformance::run_journal(|| nodes.lock().expect("lock").pop().expect("a node per check")).await;
}

#[tokio::test]
async fn idempotency_conforms() {
    let local = LocalIdempotency::new();
    conformance::run_idempotency(local.clone(), local).await;
    let abandoning = LocalIdempotency::with_lease(Duration::ZERO);
    conformance::run_idempotency_lease(abandoning.clone(), abandoning).await;
    let server = NatsServer::start();
    let config = NatsConfig::new(server.url(), "idempotency");
    let a = NatsBus::connect(&config).await.expect("connect");
    let b = NatsBus::connect(&config).await.expect("connect");
    for bus in [&a, &b] {
        bus.wait_connected(Duration::from_secs(10)).await.expect("connected");
    }
    conformance::run_idempotency(NatsIdempotency::new(&a, "sb"), NatsIdempotency::new(&b, "sb")).await;
    let (a, b) =
        (NatsIdempotency::with_lease(&a, "sb", Duration::ZERO), NatsIdempotency::with_lease(&b, "sb", Duration::ZERO));
    conformance::run_idempotency_lease(a, b).await;
}

#[tokio::test]
async fn event_queues_conform() {
    conformance::run_event_queue(LocalEventQueue::new()).await;
    let server = NatsServer::start();
    let bus = NatsBus::connect(&NatsConfig::new(server.url(), "events")).await.expect("connect");
    bus.wait_connected(Duration::from_secs(10)).await.expect("connected");
    conformance::run_event_queue(NatsEventQueue::new(&bus, Subjects::default())).await;
}

/// One consumer at a time: a standby gets nothing while the first consumes, and takes over
/// what the first left unacknowledged when it stops.
#[tokio::test]
async fn a_standby_event_consumer_takes_over() {
    use futures_util::StreamExt as _;
    use signalbox_bus::EventQueue as _;
    let server = NatsServer::start();
    let connect = || async {
        let bus = NatsBus::connect(&NatsConfig::new(server.url(), "events")).await.expect("connect");
        bus.wait_connected(Duration::from_secs(10)).await.expect("connected");
        bus
    };
    let (a, b) = (connect().await, connect().await);
    let handover = Handover { ack_wait: Duration::from_secs(1), pin_timeout: Duration::from_secs(1) };
    let first = NatsEventQueue::with_handover(&a, Subjects::default(), handover);
    let second = NatsEventQueue::with_handover(&b, Subjects::default(), handover);
    let app = signalbox_core::AppId::new("app_handover").expect("valid");
    let mut consuming = first.consume().await.expect("consume");
    first.append(&app, "e1", bytes::Bytes::from_static(b"1")).await.expect("append");
    let taken = tokio::time::timeout(Duration::from_secs(10), consuming.next()).await.expect("in time");
    assert_eq!(&taken.expect("open").expect("event").payload[..], b"1");
    let mut standby = second.consume().await.expect("consume");
    second.append(&app, "e2", bytes::Bytes::from_static(b"2")).await.expect("append");
    let next = tokio::time::timeout(Duration::from_secs(10), consuming.next()).await.expect("in time");
    let next = next.expect("open").expect("event");
    assert_eq!(&next.payload[..], b"2", "the pinned consumer gets the next one too");
    next.ack().await.expect("ack");
    // The first stops without acknowledging "1": the standby gets it.
    drop(consuming);
    let redelivered = tokio::time::timeout(Duration::from_secs(20), standby.next()).await.expect("taken over in time");
    assert_eq!(&redelivered.expect("open").expect("event").payload[..], b"1");
}

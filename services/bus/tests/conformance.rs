//! The one Bus conformance suite, against both implementations.

use signalbox_bus::{LocalBus, NatsBus, NatsConfig, conformance};
use signalbox_test_support::NatsServer;

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
        bus.wait_connected(std::time::Duration::from_secs(10)).await.expect("connected");
        buses.push(bus);
    }
    let buses = std::sync::Mutex::new(buses);
    conformance::run_all(|| buses.lock().expect("lock").pop().expect("a bus per check")).await;
}

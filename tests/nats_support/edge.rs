//! The JetStream edge used directly, without a role process: a bus on a test
//! server and a consumer of one queue, for the edge's own tests.

use std::time::Duration;

use orchestrator_actors::edges::nats::{ConsumerSpec, NatsBus, NatsOptions, NatsSource, Topology};

use super::NatsServer;

/// A bus on `server` with the default topology, connected as `name`.
pub async fn bus(server: &NatsServer, name: &str) -> NatsBus {
    let options = NatsOptions {
        url: server.url(),
        name: name.into(),
        ..Default::default()
    };
    NatsBus::connect(&options, Topology::default())
        .await
        .expect("connect to the test server")
}

/// Consumer `name` of `queue`: 30 s ack wait, at most 10 deliveries.
pub async fn source(bus: &NatsBus, name: &str, queue: &str) -> NatsSource {
    let spec = ConsumerSpec {
        name: name.into(),
        queues: vec![queue.into()],
        ack_wait: Duration::from_secs(30),
        max_deliver: 10,
    };
    bus.source(&spec).await.expect("create consumer")
}

//! The JetStream edge used directly, without a role process: a bus on a test
//! server and a consumer of one queue, for the edge's own tests.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
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
    source_with_ack_wait(bus, name, queue, Duration::from_secs(30)).await
}

/// [`source`] with its own ack wait: a test that must see what the server
/// does once an unsettled message's ack wait is over waits past a short one.
pub async fn source_with_ack_wait(
    bus: &NatsBus,
    name: &str,
    queue: &str,
    ack_wait: Duration,
) -> NatsSource {
    let spec = ConsumerSpec {
        name: name.into(),
        queues: vec![queue.into()],
        ack_wait,
        max_deliver: 10,
    };
    bus.source(&spec).await.expect("create consumer")
}

/// What the server says about durable consumer `name` of the default
/// stream, read through a raw client (as the `nats` CLI would).
pub async fn consumer_info(server: &NatsServer, name: &str) -> consumer::Info {
    let client = async_nats::connect(server.url()).await.expect("raw client");
    let stream = jetstream::new(client)
        .get_stream(Topology::default().stream)
        .await
        .expect("the stream exists");
    stream.consumer_info(name).await.expect("consumer info")
}

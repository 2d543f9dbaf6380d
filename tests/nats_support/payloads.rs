//! Helpers of the large-payload tests: the bus, raw looks at the stream the
//! way the template's consumers see it, and proofs that do not compress.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::{self, stream::Stream};
use orchestrator_actors::edges::nats::{NatsBus, NatsSource, PAYLOAD_OBJECT_HEADER, PayloadRef};
use orchestrator_actors::edges::{Delivery, EdgeError, JobSource, Publisher};
use orchestrator_actors::messages::Envelope;

use super::NatsServer;

/// The stream of the default topology, and its payload bucket.
pub const STREAM: &str = "modularorchestrator";
pub const BUCKET: &str = "modularorchestrator_payloads";
pub const MIB: usize = 1024 * 1024;
/// Deadlock guard for one delivery; never a speed expectation.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn bus(server: &NatsServer) -> NatsBus {
    super::edge::bus(server, "payload-test").await
}

pub async fn next(source: &mut NatsSource) -> Delivery {
    tokio::time::timeout(DELIVERY_TIMEOUT, source.next())
        .await
        .expect("a delivery within the deadlock guard")
        .expect("the source is open")
}

/// Publishes `payload` as message `id` on `queue`.
pub async fn publish(
    bus: &NatsBus,
    queue: &str,
    id: &str,
    payload: &[u8],
) -> Result<(), EdgeError> {
    let message = Envelope::new(id, payload.to_vec());
    bus.publisher().publish(queue, message).await
}

/// A raw JetStream client, to look at the stream the way the template's
/// consumers (or the `nats` CLI) would.
pub async fn raw(server: &NatsServer) -> (jetstream::Context, Stream) {
    let client = async_nats::connect(server.url()).await.expect("raw client");
    let js = jetstream::new(client);
    let stream = js.get_stream(STREAM).await.expect("the stream exists");
    (js, stream)
}

/// The message with stream sequence `sequence`, unresolved.
pub async fn raw_message(stream: &Stream, sequence: u64) -> StreamMessage {
    stream
        .get_raw_message(sequence)
        .await
        .expect("raw message by sequence")
}

/// How many messages the stream holds on `queue`'s subject.
pub async fn count_on(stream: &Stream, queue: &str) -> u64 {
    let mut consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            filter_subject: format!("{STREAM}.{queue}"),
            ..Default::default()
        })
        .await
        .expect("counting consumer");
    consumer.info().await.expect("consumer info").num_pending
}

/// A block proof of about `size` bytes: `{"block":B,"prover":P,"proof":"0x…"}`
/// with a proof that does not repeat (so no layer can shortcut it).
pub fn proof(block: u64, prover: &str, size: usize) -> Vec<u8> {
    let head = format!(r#"{{"block":{block},"prover":"{prover}","proof":"0x"#);
    let mut bytes = head.into_bytes();
    let mut state = block.wrapping_mul(6_364_136_223_846_793_005) ^ size as u64;
    while bytes.len() + 2 < size {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        bytes.push(b"0123456789abcdef"[(state >> 60) as usize]);
    }
    bytes.extend_from_slice(br#""}"#);
    bytes
}

pub fn reference_of(message: &StreamMessage) -> PayloadRef {
    let header = message.headers.get(PAYLOAD_OBJECT_HEADER);
    let reference = PayloadRef::of(Some(&message.headers), &message.payload)
        .expect("a valid reference body")
        .expect("a reference header");
    assert_eq!(
        header.map(|h| h.as_str()),
        Some(reference.name.as_str()),
        "the header names the object of the body"
    );
    reference
}

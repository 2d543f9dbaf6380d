//! Payloads larger than a NATS message, against a real nats-server: the
//! publisher stores them in the object store and sends a reference, the
//! source hands actors the original bytes, small messages stay exactly as
//! the original template's consumers read them, and limits, lost objects,
//! dead letters, dedupe and the proof lookup all hold with references.

mod nats_support;
mod support;

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::{self, stream::Stream};
use nats_support::{NatsServer, Tap};
use orchestrator_actors::edges::nats::{
    ConsumerSpec, NatsBus, NatsOptions, NatsSource, PAYLOAD_OBJECT_HEADER, PayloadConfig,
    PayloadRef, StoredProof, Topology,
};
use orchestrator_actors::edges::{Delivery, EdgeError, JobSource, Publisher};
use orchestrator_actors::messages::{DeadLetter, Envelope, queues};

/// The stream of the default topology, and its payload bucket.
const STREAM: &str = "modularorchestrator";
const BUCKET: &str = "modularorchestrator_payloads";
const MIB: usize = 1024 * 1024;
/// Deadlock guard for one delivery; never a speed expectation.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

async fn bus(server: &NatsServer) -> NatsBus {
    let options = NatsOptions {
        url: server.url(),
        name: "payload-test".into(),
        ..Default::default()
    };
    NatsBus::connect(&options, Topology::default())
        .await
        .expect("connect to the test server")
}

async fn source(bus: &NatsBus, name: &str, queue: &str) -> NatsSource {
    let spec = ConsumerSpec {
        name: name.into(),
        queues: vec![queue.into()],
        ack_wait: Duration::from_secs(30),
        max_deliver: 10,
    };
    bus.source(&spec).await.expect("create consumer")
}

async fn next(source: &mut NatsSource) -> Delivery {
    tokio::time::timeout(DELIVERY_TIMEOUT, source.next())
        .await
        .expect("a delivery within the deadlock guard")
        .expect("the source is open")
}

/// Publishes `payload` as message `id` on `queue`.
async fn publish(bus: &NatsBus, queue: &str, id: &str, payload: &[u8]) -> Result<(), EdgeError> {
    let message = Envelope::new(id, payload.to_vec());
    bus.publisher().publish(queue, message).await
}

/// A raw JetStream client, to look at the stream the way the template's
/// consumers (or the `nats` CLI) would.
async fn raw(server: &NatsServer) -> (jetstream::Context, Stream) {
    let client = async_nats::connect(server.url()).await.expect("raw client");
    let js = jetstream::new(client);
    let stream = js.get_stream(STREAM).await.expect("the stream exists");
    (js, stream)
}

/// The message with stream sequence `sequence`, unresolved.
async fn raw_message(stream: &Stream, sequence: u64) -> StreamMessage {
    stream
        .get_raw_message(sequence)
        .await
        .expect("raw message by sequence")
}

/// How many messages the stream holds on `queue`'s subject.
async fn count_on(stream: &Stream, queue: &str) -> u64 {
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
fn proof(block: u64, prover: &str, size: usize) -> Vec<u8> {
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

fn reference_of(message: &StreamMessage) -> PayloadRef {
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

#[tokio::test]
async fn large_payloads_go_through_the_object_store_and_arrive_byte_for_byte() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    let mut proofs = source(&bus, "matcher", queues::BLOCK_PROOFS).await;
    let (_, stream) = raw(&server).await;
    for (sequence, block, size) in [(1, 100, 3_000_000), (2, 101, 20_000_000)] {
        let payload = proof(block, "sp1", size);
        let id = format!("sp1:block-{block}");
        let started = Instant::now();
        publish(&bus, queues::BLOCK_PROOFS, &id, &payload)
            .await
            .expect("a large payload is published");
        let published = started.elapsed();

        let message = raw_message(&stream, sequence).await;
        assert!(
            message.payload.len() < 1024,
            "the message on the subject is a small reference, not {} bytes",
            message.payload.len()
        );
        assert_eq!(
            message.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(id.as_str())
        );
        let reference = reference_of(&message);
        assert_eq!(
            (
                reference.bucket.as_str(),
                reference.size,
                reference.block,
                reference.prover.as_deref()
            ),
            (BUCKET, payload.len(), Some(block), Some("sp1"))
        );

        let started = Instant::now();
        let delivery = next(&mut proofs).await;
        let consumed = started.elapsed();
        assert_eq!(
            (delivery.queue.as_str(), delivery.id.as_str()),
            ("block_proofs", id.as_str())
        );
        assert!(
            delivery.payload == payload,
            "the delivered payload differs from the published one ({} vs {} bytes)",
            delivery.payload.len(),
            payload.len()
        );
        delivery.ack.ack().await.unwrap();
        eprintln!("{size} bytes: published in {published:?}, consumed in {consumed:?}");
    }
}

#[tokio::test]
async fn small_payloads_stay_inline_byte_for_byte_without_a_reference_header() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    let limit = PayloadConfig::default().inline_limit;
    let at_limit = proof(7, "zisk", limit);
    assert_eq!(at_limit.len(), limit);
    let over_limit = proof(8, "zisk", limit + 1);
    let messages = [
        Envelope::block(7),
        Envelope::new("zisk:block-7", at_limit),
        Envelope::new("zisk:block-8", over_limit),
    ];
    for message in &messages {
        let (id, payload) = (&message.id, &message.payload);
        publish(&bus, queues::BLOCK_PROOFS, id, payload)
            .await
            .unwrap();
    }
    let (_, stream) = raw(&server).await;
    for (sequence, message) in (1..).zip(&messages[..2]) {
        let raw = raw_message(&stream, sequence).await;
        assert!(
            raw.payload == message.payload,
            "message {} is not inline byte for byte",
            message.id
        );
        assert_eq!(
            raw.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(message.id.as_str())
        );
        assert!(
            raw.headers.get(PAYLOAD_OBJECT_HEADER).is_none(),
            "an inline message carries a reference header"
        );
    }
    let stored = raw_message(&stream, 3).await;
    assert_eq!(
        reference_of(&stored).size,
        limit + 1,
        "one byte over the limit is stored"
    );
}

#[tokio::test]
async fn a_payload_over_max_bytes_is_refused_for_good_and_nothing_is_published() {
    let server = NatsServer::start();
    let config = PayloadConfig {
        max_bytes: 2 * MIB,
        ..PayloadConfig::default()
    };
    let bus = bus(&server).await.with_payloads(config);
    let size = 2 * MIB + 1;
    let error = publish(
        &bus,
        queues::BLOCK_PROOFS,
        "sp1:block-9",
        &proof(9, "sp1", size),
    )
    .await
    .expect_err("a payload over max_bytes is refused");
    assert!(error.is_permanent(), "not permanent: {error}");
    let EdgeError::Rejected { queue, id, reason } = &error else {
        panic!("expected Rejected, got {error:?}");
    };
    assert_eq!(
        (queue.as_str(), id.as_str()),
        ("block_proofs", "sp1:block-9")
    );
    for expected in [
        size.to_string(),
        (2 * MIB).to_string(),
        "--max-payload".to_owned(),
    ] {
        assert!(
            reason.contains(&expected),
            "{reason:?} does not name {expected}"
        );
    }
    let (js, mut stream) = raw(&server).await;
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        0,
        "a message was published"
    );
    if let Ok(mut objects) = js.get_stream(format!("OBJ_{BUCKET}")).await {
        let stored = objects.info().await.unwrap().state.messages;
        assert_eq!(stored, 0, "an object was stored");
    }
}

#[tokio::test]
async fn an_inline_limit_above_the_servers_max_payload_is_refused_with_a_fix() {
    let dir = support::temp_dir("small-max-payload");
    let config = dir.path().join("nats.conf");
    std::fs::write(&config, "max_payload: 65536\n").unwrap();
    let server = NatsServer::start_with(&["-c", config.to_str().unwrap()]);
    let bus = bus(&server).await;
    let error = publish(
        &bus,
        queues::BLOCK_PROOFS,
        "p:block-1",
        &proof(1, "p", 100_000),
    )
    .await
    .expect_err("a message over the server's max_payload is refused");
    let EdgeError::Rejected { reason, .. } = &error else {
        panic!("expected Rejected (not retried), got {error:?}");
    };
    assert!(
        reason.contains("lower --inline-payload-limit"),
        "{reason:?} does not say to lower the inline limit"
    );

    // With the limit lowered, even the object store's chunks fit the server.
    let bus = bus.with_payloads(PayloadConfig {
        inline_limit: 16 * 1024,
        ..PayloadConfig::default()
    });
    let payload = proof(2, "p", MIB);
    publish(&bus, queues::BLOCK_PROOFS, "p:block-2", &payload)
        .await
        .expect("a large payload is stored in chunks the server accepts");
    let delivery = next(&mut source(&bus, "matcher", queues::BLOCK_PROOFS).await).await;
    assert_eq!(delivery.id, "p:block-2");
    assert!(delivery.payload == payload, "the payload differs");
}

#[tokio::test]
async fn a_lost_object_is_dead_lettered_and_the_next_message_still_comes() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    publish(
        &bus,
        queues::BLOCK_PROOFS,
        "sp1:block-3",
        &proof(3, "sp1", 3 * MIB),
    )
    .await
    .unwrap();
    publish(
        &bus,
        queues::BLOCK_PROOFS,
        "sp1:block-4",
        &proof(4, "sp1", 1000),
    )
    .await
    .unwrap();
    let (js, stream) = raw(&server).await;
    let lost = reference_of(&raw_message(&stream, 1).await);
    js.get_object_store(BUCKET)
        .await
        .unwrap()
        .delete(&lost.name)
        .await
        .expect("delete the object");

    let mut proofs = source(&bus, "matcher", queues::BLOCK_PROOFS).await;
    let mut dead = source(&bus, "dead-reader", queues::DEAD_LETTER).await;
    let delivery = next(&mut proofs).await;
    assert_eq!(delivery.id, "sp1:block-4", "the next message is delivered");
    delivery.ack.ack().await.unwrap();

    let letter = next(&mut dead).await;
    let letter: DeadLetter = serde_json::from_slice(&letter.payload).unwrap();
    assert_eq!(
        (letter.queue.as_str(), letter.id.as_str()),
        ("block_proofs", "sp1:block-3")
    );
    assert!(
        letter.error.contains(&lost.name) && letter.error.contains("gone"),
        "the reason does not name the lost object: {:?}",
        letter.error
    );
}

#[tokio::test]
async fn large_dead_letters_are_stored_too() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    let payload = proof(5, "sp1", 3 * MIB);
    publish(&bus, queues::COLLECTED_STEP_PROOFS, "group-5", &payload)
        .await
        .unwrap();
    let mut jobs = source(&bus, "aggregator", queues::COLLECTED_STEP_PROOFS).await;
    let mut dead = source(&bus, "dead-reader", queues::DEAD_LETTER).await;
    let job = next(&mut jobs).await;
    job.ack
        .reject("prover exited with code 1")
        .await
        .expect("dead-lettered");

    let letter = next(&mut dead).await;
    let letter: DeadLetter = serde_json::from_slice(&letter.payload).unwrap();
    assert_eq!(letter.error, "prover exited with code 1");
    assert!(
        letter.payload.as_bytes() == payload,
        "the dead letter does not hold the payload ({} bytes)",
        letter.payload.len()
    );
    let (_, stream) = raw(&server).await;
    let raw_letter = stream
        .get_last_raw_message_by_subject(&format!("{STREAM}.{}", queues::DEAD_LETTER))
        .await
        .unwrap();
    assert!(reference_of(&raw_letter).size > 3 * MIB);
}

#[tokio::test]
async fn a_dead_letter_too_large_to_store_keeps_the_reference() {
    let server = NatsServer::start();
    // Quotes double in a dead letter's JSON text: 3 MiB of them make a
    // 6 MiB letter, over this max_bytes, while the payload itself is under.
    let bus = bus(&server).await.with_payloads(PayloadConfig {
        max_bytes: 4 * MIB,
        ..PayloadConfig::default()
    });
    let payload = "\"".repeat(3 * MIB).into_bytes();
    publish(&bus, queues::STEPS, "step-0", &payload)
        .await
        .unwrap();
    let mut jobs = source(&bus, "step-prover", queues::STEPS).await;
    let mut dead = source(&bus, "dead-reader", queues::DEAD_LETTER).await;
    let job = next(&mut jobs).await;
    job.ack.reject("bad step").await.expect("dead-lettered");

    let letter = next(&mut dead).await;
    let letter: DeadLetter = serde_json::from_slice(&letter.payload).unwrap();
    assert!(letter.error.starts_with("bad step"), "{:?}", letter.error);
    let reference: PayloadRef = serde_json::from_str(&letter.payload).expect("the reference");
    assert_eq!(reference.name, "steps/step-0");
}

#[tokio::test]
async fn block_proofs_finds_inline_and_stored_proofs_of_one_block_only() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    let inline_5 = proof(5, "zisk", 300_000);
    let stored_5 = proof(5, "sp1", 3 * MIB);
    let published = [
        ("zisk:block-5", inline_5.clone()),
        ("sp1:block-6", proof(6, "sp1", 3 * MIB)),
        ("zisk:block-6", proof(6, "zisk", 300_000)),
        ("sp1:block-5", stored_5.clone()),
    ];
    for (id, payload) in published {
        publish(&bus, queues::BLOCK_PROOFS, id, &payload)
            .await
            .unwrap();
    }
    // A block 5 number on another queue is not a proof.
    publish(&bus, queues::BLOCKS, "block-5", b"5")
        .await
        .unwrap();
    // Block 6's stored proof loses its chunks but keeps its metadata: a
    // lookup that downloaded it would stall and fail.
    let (js, stream) = raw(&server).await;
    let other = reference_of(&raw_message(&stream, 2).await);
    let info = js
        .get_object_store(BUCKET)
        .await
        .unwrap()
        .info(&other.name)
        .await
        .unwrap();
    js.get_stream(format!("OBJ_{BUCKET}"))
        .await
        .unwrap()
        .purge()
        .filter(format!("$O.{BUCKET}.C.{}", info.nuid))
        .await
        .unwrap();

    let found = bus
        .block_proofs(queues::BLOCK_PROOFS, 5)
        .await
        .expect("lookup");
    let expected = vec![
        StoredProof {
            prover: Some("zisk".into()),
            payload: inline_5,
        },
        StoredProof {
            prover: Some("sp1".into()),
            payload: stored_5,
        },
    ];
    assert!(
        found == expected,
        "found {:?}",
        found
            .iter()
            .map(|p| (&p.prover, p.payload.len()))
            .collect::<Vec<_>>()
    );
    assert!(
        bus.block_proofs(queues::BLOCK_PROOFS, 7)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_same_id_published_twice_is_stored_once() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    let payload = proof(11, "sp1", 3 * MIB);
    for _ in 0..2 {
        publish(&bus, queues::BLOCK_PROOFS, "sp1:block-11", &payload)
            .await
            .unwrap();
    }
    let (js, stream) = raw(&server).await;
    assert_eq!(count_on(&stream, queues::BLOCK_PROOFS).await, 1);
    let mut objects = js
        .get_object_store(BUCKET)
        .await
        .unwrap()
        .list()
        .await
        .unwrap();
    let mut names = Vec::new();
    while let Some(object) = futures_util::StreamExt::next(&mut objects).await {
        names.push(object.unwrap().name);
    }
    assert_eq!(
        names,
        ["block_proofs/sp1:block-11"],
        "one object, overwritten"
    );
    let delivery = next(&mut source(&bus, "matcher", queues::BLOCK_PROOFS).await).await;
    assert!(delivery.payload == payload);
}

/// The role tests' [`Tap`] reads a stored proof as the proof itself.
#[test]
fn the_test_tap_reads_stored_payloads_back() {
    let server = NatsServer::start();
    let payload = proof(12, "sp1", 3 * MIB);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let published = runtime.block_on(async {
        let bus = bus(&server).await;
        publish(&bus, queues::COMPLETED_PROOFS, "completed-12-sp1", &payload).await
    });
    published.unwrap();
    let mut tap = Tap::open(
        &server.url(),
        queues::COMPLETED_PROOFS,
        Duration::from_secs(10),
    )
    .expect("open tap");
    tap.wait_until(DELIVERY_TIMEOUT, "the stored proof", |records| {
        !records.is_empty()
    })
    .unwrap();
    let record = &tap.records[0];
    assert_eq!(record.msg_id.as_deref(), Some("completed-12-sp1"));
    assert_eq!(
        record.object.as_deref(),
        Some("completed_proofs/completed-12-sp1")
    );
    assert!(
        record.payload == payload,
        "the tap shows the reference, not the proof"
    );
    assert_eq!(record.json()["block"], 12);
}

#[tokio::test]
async fn the_payload_bucket_is_created_once_with_the_retention() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    bus.ensure_payload_bucket().await.expect("created");
    bus.ensure_payload_bucket().await.expect("idempotent");
    let (js, _) = raw(&server).await;
    let config = |js: jetstream::Context| async move {
        let mut stream = js.get_stream(format!("OBJ_{BUCKET}")).await.unwrap();
        stream.info().await.unwrap().config.clone()
    };
    let created = config(js.clone()).await;
    assert_eq!(created.max_age, PayloadConfig::default().retention);
    assert_eq!(created.storage, jetstream::stream::StorageType::File);

    let day = Duration::from_secs(24 * 3600);
    let bus = bus.with_payloads(PayloadConfig {
        retention: day,
        ..PayloadConfig::default()
    });
    bus.ensure_payload_bucket()
        .await
        .expect("retention changed");
    assert_eq!(config(js).await.max_age, day);
}

//! Payloads larger than a NATS message, against a real nats-server: the
//! publisher stores them in the object store and sends a reference, the
//! source hands actors the original bytes, small messages stay exactly as
//! the original template's consumers read them, and limits and lost objects
//! are refused or dead-lettered with a reason.

mod nats_support;
mod support;

use std::time::Instant;

use nats_support::NatsServer;
use nats_support::edge::source;
use nats_support::payloads::*;
use orchestrator_actors::edges::EdgeError;
use orchestrator_actors::edges::nats::{PAYLOAD_OBJECT_HEADER, PayloadConfig};
use orchestrator_actors::messages::{DeadLetter, Envelope, queues};

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

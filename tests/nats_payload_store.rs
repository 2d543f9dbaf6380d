//! Stored payloads beyond the first delivery, against a real nats-server:
//! dead letters of large jobs, the proof lookup behind `proof get`, dedupe of
//! references, the test tap, and the payload bucket's retention.

mod nats_support;
mod support;

use std::time::Duration;

use async_nats::jetstream;
use nats_support::edge::source;
use nats_support::payloads::*;
use nats_support::{NatsServer, Tap};
use orchestrator_actors::edges::nats::{PayloadConfig, PayloadRef, StoredProof};
use orchestrator_actors::messages::{DeadLetter, queues};

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

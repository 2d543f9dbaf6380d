//! The NATS JetStream edge against a real nats-server: publishes deduplicate
//! by id, naks redeliver with the attempt counted, rejects dead-letter and
//! terminate, the key-value match store round-trips, and the last block of a
//! queue is readable for a restarted watcher, and a consumer that keeps up
//! sends one pull request per message.

mod nats_support;
mod support;

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::AckPolicy;
use futures_util::TryStreamExt;
use nats_support::NatsServer;
use nats_support::edge::{consumer_info, source, source_with_ack_wait};
use orchestrator_actors::edges::match_store::{BlockRecord, MatchStore};
use orchestrator_actors::edges::nats::{NatsBus, NatsSource, Topology};
use orchestrator_actors::edges::{Delivery, JobSource, Publisher};
use orchestrator_actors::messages::{DeadLetter, Envelope, meta, queues};

async fn bus(server: &NatsServer) -> NatsBus {
    nats_support::edge::bus(server, "edge-test").await
}

async fn next(source: &mut NatsSource) -> Option<Delivery> {
    tokio::time::timeout(Duration::from_secs(3), source.next())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn publishes_with_one_id_are_stored_once() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    let publisher = bus.publisher();
    for _ in 0..3 {
        publisher
            .publish(queues::BLOCKS, Envelope::block(42))
            .await
            .unwrap();
    }
    publisher
        .publish("modularorchestrator.blocks", Envelope::block(43))
        .await
        .unwrap();
    let mut blocks = source(&bus, "reader", queues::BLOCKS).await;
    let first = next(&mut blocks).await.expect("block 42");
    assert_eq!(
        (
            first.queue.as_str(),
            first.id.as_str(),
            first.payload.as_slice()
        ),
        ("blocks", "block-42", b"42".as_slice())
    );
    first.ack.ack().await.unwrap();
    assert_eq!(next(&mut blocks).await.expect("block 43").id, "block-43");
    assert!(
        next(&mut blocks).await.is_none(),
        "a duplicate id was stored twice"
    );
    assert_eq!(
        bus.last_payload(queues::BLOCKS).await.unwrap(),
        Some(b"43".to_vec())
    );
    assert_eq!(bus.last_payload(queues::STEPS).await.unwrap(), None);
}

#[tokio::test]
async fn nak_counts_an_attempt_and_reject_dead_letters_then_terminates() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    bus.publisher()
        .publish(queues::BLOCKS, Envelope::block(7))
        .await
        .unwrap();
    // A short ack wait, so the test can wait past it: a message the server
    // still considers unsettled would be delivered again by then.
    let ack_wait = Duration::from_secs(2);
    let mut blocks = source_with_ack_wait(&bus, "prover", queues::BLOCKS, ack_wait).await;
    let mut dead = source(&bus, "dead-reader", queues::DEAD_LETTER).await;

    let first = next(&mut blocks).await.expect("first delivery");
    assert_eq!(first.attempt, 1);
    first.ack.in_progress().await.unwrap();
    first.ack.nak(Duration::from_millis(100)).await.unwrap();
    let second = next(&mut blocks).await.expect("redelivery after nak");
    assert_eq!((second.id.as_str(), second.attempt), ("block-7", 2));
    second
        .ack
        .reject("prover exited with code 1")
        .await
        .unwrap();

    let letter = next(&mut dead).await.expect("dead letter");
    let letter: DeadLetter = serde_json::from_slice(&letter.payload).unwrap();
    assert_eq!(
        (
            letter.queue.as_str(),
            letter.payload.as_str(),
            letter.attempts
        ),
        ("blocks", "7", 2)
    );
    assert_eq!(letter.error, "prover exited with code 1");

    // The server settles the terminated message: nothing pending, nothing
    // waiting for an ack (the deadline is a deadlock guard).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = consumer_info(&server, "prover").await;
        if (info.num_pending, info.num_ack_pending) == (0, 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rejected message was never settled: {} pending, {} awaiting an ack",
            info.num_pending,
            info.num_ack_pending
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the ack wait an unsettled message would be back; a terminated
    // one never is.
    let redelivered = tokio::time::timeout(ack_wait * 3, blocks.next()).await;
    assert!(
        redelivered.is_err(),
        "a terminated message came back: {:?}",
        redelivered.ok().flatten().map(|d| (d.id, d.attempt))
    );
    let info = consumer_info(&server, "prover").await;
    assert_eq!(
        (
            info.delivered.consumer_sequence,
            info.num_ack_pending,
            info.num_redelivered
        ),
        (2, 0, 0),
        "the consumer delivered exactly twice (first try and the nak's redelivery) and holds nothing"
    );
}

#[tokio::test]
async fn match_store_keeps_records_per_prefix_and_refuses_stale_writes() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    let store = bus.match_store("test_matcher", "matcher-a").await.unwrap();
    let other = bus.match_store("test_matcher", "matcher-b").await.unwrap();
    let (empty, revision) = store.load(9).await.unwrap();
    assert_eq!((empty, revision), (BlockRecord::default(), 0));
    let record = BlockRecord {
        announced_ms: Some(1),
        hash: Some("0xab".into()),
        provers: ["sp1".to_owned()].into(),
        early: vec![],
    };
    store.save(9, &record, 0).await.unwrap();
    let (loaded, revision) = store.load(9).await.unwrap();
    assert_eq!(loaded, record);
    assert!(
        store.save(9, &record, 0).await.is_err(),
        "a second create of the same block must fail"
    );
    store.save(9, &record, revision).await.unwrap();
    assert!(
        store.save(9, &record, revision).await.is_err(),
        "a write from a stale read must fail"
    );
    assert_eq!(
        other.load(9).await.unwrap().1,
        0,
        "matchers with other names share no state"
    );
}

#[tokio::test]
async fn metadata_travels_in_headers_beside_an_untouched_payload() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    let envelope = Envelope::new("p-1", r#"{"block":1,"proof":"0x","prover":"p"}"#)
        .with_meta(meta::PROVING_MS, 1234);
    bus.publisher()
        .publish(queues::BLOCK_PROOFS, envelope.clone())
        .await
        .unwrap();
    let mut proofs = source(&bus, "reader", queues::BLOCK_PROOFS).await;
    let delivery = next(&mut proofs).await.expect("the proof");
    assert_eq!(delivery.payload, envelope.payload, "payload byte for byte");
    assert_eq!(delivery.meta, envelope.meta);
}

#[tokio::test]
async fn a_follower_sees_what_comes_after_it_on_its_queues_in_order_without_acks() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    let publisher = bus.publisher();
    publisher
        .publish(queues::BLOCKS, Envelope::block(1))
        .await
        .unwrap();
    let queues_followed = [
        queues::BLOCKS.to_owned(),
        queues::COMPLETED_PROOFS.to_owned(),
    ];
    let mut follower = bus.follower(&queues_followed).await.unwrap();
    for block in 2..=201 {
        publisher
            .publish(queues::BLOCKS, Envelope::block(block))
            .await
            .unwrap();
        publisher
            .publish(queues::STEPS, Envelope::new(format!("s-{block}"), "{}"))
            .await
            .unwrap();
    }
    publisher
        .publish(queues::COMPLETED_PROOFS, Envelope::new("done-2", "{}"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 201 {
        let batch = tokio::time::timeout(Duration::from_secs(5), follower.next_up_to(64))
            .await
            .unwrap_or_else(|_| panic!("only {} messages followed: {seen:?}", seen.len()));
        for delivery in batch {
            delivery.ack.ack().await.unwrap();
            seen.push(delivery.id);
        }
    }
    let expected: Vec<String> = (2..=201)
        .map(|b| format!("block-{b}"))
        .chain(["done-2".to_owned()])
        .collect();
    assert_eq!(seen, expected, "the earlier block, or a step, was followed");
    let client = async_nats::connect(server.url()).await.expect("raw client");
    let stream = async_nats::jetstream::new(client)
        .get_stream(Topology::default().stream)
        .await
        .expect("the stream exists");
    let consumers: Vec<_> = stream.consumers().try_collect().await.unwrap();
    assert!(!consumers.is_empty(), "no consumer follows");
    assert!(
        consumers
            .iter()
            .all(|c| c.config.durable_name.is_none() && c.config.ack_policy == AckPolicy::None),
        "following left a durable or acked consumer: {consumers:?}"
    );
}

/// Messages the client connection named `name` has sent to `server`.
fn messages_sent_by(server: &NatsServer, name: &str) -> u64 {
    let connz = nats_support::server::http_json(server.http_port(), "/connz?limit=100")
        .expect("connz of the test server");
    connz["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .and_then(|c| c["in_msgs"].as_u64())
        .unwrap_or_else(|| panic!("no connection named {name}: {connz}"))
}

#[tokio::test]
async fn a_consumer_that_keeps_up_sends_one_pull_request_per_message() {
    const MESSAGES: u64 = 10;
    let server = NatsServer::start();
    let publisher = bus(&server).await.publisher();
    let reader = nats_support::edge::bus(&server, "edge-reader").await;
    let mut blocks = source(&reader, "keeps-up", queues::BLOCKS).await;
    let (acked, mut acks) = tokio::sync::mpsc::channel(1);
    let before = messages_sent_by(&server, "edge-reader");
    let reading = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            let delivery = blocks.next().await.expect("a block");
            delivery.ack.ack().await.unwrap();
            acked.send(()).await.unwrap();
        }
    });
    for block in 0..MESSAGES {
        // Published only once the reader waits for it: it keeps up.
        let deadline = Instant::now() + Duration::from_secs(10);
        while consumer_info(&server, "keeps-up").await.num_waiting == 0 {
            assert!(Instant::now() < deadline, "the reader never waited");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        publisher
            .publish(queues::BLOCKS, Envelope::block(block))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), acks.recv())
            .await
            .expect("block read and acked");
    }
    reading.await.unwrap();
    // Per message one waiting pull request and one ack; the first pull
    // also asks once for what is there. Asking "anything now?" before
    // every wait would make it three per message.
    let sent = messages_sent_by(&server, "edge-reader") - before;
    assert!(
        sent <= 2 * MESSAGES + 1,
        "{sent} messages sent to the server for {MESSAGES} messages read"
    );
}

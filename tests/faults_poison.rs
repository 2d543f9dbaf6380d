//! A poison message on `modularorchestrator.blocks`: 600 KB that are not a
//! block number, published straight to NATS. The proof-matcher role, a
//! process of the real binary on a real nats-server, dead-letters it once
//! (through the object store: the letter is larger than the inline limit)
//! and terminates it, so it never comes back after the ack wait; its dead
//! letter holds the payload once and a bounded reason, and its log stays
//! small.

mod nats_support;
mod support;

use std::time::Duration;

use async_nats::HeaderMap;
use nats_support::layout::proof_matcher;
use nats_support::{Cluster, FLOW_TIMEOUT, edge, harness_runtime};
use orchestrator_actors::messages::DeadLetter;

/// The matcher's derived durable consumer name.
const MATCHER_CONSUMER: &str = "proof-matcher-block_proofs-blocks-completed_proofs";
/// Short, so a message that was not terminated is seen again in the test.
const ACK_WAIT: &str = "2s";
/// The most a reason may hold, whatever the payload's size.
const REASON_BOUND: usize = 2048;
/// The most the matcher may log for both poison messages (it logs one
/// bounded line for each): far below one copy of a payload.
const LOG_BOUND: usize = 64 * 1024;

/// Publishes `payload` to `modularorchestrator.blocks` with message id `id`.
fn publish_raw(cluster: &Cluster, id: &str, payload: Vec<u8>) {
    harness_runtime().block_on(async {
        let client = async_nats::connect(cluster.nats.url())
            .await
            .expect("raw client");
        let js = async_nats::jetstream::new(client);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        js.publish_with_headers("modularorchestrator.blocks", headers, payload.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    });
}

#[test]
fn a_large_poison_block_is_dead_lettered_once_and_terminated() {
    let cluster = Cluster::start("faults-poison");
    cluster.init();
    let matcher = cluster.spawn(&proof_matcher().env([
        ("ORCHESTRATOR_ACK_WAIT", ACK_WAIT),
        ("ORCHESTRATOR_PROGRESS_INTERVAL", "1s"),
    ]));
    let text = "x".repeat(600 * 1024);
    let poison = [
        // Not JSON at all.
        ("poison-text", text.clone().into_bytes()),
        // JSON, but a string: serde's error quotes it whole.
        ("poison-string", format!("\"{text}\"").into_bytes()),
    ];
    for (id, payload) in &poison {
        publish_raw(&cluster, id, payload.clone());
    }

    let mut dead = cluster.tap("dead_letter");
    cluster.check(dead.wait_until(FLOW_TIMEOUT, "two dead letters", |r| r.len() >= 2));
    // Well past the ack wait: a message not terminated would be delivered,
    // and dead-lettered, again.
    cluster.check(dead.read_for(Duration::from_secs(8)));
    if dead.records.len() != 2 {
        cluster.fail(&format!(
            "expected one dead letter per poison message, got {}: {:?}",
            dead.records.len(),
            dead.records.iter().map(|r| &r.msg_id).collect::<Vec<_>>()
        ));
    }
    for ((id, payload), record) in poison.iter().zip(&dead.records) {
        let letter: DeadLetter = cluster.check(
            serde_json::from_slice(&record.payload).map_err(|e| format!("a dead letter: {e}")),
        );
        assert_eq!(letter.id, *id);
        assert_eq!(letter.queue, "blocks");
        assert_eq!(
            letter.attempts, 1,
            "{id}: dead-lettered on its first delivery"
        );
        assert!(
            letter.payload.as_bytes() == payload.as_slice(),
            "{id}: the dead letter holds the payload byte for byte"
        );
        assert!(
            letter.error.len() <= REASON_BOUND && letter.error.starts_with("not a block number"),
            "{id}: a reason of {} bytes: {}",
            letter.error.len(),
            &letter.error[..letter.error.len().min(300)]
        );
        assert!(
            record.object.is_some(),
            "{id}: a letter over the inline limit travels through the object store"
        );
    }

    let info = harness_runtime().block_on(edge::consumer_info(&cluster.nats, MATCHER_CONSUMER));
    assert_eq!(
        (info.num_pending, info.num_ack_pending, info.num_redelivered),
        (0, 0, 0),
        "both messages settled for good on their first delivery: {info:?}"
    );

    let lines = matcher.log_lines();
    let dead_lettered = lines
        .iter()
        .filter(|l| l.contains("malformed message dead-lettered"))
        .count();
    if dead_lettered != 2 {
        cluster.fail(&format!(
            "expected 2 `malformed message dead-lettered` lines, got {dead_lettered}"
        ));
    }
    let logged: usize = lines.iter().map(String::len).sum();
    if logged > LOG_BOUND {
        cluster.fail(&format!(
            "the matcher logged {logged} bytes for two poison messages"
        ));
    }
}

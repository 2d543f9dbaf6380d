//! ProofMatcher and StepCollector at the actor level, through the local bus.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Actor;
use async_trait::async_trait;
use common::{assert_quiet, next_within};
use std::collections::BTreeSet;

use orchestrator_actors::actors::{ProofMatcher, StepCollector, pump};
use orchestrator_actors::edges::local::{LocalBus, LocalSource, MemoryMatchStore};
use orchestrator_actors::edges::match_store::BlockRecord;
use orchestrator_actors::edges::{EdgeError, Publisher};
use orchestrator_actors::messages::{BlockProof, CompletedProof, DeadLetter, Envelope, queues};
use orchestrator_actors::shutdown::Shutdown;
use serde_json::{Value, json};

fn proof(block: u64, prover: &str) -> BlockProof {
    serde_json::from_value(json!({"block": block, "proof": "0xff", "prover": prover})).unwrap()
}

/// A matcher fed from the bus; returns the bus, completed proofs, dead
/// letters and what the matcher published.
fn matcher() -> (LocalBus, LocalSource, LocalSource, Arc<Recorder>) {
    let bus = LocalBus::new();
    let completed = bus.subscribe(&[queues::COMPLETED_PROOFS]);
    let dead = bus.subscribe(&[queues::DEAD_LETTER]);
    let sent = start_matcher(&bus, Arc::new(MemoryMatchStore::default()));
    (bus, completed, dead, sent)
}

fn start_matcher(bus: &LocalBus, store: Arc<MemoryMatchStore>) -> Arc<Recorder> {
    let input = bus.subscribe(&[queues::BLOCKS, queues::BLOCK_PROOFS]);
    let sent = Recorder::of(bus, queues::COMPLETED_PROOFS);
    let addr = ProofMatcher::new(store, sent.clone(), vec![]).start();
    pump(Box::new(input), addr.recipient(), &Shutdown::new());
    sent
}

async fn send(bus: &LocalBus, queue: &str, id: &str, payload: Value) {
    bus.publish(queue, Envelope::new(id, payload.to_string()))
        .await
        .unwrap();
}

#[test]
fn record_pairs_early_proofs_and_tracks_expected_provers() {
    let expected: BTreeSet<String> = ["sp1".to_owned(), "zisk".to_owned()].into();
    let mut record = BlockRecord::default();
    assert!(
        record.on_proof(proof(10, "sp1"), 1_000).is_none(),
        "no block yet"
    );
    assert!(record.on_proof(proof(10, "sp1"), 1_000).is_none());
    let released = record.on_block(10, 1_500, None);
    assert_eq!(released.len(), 1, "early proof released once: {released:?}");
    assert!(!record.fully_proved(&expected));
    assert!(
        record.on_proof(proof(10, "sp1"), 2_000).is_none(),
        "duplicate after match"
    );
    assert_eq!(
        record
            .on_proof(proof(10, "zisk"), 2_000)
            .unwrap()
            .latency_ms,
        500
    );
    assert!(record.fully_proved(&expected));
    assert!(
        record.on_block(10, 3_000, None).is_empty(),
        "re-announced block releases nothing"
    );
}

fn proof_of(block: u64, prover: &str, hash: &str) -> BlockProof {
    BlockProof {
        block_hash: Some(hash.to_owned()),
        ..proof(block, prover)
    }
}

#[test]
fn a_reorg_marks_the_replaced_blocks_proofs_orphaned_and_starts_over() {
    let mut record = BlockRecord::default();
    // A proof of the new block arrives before the reorg's announcement.
    assert!(record.on_block(7, 1_000, Some("0xaa".into())).is_empty());
    let first = record.on_proof(proof_of(7, "sp1", "0xaa"), 1_100).unwrap();
    assert!(!first.orphaned);
    assert_eq!(first.id(), "completed-7-sp1-aa");

    // The same hash announced again (a watcher restart) changes nothing.
    assert!(record.on_block(7, 1_200, Some("0xaa".into())).is_empty());

    let notices = record.on_block(7, 2_000, Some("0xbb".into()));
    assert_eq!(notices.len(), 1, "{notices:?}");
    let notice = &notices[0];
    assert!(notice.orphaned && notice.block == 7 && notice.prover == "sp1");
    assert_eq!(notice.block_hash.as_deref(), Some("0xaa"));
    assert_eq!(notice.id(), "completed-7-sp1-aa-orphaned");

    // A late proof of the replaced block counts for nothing.
    let late = record.on_proof(proof_of(7, "zisk", "0xaa"), 2_100).unwrap();
    assert!(late.orphaned);
    assert!(!record.fully_proved(&BTreeSet::new()));
    // The new block's proofs are matched anew, sp1's included.
    let again = record.on_proof(proof_of(7, "sp1", "0xbb"), 2_500).unwrap();
    assert!(!again.orphaned);
    assert_eq!(again.latency_ms, 500);
    assert_ne!(again.id(), first.id(), "deduplicated as the old proof");
    assert!(record.fully_proved(&BTreeSet::new()));
}

#[actix_rt::test]
async fn matcher_state_survives_a_restart() {
    let store = Arc::new(MemoryMatchStore::default());
    let before = LocalBus::new();
    let mut completed = before.subscribe(&[queues::COMPLETED_PROOFS]);
    start_matcher(&before, store.clone());
    before
        .publish(queues::BLOCKS, Envelope::block(3))
        .await
        .unwrap();
    send(
        &before,
        queues::BLOCK_PROOFS,
        "p1",
        json!({"block": 3, "proof": "0x1", "prover": "sp1"}),
    )
    .await;
    next_within(&mut completed, 5).await;

    // A new matcher on a new bus, sharing only the store: a restarted process.
    let after = LocalBus::new();
    let mut completed = after.subscribe(&[queues::COMPLETED_PROOFS]);
    start_matcher(&after, store);
    send(
        &after,
        queues::BLOCK_PROOFS,
        "p1",
        json!({"block": 3, "proof": "0x1", "prover": "sp1"}),
    )
    .await;
    send(
        &after,
        queues::BLOCK_PROOFS,
        "p2",
        json!({"block": 3, "proof": "0x2", "prover": "zisk"}),
    )
    .await;
    let done: CompletedProof =
        serde_json::from_slice(&next_within(&mut completed, 5).await.payload).unwrap();
    assert_eq!(
        done.prover, "zisk",
        "the block is still known and sp1 is not matched twice"
    );
    assert_quiet(&mut completed).await;
}

#[actix_rt::test]
async fn matcher_pairs_proofs_that_arrive_before_their_block() {
    let (bus, mut completed, _dead, sent) = matcher();
    send(
        &bus,
        queues::BLOCK_PROOFS,
        "p-5",
        json!({"block": 5, "proof": "0xaa", "prover": "sp1", "cycles": 7}),
    )
    .await;
    send(
        &bus,
        queues::BLOCK_PROOFS,
        "p-6",
        json!({"block": 6, "proof": "0xbb", "prover": "sp1"}),
    )
    .await;
    assert_quiet(&mut completed).await;
    bus.publish(queues::BLOCKS, Envelope::block(5))
        .await
        .unwrap();
    let done: CompletedProof =
        serde_json::from_slice(&next_within(&mut completed, 5).await.payload).unwrap();
    assert_eq!(
        (done.block, done.prover.as_str(), done.proof.clone()),
        (5, "sp1", json!("0xaa"))
    );
    assert_eq!(
        done.extra["cycles"], 7,
        "the prover's extra fields are passed on"
    );
    assert_quiet(&mut completed).await;
    assert_eq!(sent.ids(), ["completed-5-sp1"]);
}

#[actix_rt::test]
async fn matcher_emits_each_block_and_prover_once() {
    let (bus, mut completed, _dead, sent) = matcher();
    bus.publish(queues::BLOCKS, Envelope::block(7))
        .await
        .unwrap();
    for (id, prover) in [("a", "sp1"), ("b", "risc0"), ("c", "sp1")] {
        send(
            &bus,
            queues::BLOCK_PROOFS,
            id,
            json!({"block": 7, "proof": "0x1", "prover": prover}),
        )
        .await;
    }
    let mut provers = Vec::new();
    for _ in 0..2 {
        let done: CompletedProof =
            serde_json::from_slice(&next_within(&mut completed, 5).await.payload).unwrap();
        provers.push(done.prover);
    }
    assert_eq!(provers, ["sp1", "risc0"]);
    assert_quiet(&mut completed).await;
    // The bus drops a repeated id: only what was sent shows a second sp1.
    assert_eq!(sent.ids(), ["completed-7-sp1", "completed-7-risc0"]);
}

#[actix_rt::test]
async fn matcher_dead_letters_malformed_messages_and_goes_on() {
    let (bus, mut completed, mut dead, _) = matcher();
    send(&bus, queues::BLOCK_PROOFS, "bad", json!({"proof": "0x1"})).await;
    bus.publish(queues::BLOCKS, Envelope::new("bad-block", "\"soon\""))
        .await
        .unwrap();
    for _ in 0..2 {
        let letter: DeadLetter =
            serde_json::from_slice(&next_within(&mut dead, 5).await.payload).unwrap();
        assert!(letter.error.starts_with("not a block"), "{}", letter.error);
    }
    bus.publish(queues::BLOCKS, Envelope::block(1))
        .await
        .unwrap();
    send(
        &bus,
        queues::BLOCK_PROOFS,
        "good",
        json!({"block": 1, "proof": "0x1", "prover": "p"}),
    )
    .await;
    next_within(&mut completed, 5).await;
}

fn step(group: u64, task: &str) -> Value {
    json!({"data": {"block": group, "proof": "0xff", "prover": "p"}, "task_id": task, "group_id": group})
}

/// An actor's publisher: passes every publish on to the bus and keeps the
/// id of each message it publishes to one queue, repeats included. The bus,
/// like JetStream, drops a repeated id, so reading the bus alone would hide
/// a proof matched or a group collected twice.
struct Recorder {
    bus: LocalBus,
    queue: &'static str,
    ids: Mutex<Vec<String>>,
}

impl Recorder {
    /// A recorder of what is published to `queue` on `bus`.
    fn of(bus: &LocalBus, queue: &'static str) -> Arc<Recorder> {
        Arc::new(Recorder {
            bus: bus.clone(),
            queue,
            ids: Mutex::default(),
        })
    }

    /// The ids published to the queue so far, in order.
    fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }
}

#[async_trait]
impl Publisher for Recorder {
    async fn publish(&self, queue: &str, message: Envelope) -> Result<(), EdgeError> {
        if queue == self.queue {
            self.ids.lock().unwrap().push(message.id.clone());
        }
        self.bus.publish(queue, message).await
    }
}

/// A step collector for groups of `n`; returns the bus, groups, dead letters
/// and what the collector published.
fn collector(n: usize) -> (LocalBus, LocalSource, LocalSource, Arc<Recorder>) {
    collector_timeout(n, Duration::from_secs(3600))
}

/// The same, giving up groups still incomplete after `timeout`.
fn collector_timeout(
    n: usize,
    timeout: Duration,
) -> (LocalBus, LocalSource, LocalSource, Arc<Recorder>) {
    let bus = LocalBus::new();
    let input = bus.subscribe(&[queues::STEP_PROOFS]);
    let groups = bus.subscribe(&[queues::COLLECTED_STEP_PROOFS]);
    let dead = bus.subscribe(&[queues::DEAD_LETTER]);
    let recorder = Recorder::of(&bus, queues::COLLECTED_STEP_PROOFS);
    let addr = StepCollector::new(n, recorder.clone())
        .with_keepalive(Duration::from_millis(20))
        .with_group_timeout(timeout)
        .start();
    pump(Box::new(input), addr.recipient(), &Shutdown::new());
    (bus, groups, dead, recorder)
}

#[actix_rt::test]
async fn collector_groups_by_group_id_and_ignores_duplicates() {
    let (bus, mut groups, _dead, published) = collector(3);
    // Two groups interleaved, with a duplicate task in each.
    let sends = [
        (1, "s0"),
        (2, "s0"),
        (1, "s1"),
        (1, "s1"),
        (2, "s1"),
        (2, "s0"),
        (1, "s2"),
    ];
    for (n, (group, task)) in sends.iter().enumerate() {
        send(
            &bus,
            queues::STEP_PROOFS,
            &format!("m{n}"),
            step(*group, task),
        )
        .await;
    }
    let first = next_within(&mut groups, 5).await;
    assert_eq!(first.id, "group-1");
    let steps: Vec<Value> = serde_json::from_slice(&first.payload).unwrap();
    let tasks: Vec<&str> = steps
        .iter()
        .map(|s| s["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, ["s0", "s1", "s2"]);
    assert!(steps.iter().all(|s| s["group_id"] == 1));

    // Every step of group 1 again, as redeliveries would bring them: enough
    // for a collector that reopened the group to complete it a second time.
    for task in ["s0", "s1", "s2"] {
        send(
            &bus,
            queues::STEP_PROOFS,
            &format!("late-{task}"),
            step(1, task),
        )
        .await;
    }
    // Steps are handled in order, so a second group-1 would come first.
    send(&bus, queues::STEP_PROOFS, "m-last", step(2, "s2")).await;
    assert_eq!(next_within(&mut groups, 5).await.id, "group-2");
    assert_eq!(
        published.ids(),
        ["group-1", "group-2"],
        "a completed group was collected again"
    );
    assert_quiet(&mut groups).await;
}

#[actix_rt::test]
async fn collector_dead_letters_malformed_step_proofs() {
    let (bus, mut groups, mut dead, _) = collector(1);
    send(&bus, queues::STEP_PROOFS, "bad", json!({"task_id": "s0"})).await;
    let letter: DeadLetter =
        serde_json::from_slice(&next_within(&mut dead, 5).await.payload).unwrap();
    assert!(
        letter.error.contains("not a step proof"),
        "{}",
        letter.error
    );
    send(&bus, queues::STEP_PROOFS, "good", step(4, "s0")).await;
    assert_eq!(next_within(&mut groups, 5).await.id, "group-4");
}

#[actix_rt::test]
async fn collector_dead_letters_a_group_that_stays_incomplete() {
    let (bus, mut groups, mut dead, published) = collector_timeout(3, Duration::from_millis(200));
    send(&bus, queues::STEP_PROOFS, "a", step(8, "s0")).await;
    send(&bus, queues::STEP_PROOFS, "b", step(8, "s1")).await;
    for _ in 0..2 {
        let letter: DeadLetter =
            serde_json::from_slice(&next_within(&mut dead, 5).await.payload).unwrap();
        assert!(
            letter.error.contains("group 8 incomplete") && letter.error.contains("2 of 3"),
            "{}",
            letter.error
        );
    }
    // The missing step arriving late, and the given-up steps redelivered,
    // do not restart the group, although together they would complete it.
    for (id, task) in [("c", "s2"), ("a-again", "s0"), ("b-again", "s1")] {
        send(&bus, queues::STEP_PROOFS, id, step(8, task)).await;
    }
    // Steps are handled in order: a reopened group 8 would come before 9.
    for task in ["s0", "s1", "s2"] {
        send(
            &bus,
            queues::STEP_PROOFS,
            &format!("nine-{task}"),
            step(9, task),
        )
        .await;
    }
    assert_eq!(
        next_within(&mut groups, 5).await.id,
        "group-9",
        "a given-up group was collected after all"
    );
    assert_eq!(published.ids(), ["group-9"]);
    assert_quiet(&mut groups).await;
}

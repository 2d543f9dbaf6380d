//! The proof matcher handles messages of different blocks at the same time
//! and those of one block one after the other: many blocks, each with
//! proofs from several provers arriving before and after it, give every
//! block and prover exactly one completed proof, published once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Actor;
use async_trait::async_trait;
use orchestrator_actors::actors::{ProofMatcher, pump};
use orchestrator_actors::edges::local::{LocalBus, LocalSource, MemoryMatchStore};
use orchestrator_actors::edges::match_store::{BlockRecord, MatchStore};
use orchestrator_actors::edges::{AckHandle, Delivery, EdgeError, JobSource, Publisher};
use orchestrator_actors::messages::{Envelope, queues};
use orchestrator_actors::shutdown::Shutdown;

const BLOCKS: u64 = 12;
const PROVERS: [&str; 3] = ["sp1", "zisk", "risc0"];
/// Deadlock guard; never a speed expectation.
const DEADLINE: Duration = Duration::from_secs(30);

/// A store that takes a little while to read, like a key-value bucket over
/// the network, and notes how many applies run at once, per block and in
/// all (an apply runs from its load to its save).
#[derive(Default)]
struct WatchedStore {
    inner: MemoryMatchStore,
    running: Mutex<BTreeMap<u64, usize>>,
    max_per_block: AtomicUsize,
    max_overall: AtomicUsize,
}

#[async_trait]
impl MatchStore for WatchedStore {
    async fn load(&self, block: u64) -> Result<(BlockRecord, u64), EdgeError> {
        {
            let mut running = self.running.lock().unwrap();
            *running.entry(block).or_default() += 1;
            let per_block = *running.values().max().unwrap();
            let overall: usize = running.values().sum();
            self.max_per_block.fetch_max(per_block, Ordering::SeqCst);
            self.max_overall.fetch_max(overall, Ordering::SeqCst);
        }
        // Store latency: what lets applies of different blocks overlap.
        tokio::time::sleep(Duration::from_millis(3)).await;
        self.inner.load(block).await
    }

    async fn save(&self, block: u64, record: &BlockRecord, revision: u64) -> Result<(), EdgeError> {
        let saved = self.inner.save(block, record, revision).await;
        let mut running = self.running.lock().unwrap();
        let count = running.get_mut(&block).expect("saved after a load");
        *count -= 1;
        if *count == 0 {
            running.remove(&block);
        }
        saved
    }
}

/// Counts every publish to completed_proofs by id (repeats included, which
/// the bus would drop) and passes it on.
#[derive(Default)]
struct Published {
    bus: Option<LocalBus>,
    ids: Mutex<BTreeMap<String, usize>>,
}

#[async_trait]
impl Publisher for Published {
    async fn publish(&self, queue: &str, message: Envelope) -> Result<(), EdgeError> {
        if queue == queues::COMPLETED_PROOFS {
            *self
                .ids
                .lock()
                .unwrap()
                .entry(message.id.clone())
                .or_default() += 1;
        }
        self.bus.as_ref().unwrap().publish(queue, message).await
    }
}

/// The bus's source, counting the messages acknowledged for good.
struct Counted {
    inner: LocalSource,
    acked: Arc<AtomicUsize>,
}

struct CountedAck {
    inner: Box<dyn AckHandle>,
    acked: Arc<AtomicUsize>,
}

#[async_trait]
impl AckHandle for CountedAck {
    async fn ack(&self) -> Result<(), EdgeError> {
        self.acked.fetch_add(1, Ordering::SeqCst);
        self.inner.ack().await
    }
    async fn ack_unconfirmed(&self) -> Result<(), EdgeError> {
        self.acked.fetch_add(1, Ordering::SeqCst);
        self.inner.ack_unconfirmed().await
    }
    async fn nak(&self, delay: Duration) -> Result<(), EdgeError> {
        self.inner.nak(delay).await
    }
    async fn in_progress(&self) -> Result<(), EdgeError> {
        self.inner.in_progress().await
    }
    async fn reject(&self, reason: &str) -> Result<(), EdgeError> {
        self.inner.reject(reason).await
    }
}

#[async_trait]
impl JobSource for Counted {
    async fn next(&mut self) -> Option<Delivery> {
        let mut delivery = self.inner.next().await?;
        delivery.ack = Box::new(CountedAck {
            inner: delivery.ack,
            acked: self.acked.clone(),
        });
        Some(delivery)
    }
}

fn proof(block: u64, prover: &str) -> Envelope {
    let body = serde_json::json!({"block": block, "proof": "0x01", "prover": prover});
    Envelope::new(format!("{prover}:block-{block}"), body.to_string())
}

#[actix_rt::test]
async fn blocks_are_matched_concurrently_and_each_proof_is_published_once() {
    let bus = LocalBus::new();
    let acked = Arc::new(AtomicUsize::new(0));
    let input = Counted {
        inner: bus.subscribe(&[queues::BLOCKS, queues::BLOCK_PROOFS]),
        acked: acked.clone(),
    };
    let store = Arc::new(WatchedStore::default());
    let published = Arc::new(Published {
        bus: Some(bus.clone()),
        ..Default::default()
    });
    let matcher = ProofMatcher::new(store.clone(), published.clone(), vec![]).start();
    pump(Box::new(input), matcher.recipient(), &Shutdown::new());

    // Each block: two proofs before its announcement, one after, all sent
    // at once so that messages of one block are in the matcher together.
    for block in 0..BLOCKS {
        bus.publish(queues::BLOCK_PROOFS, proof(block, PROVERS[0]))
            .await
            .unwrap();
        bus.publish(queues::BLOCK_PROOFS, proof(block, PROVERS[1]))
            .await
            .unwrap();
        bus.publish(queues::BLOCKS, Envelope::block(block))
            .await
            .unwrap();
        bus.publish(queues::BLOCK_PROOFS, proof(block, PROVERS[2]))
            .await
            .unwrap();
    }

    // Every message acknowledged: nothing more can be published after that.
    let messages = BLOCKS as usize * (PROVERS.len() + 1);
    let deadline = Instant::now() + DEADLINE;
    while acked.load(Ordering::SeqCst) < messages {
        assert!(
            Instant::now() < deadline,
            "only {} of {messages} messages acknowledged after {DEADLINE:?}",
            acked.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let ids = published.ids.lock().unwrap().clone();
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "completed proofs published twice: {twice:?}"
    );
    let expected: BTreeSet<String> = (0..BLOCKS)
        .flat_map(|b| PROVERS.map(|p| format!("completed-{b}-{p}")))
        .collect();
    let got: BTreeSet<String> = ids.into_keys().collect();
    assert_eq!(
        expected.difference(&got).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "completed proofs never published"
    );
    assert_eq!(
        store.max_per_block.load(Ordering::SeqCst),
        1,
        "two messages of one block were applied at the same time"
    );
    assert!(
        store.max_overall.load(Ordering::SeqCst) >= 2,
        "messages of different blocks were never applied at the same time"
    );
}

//! The in-process bus that standalone mode wires the actors through.
//!
//! It behaves like the JetStream setup of role mode, so the actors cannot tell
//! the difference: named queues, consumer groups (each group gets every
//! message of its queues; members of one group would share them), ids that
//! deduplicate publishes, naks that redeliver after a delay, and rejects that
//! go to the dead-letter queue.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::match_store::{BlockRecord, MatchStore};
use super::{AckHandle, Delivery, EdgeError, JobSource, Publisher};
use crate::messages::{DeadLetter, Envelope, Meta, queues};

/// How many recent ids per queue are remembered for deduplication.
const DEDUPE_WINDOW: usize = 100_000;

/// A message waiting in a group's queue.
#[derive(Debug, Clone)]
struct Queued {
    queue: String,
    id: String,
    payload: Arc<[u8]>,
    meta: Arc<Meta>,
    attempt: u32,
}

/// The in-process bus. Cheap to clone; clones share the queues.
#[derive(Clone, Default)]
pub struct LocalBus {
    state: Arc<Mutex<BusState>>,
}

#[derive(Default)]
struct BusState {
    /// Queue name → the groups subscribed to it.
    subscribers: HashMap<String, Vec<mpsc::UnboundedSender<Queued>>>,
    /// Queue name → recently published ids.
    seen: HashMap<String, RecentIds>,
    /// Groups subscribed so far, to name each one.
    groups: usize,
}

#[derive(Default)]
struct RecentIds {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    /// Remembers `id`; false if it was already there.
    fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == DEDUPE_WINDOW
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

impl LocalBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new consumer group reading `queues`. It sees every message published
    /// to them from now on. Subscribe every consumer before starting the
    /// producers, as nothing is replayed.
    pub fn subscribe(&self, queues: &[&str]) -> LocalSource {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.state.lock().expect("bus lock");
        state.groups += 1;
        // Groups have no names of their own; the dead letters of two groups
        // reading one queue need distinct ids (see `DeadLetter::envelope`).
        let group = format!("local{}-{}", state.groups, queues.join("+"));
        for queue in queues {
            state
                .subscribers
                .entry((*queue).to_owned())
                .or_default()
                .push(tx.clone());
        }
        LocalSource {
            rx,
            tx,
            bus: self.clone(),
            group: group.into(),
        }
    }
}

#[async_trait]
impl Publisher for LocalBus {
    async fn publish(&self, queue: &str, message: Envelope) -> Result<(), EdgeError> {
        let mut state = self.state.lock().expect("bus lock");
        if !state
            .seen
            .entry(queue.to_owned())
            .or_default()
            .insert(&message.id)
        {
            tracing::debug!(queue, id = %message.id, "duplicate publish ignored");
            return Ok(());
        }
        let payload: Arc<[u8]> = message.payload.into();
        let meta = Arc::new(message.meta);
        for group in state.subscribers.get(queue).into_iter().flatten() {
            let queued = Queued {
                queue: queue.to_owned(),
                id: message.id.clone(),
                payload: payload.clone(),
                meta: meta.clone(),
                attempt: 1,
            };
            // A closed group has shut down; the others still get the message.
            let _ = group.send(queued);
        }
        Ok(())
    }
}

/// One consumer group's view of the bus.
pub struct LocalSource {
    rx: mpsc::UnboundedReceiver<Queued>,
    tx: mpsc::UnboundedSender<Queued>,
    bus: LocalBus,
    group: Arc<str>,
}

#[async_trait]
impl JobSource for LocalSource {
    async fn next(&mut self) -> Option<Delivery> {
        let queued = self.rx.recv().await?;
        Some(Delivery {
            queue: queued.queue.clone(),
            id: queued.id.clone(),
            payload: queued.payload.to_vec(),
            attempt: queued.attempt,
            meta: Meta::clone(&queued.meta),
            ack: Box::new(LocalAck {
                queued,
                redeliver: self.tx.clone(),
                bus: self.bus.clone(),
                group: self.group.clone(),
            }),
        })
    }
}

/// Settles a local delivery: a nak puts it back after the delay.
struct LocalAck {
    queued: Queued,
    redeliver: mpsc::UnboundedSender<Queued>,
    bus: LocalBus,
    group: Arc<str>,
}

#[async_trait]
impl AckHandle for LocalAck {
    async fn ack(&self) -> Result<(), EdgeError> {
        Ok(())
    }

    async fn nak(&self, delay: Duration) -> Result<(), EdgeError> {
        let mut again = self.queued.clone();
        again.attempt += 1;
        let redeliver = self.redeliver.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = redeliver.send(again);
        });
        Ok(())
    }

    async fn in_progress(&self) -> Result<(), EdgeError> {
        Ok(())
    }

    async fn reject(&self, reason: &str) -> Result<(), EdgeError> {
        let q = &self.queued;
        let letter =
            DeadLetter::envelope(&self.group, &q.queue, &q.id, q.attempt, reason, &q.payload);
        self.bus.publish(queues::DEAD_LETTER, letter).await
    }
}

/// Records an in-memory match store keeps before it forgets proved blocks.
const MATCH_WINDOW: usize = 50_000;

/// The matcher's state for standalone mode: in memory. Past
/// [`MATCH_WINDOW`] records the oldest *proved* blocks are forgotten; a block
/// still waiting for its proof is never dropped, however long a backfill is.
#[derive(Default)]
pub struct MemoryMatchStore {
    records: Mutex<std::collections::BTreeMap<u64, (BlockRecord, u64)>>,
}

#[async_trait]
impl MatchStore for MemoryMatchStore {
    async fn load(&self, block: u64) -> Result<(BlockRecord, u64), EdgeError> {
        let records = self.records.lock().expect("store lock");
        Ok(records.get(&block).cloned().unwrap_or_default())
    }

    async fn save(&self, block: u64, record: &BlockRecord, revision: u64) -> Result<(), EdgeError> {
        let mut records = self.records.lock().expect("store lock");
        let current = records.get(&block).map_or(0, |(_, r)| *r);
        if current != revision {
            return Err(EdgeError::Store {
                key: block.to_string(),
                reason: format!("changed since read (revision {current}, expected {revision})"),
            });
        }
        records.insert(block, (record.clone(), revision + 1));
        // Prune in batches, so a long run of unproved blocks costs one scan per batch.
        if records.len() > MATCH_WINDOW + MATCH_WINDOW / 10 {
            let excess = records.len() - MATCH_WINDOW;
            let proved: Vec<u64> = records
                .iter()
                .filter(|(_, (r, _))| !r.provers.is_empty())
                .map(|(b, _)| *b)
                .take(excess)
                .collect();
            for block in proved {
                records.remove(&block);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn groups_fan_out_and_ids_dedupe() {
        let bus = LocalBus::new();
        let mut a = bus.subscribe(&["blocks"]);
        let mut b = bus.subscribe(&["blocks", "block_proofs"]);
        bus.publish("blocks", Envelope::block(1)).await.unwrap();
        bus.publish("blocks", Envelope::block(1)).await.unwrap();
        bus.publish("block_proofs", Envelope::new("p1", "{}"))
            .await
            .unwrap();
        assert_eq!(a.next().await.unwrap().id, "block-1");
        assert_eq!(b.next().await.unwrap().id, "block-1");
        let proof = b.next().await.unwrap();
        assert_eq!(
            (proof.queue.as_str(), proof.id.as_str()),
            ("block_proofs", "p1")
        );
        assert!(a.rx.try_recv().is_err(), "duplicate id was delivered twice");
    }

    #[tokio::test]
    async fn nak_redelivers_with_next_attempt_and_reject_dead_letters() {
        let bus = LocalBus::new();
        let mut jobs = bus.subscribe(&["blocks"]);
        let mut dead = bus.subscribe(&[queues::DEAD_LETTER]);
        bus.publish("blocks", Envelope::block(5)).await.unwrap();
        let first = jobs.next().await.unwrap();
        first.ack.nak(Duration::from_millis(10)).await.unwrap();
        let second = jobs.next().await.unwrap();
        assert_eq!((second.id.as_str(), second.attempt), ("block-5", 2));
        second.ack.reject("exit 1").await.unwrap();
        let letter: DeadLetter =
            serde_json::from_slice(&dead.next().await.unwrap().payload).unwrap();
        assert_eq!(
            (
                letter.payload.as_str(),
                letter.attempts,
                letter.error.as_str()
            ),
            ("5", 2, "exit 1")
        );
    }

    #[tokio::test]
    async fn memory_store_refuses_stale_writes_and_keeps_unproved_blocks() {
        let store = MemoryMatchStore::default();
        let (record, revision) = store.load(1).await.unwrap();
        store.save(1, &record, revision).await.unwrap();
        assert!(
            store.save(1, &record, revision).await.is_err(),
            "stale write accepted"
        );

        let announced = BlockRecord {
            announced_ms: Some(1),
            ..BlockRecord::default()
        };
        let proved = BlockRecord {
            provers: ["p".to_owned()].into(),
            ..announced.clone()
        };
        for block in 10..10 + MATCH_WINDOW as u64 * 2 {
            let record = if block < 100 { &announced } else { &proved };
            store.save(block, record, 0).await.unwrap();
        }
        assert_eq!(
            store.load(10).await.unwrap().0,
            announced,
            "an unproved block was forgotten"
        );
        assert_eq!(
            store.load(100).await.unwrap().1,
            0,
            "the oldest proved blocks go first"
        );
        assert!(store.records.lock().unwrap().len() <= MATCH_WINDOW + MATCH_WINDOW / 10);
    }
}

//! The in-process bus that standalone mode wires the actors through.
//!
//! It behaves like the JetStream setup of role mode, so the actors cannot tell
//! the difference: named queues, consumer groups (each group gets every
//! message of its queues; members of one group would share them), ids that
//! deduplicate publishes, naks that redeliver after a delay, and rejects that
//! go to the dead-letter queue. One difference: JetStream keeps a backlog on
//! disk, this bus in the process's memory, so a group can bound its queue
//! ([`LocalBus::subscribe_bounded`]) and make the producer wait for it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::match_store::{BlockRecord, MatchStore};
use super::{AckHandle, Delivery, EdgeError, JobSource, Publisher};
use crate::messages::{DeadLetter, Envelope, Meta, queues};
use crate::recent::RecentSet;

/// How many recent ids per queue are remembered for deduplication.
///
/// In process a publish never fails, so a repeated id only comes from an
/// actor redoing a message it had half done: the matcher redelivered after
/// a failed save (1 s later), a job handed back at shutdown. Such a repeat
/// follows its original within seconds, a few thousand messages at the
/// ~1,000 blocks/s standalone reaches; JetStream's own window is 2 minutes.
/// A window of 100,000 ids cost ~10 MiB per busy queue for nothing.
const DEDUPE_WINDOW: usize = 4_096;

/// A message waiting in a group's queue.
#[derive(Debug, Clone)]
struct Queued {
    queue: String,
    id: String,
    payload: Arc<[u8]>,
    meta: Arc<Meta>,
    attempt: u32,
}

/// A message in a group's channel, with the room it takes in a bounded
/// queue (given back when the group takes it; redeliveries take none).
struct Slot {
    queued: Queued,
    _room: Option<OwnedSemaphorePermit>,
}

/// One group subscribed to one queue.
#[derive(Clone)]
struct Target {
    tx: mpsc::UnboundedSender<Slot>,
    /// Room left for this queue's messages in the group's channel; `None`:
    /// unbounded.
    room: Option<Arc<Semaphore>>,
}

/// The in-process bus. Cheap to clone; clones share the queues.
#[derive(Clone, Default)]
pub struct LocalBus {
    state: Arc<Mutex<BusState>>,
}

#[derive(Default)]
struct BusState {
    /// Queue name → the groups subscribed to it.
    subscribers: HashMap<String, Vec<Target>>,
    /// Queue name → recently published ids.
    seen: HashMap<String, RecentSet<Arc<str>>>,
    /// Groups subscribed so far, to name each one.
    groups: usize,
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
        self.subscribe_bounded(queues, &[], 0)
    }

    /// Like [`LocalBus::subscribe`], but at most `capacity` messages of the
    /// `bounded` queues wait for this group: a publish to one of them waits
    /// until the group has taken one. That is how a producer (the block
    /// watcher working off a backlog) keeps pace with a slow consumer (the
    /// prover pool) instead of queueing the whole backlog in memory.
    ///
    /// Bound only a queue whose producers are not the group's own: a pool
    /// that published into its own full queue would wait for itself (the
    /// multistep pool's `steps`). Redeliveries after a nak always get in.
    /// A group that is dropped no longer holds anyone up.
    pub fn subscribe_bounded(
        &self,
        queues: &[&str],
        bounded: &[&str],
        capacity: usize,
    ) -> LocalSource {
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(capacity.max(1)));
        let mut state = self.state.lock().expect("bus lock");
        state.groups += 1;
        // Groups have no names of their own; the dead letters of two groups
        // reading one queue need distinct ids (see `DeadLetter::envelope`).
        let group = format!("local{}-{}", state.groups, queues.join("+"));
        for queue in queues {
            let target = Target {
                tx: tx.clone(),
                room: bounded.contains(queue).then(|| room.clone()),
            };
            state
                .subscribers
                .entry((*queue).to_owned())
                .or_default()
                .push(target);
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
        // Room in the bounded groups is taken first, without the lock (a
        // std mutex is never held across an await), and before the id is
        // remembered: a publish dropped while it waits leaves no trace, so
        // its retry is not taken for a duplicate.
        let rooms: Vec<Arc<Semaphore>> = {
            let state = self.state.lock().expect("bus lock");
            if state
                .seen
                .get(queue)
                .is_some_and(|seen| seen.contains(message.id.as_str()))
            {
                tracing::debug!(queue, id = %message.id, "duplicate publish ignored");
                return Ok(());
            }
            state
                .subscribers
                .get(queue)
                .into_iter()
                .flatten()
                .filter(|target| !target.tx.is_closed())
                .filter_map(|target| target.room.clone())
                .collect()
        };
        let mut taken = Vec::with_capacity(rooms.len());
        for room in rooms {
            if let Ok(permit) = room.clone().acquire_owned().await {
                taken.push((room, permit));
            }
        }

        let mut state = self.state.lock().expect("bus lock");
        if !state
            .seen
            .entry(queue.to_owned())
            .or_insert_with(|| RecentSet::new(DEDUPE_WINDOW))
            .insert(message.id.as_str().into())
        {
            // Another publish of this id got in while this one waited.
            tracing::debug!(queue, id = %message.id, "duplicate publish ignored");
            return Ok(());
        }
        let payload: Arc<[u8]> = message.payload.into();
        let meta = Arc::new(message.meta);
        for target in state.subscribers.get(queue).into_iter().flatten() {
            let room = target.room.as_ref().and_then(|room| {
                let at = taken.iter().position(|(r, _)| Arc::ptr_eq(r, room))?;
                Some(taken.swap_remove(at).1)
            });
            let queued = Queued {
                queue: queue.to_owned(),
                id: message.id.clone(),
                payload: payload.clone(),
                meta: meta.clone(),
                attempt: 1,
            };
            // A closed group has shut down; the others still get the message.
            let _ = target.tx.send(Slot {
                queued,
                _room: room,
            });
        }
        Ok(())
    }
}

/// One consumer group's view of the bus.
pub struct LocalSource {
    rx: mpsc::UnboundedReceiver<Slot>,
    tx: mpsc::UnboundedSender<Slot>,
    bus: LocalBus,
    group: Arc<str>,
}

#[async_trait]
impl JobSource for LocalSource {
    async fn next(&mut self) -> Option<Delivery> {
        // Dropping the slot's room lets the next publish in.
        let Slot { queued, .. } = self.rx.recv().await?;
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
    redeliver: mpsc::UnboundedSender<Slot>,
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
            let _ = redeliver.send(Slot {
                queued: again,
                _room: None,
            });
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

/// Fully proved blocks an in-memory match store still remembers, newest
/// first; older ones are forgotten.
///
/// A proof that arrives for a block still remembered is matched as usual: a
/// second prover's (with no expected provers, one proof makes a block fully
/// proved), or a duplicate, which is dropped. Once the block is forgotten,
/// such a late proof finds no record and is kept as an early proof of a
/// block that is never announced again: nothing is printed or published
/// twice, it only costs that one record. In standalone mode every proof
/// comes from this process's own pool and follows its block closely, so
/// 1,024 blocks (a second or so of a backfill) is ample, and the store no
/// longer grows with the range.
const PROVED_KEPT: usize = 1_024;

/// The matcher's state for standalone mode: in memory. A block still
/// waiting for a proof is never dropped, however long a backfill is; a fully
/// proved block is forgotten once [`PROVED_KEPT`] newer blocks are fully
/// proved.
#[derive(Default)]
pub struct MemoryMatchStore {
    /// The provers a block needs to count as fully proved; empty: any one.
    expected: BTreeSet<String>,
    state: Mutex<StoreState>,
}

#[derive(Default)]
struct StoreState {
    /// Block → its record and revision.
    records: BTreeMap<u64, (BlockRecord, u64)>,
    /// Fully proved blocks, in the order they became so.
    proved: VecDeque<u64>,
}

impl MemoryMatchStore {
    /// A store for a matcher that expects proofs from `expected` provers
    /// (any one, if empty, as [`MemoryMatchStore::default`]): a block is
    /// only forgotten once all of them delivered.
    pub fn expecting(expected: impl IntoIterator<Item = String>) -> Self {
        Self {
            expected: expected.into_iter().collect(),
            state: Mutex::default(),
        }
    }

    /// How many blocks are remembered, for tests and benchmarks.
    pub fn len(&self) -> usize {
        self.state.lock().expect("store lock").records.len()
    }

    /// Whether no block is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl MatchStore for MemoryMatchStore {
    async fn load(&self, block: u64) -> Result<(BlockRecord, u64), EdgeError> {
        let state = self.state.lock().expect("store lock");
        Ok(state.records.get(&block).cloned().unwrap_or_default())
    }

    async fn save(&self, block: u64, record: &BlockRecord, revision: u64) -> Result<(), EdgeError> {
        let mut state = self.state.lock().expect("store lock");
        let current = state.records.get(&block).map_or(0, |(_, r)| *r);
        if current != revision {
            return Err(EdgeError::Store {
                key: block.to_string(),
                reason: format!("changed since read (revision {current}, expected {revision})"),
            });
        }
        let done = |r: &BlockRecord| r.fully_proved(&self.expected) && r.early.is_empty();
        let was_done = state
            .records
            .insert(block, (record.clone(), revision + 1))
            .is_some_and(|(old, _)| done(&old));
        if done(record) && !was_done {
            state.proved.push_back(block);
            while state.proved.len() > PROVED_KEPT {
                if let Some(old) = state.proved.pop_front() {
                    state.records.remove(&old);
                }
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
        let blocks = 10..10 + PROVED_KEPT as u64 * 3;
        for block in blocks.clone() {
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
        let newest = blocks.end - 1;
        assert_eq!(store.load(newest).await.unwrap(), (proved.clone(), 1));
        assert_eq!(store.len(), 90 + 1 + PROVED_KEPT, "{} kept", store.len());
    }

    #[tokio::test]
    async fn memory_store_keeps_a_block_until_every_expected_prover_delivered() {
        let store = MemoryMatchStore::expecting(["a".to_owned(), "b".to_owned()]);
        let half = BlockRecord {
            announced_ms: Some(1),
            provers: ["a".to_owned()].into(),
            ..BlockRecord::default()
        };
        store.save(1, &half, 0).await.unwrap();
        let full = BlockRecord {
            provers: ["a".to_owned(), "b".to_owned()].into(),
            ..half.clone()
        };
        for block in 2..2 + PROVED_KEPT as u64 * 2 {
            store.save(block, &full, 0).await.unwrap();
        }
        assert_eq!(
            store.load(1).await.unwrap(),
            (half, 1),
            "b's proof is still due"
        );
        assert_eq!(store.load(2).await.unwrap().1, 0, "forgotten once done");
        assert_eq!(store.len(), 1 + PROVED_KEPT);
    }
}

//! Pairs proofs with the blocks they prove and emits completed proofs.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{Semaphore, oneshot};

use super::Inbound;
use crate::edges::match_store::MatchStore;
use crate::edges::{Delivery, EdgeError, Publisher};
use crate::messages::{BlockProof, Envelope, meta, queues, unix_ms};
use crate::shutdown::Lifeline;

/// Consumes block announcements and block proofs, and publishes one
/// [`CompletedProof`] per block and prover to the completed-proofs queue.
///
/// Each message is handled to the end: load the block's record, publish
/// what it completes, save the record, ack. A failure on the way naks the
/// message, and the redelivery redoes it; publish ids make the repeated
/// publish harmless. Messages of different blocks are handled at the same
/// time (up to `IN_FLIGHT`), so the matcher's round trips to the store
/// and the queue overlap instead of adding up per message; those of one
/// block wait for each other, in the order they arrived, so a block's
/// record is never read while another of its messages may still write it
/// (that would end in a conflict and a redelivery, or, for a second matcher
/// process, is what the store's revision check is for).
///
/// [`CompletedProof`]: crate::messages::CompletedProof
pub struct ProofMatcher {
    store: Arc<dyn MatchStore>,
    publisher: Arc<dyn Publisher>,
    expected: Arc<BTreeSet<String>>,
    blocks_queue: String,
    output_queue: String,
    /// Dropped with the actor; see [`Lifeline`].
    lifeline: Option<Lifeline>,
    /// One permit per message being handled: bounds the messages (and their
    /// payloads) held at once.
    in_flight: Arc<Semaphore>,
    /// Each block with a message being handled: the last one's turn.
    lines: Arc<Mutex<HashMap<u64, Line>>>,
    /// Numbers the turns, so a finished one knows whether it is its
    /// block's last.
    turns: u64,
}

/// Messages handled at once, across blocks. A handful already hides the
/// round trips of a backlog; more would only hold more payloads (a real
/// proof can be megabytes) in memory.
const IN_FLIGHT: usize = 16;

/// The last turn taken in one block's line.
struct Line {
    turn: u64,
    /// Closed when that turn ends.
    done: oneshot::Receiver<()>,
}

/// One message's place in its block's line: it may work once the previous
/// turn has ended, and its end (the drop, also on a panic) lets the next
/// one go and forgets the line if no message of the block is left.
struct Turn {
    block: u64,
    turn: u64,
    previous: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
    lines: Arc<Mutex<HashMap<u64, Line>>>,
}

impl Turn {
    /// Waits until the message before this one, of the same block, ended.
    async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            // Err is the sender dropped: that turn ended, which is the wait.
            let _ = previous.await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut lines = self.lines.lock().expect("matcher lines lock");
        if lines.get(&self.block).is_some_and(|l| l.turn == self.turn) {
            lines.remove(&self.block);
        }
    }
}

/// What one message means to the matcher.
enum Event {
    Block(u64, Option<String>),
    Proof(BlockProof),
}

impl ProofMatcher {
    /// A matcher keeping state in `store`, expecting proofs from `expected`
    /// provers (any, if empty).
    pub fn new(
        store: Arc<dyn MatchStore>,
        publisher: Arc<dyn Publisher>,
        expected: Vec<String>,
    ) -> Self {
        Self {
            store,
            publisher,
            expected: Arc::new(expected.into_iter().collect()),
            blocks_queue: queues::BLOCKS.to_owned(),
            output_queue: queues::COMPLETED_PROOFS.to_owned(),
            lifeline: None,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            lines: Arc::default(),
            turns: 0,
        }
    }

    /// The next turn in `block`'s line; called in the order messages
    /// arrive, which is the order a block's messages are then handled in.
    fn turn(&mut self, block: u64) -> Turn {
        self.turns += 1;
        let (done, receiver) = oneshot::channel();
        let line = Line {
            turn: self.turns,
            done: receiver,
        };
        let previous = self
            .lines
            .lock()
            .expect("matcher lines lock")
            .insert(block, line)
            .map(|line| line.done);
        Turn {
            block,
            turn: self.turns,
            previous,
            _done: done,
            lines: self.lines.clone(),
        }
    }

    /// Exits the process through `lifeline` when this actor stops: a role
    /// without it would hold its consumer and do nothing.
    pub fn with_lifeline(mut self, lifeline: Lifeline) -> Self {
        self.lifeline = Some(lifeline);
        self
    }

    /// Reads announcements from `blocks` and publishes to `output` instead of
    /// the default queues.
    pub fn with_queues(mut self, blocks: impl Into<String>, output: impl Into<String>) -> Self {
        self.blocks_queue = blocks.into();
        self.output_queue = output.into();
        self
    }

    /// The event `delivery` carries, or why it is malformed: a reason of
    /// bounded size that never repeats the payload (the dead letter holds
    /// it once; a serde error may quote a whole string value).
    fn parse(&self, delivery: &Delivery) -> Result<Event, String> {
        if delivery.queue == self.blocks_queue {
            let hash = delivery.meta.get(meta::BLOCK_HASH).cloned();
            return serde_json::from_slice(&delivery.payload)
                .map(|block| Event::Block(block, hash))
                .map_err(|e| malformed("not a block number", &delivery.payload, &e));
        }
        let mut proof: BlockProof = serde_json::from_slice(&delivery.payload)
            .map_err(|e| malformed("not a block proof", &delivery.payload, &e))?;
        // The prover's own figure wins; else its host's measurement.
        if proof.proving_ms.is_none() {
            proof.proving_ms = delivery
                .meta
                .get(meta::PROVING_MS)
                .and_then(|ms| ms.parse().ok());
        }
        if proof.block_hash.is_none() {
            proof.block_hash = delivery.meta.get(meta::BLOCK_HASH).cloned();
        }
        Ok(Event::Proof(proof))
    }
}

impl Actor for ProofMatcher {
    type Context = Context<Self>;
}

impl Handler<Inbound> for ProofMatcher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, Inbound(delivery): Inbound, _ctx: &mut Self::Context) -> Self::Result {
        let work = self.work(delivery);
        let in_flight = self.in_flight.clone();
        // Answered once the message has a slot: the pump sends the next one
        // only then, so at most IN_FLIGHT messages are held here, and the
        // rest wait at their source (where another matcher could take them).
        Box::pin(async move {
            let permit = in_flight
                .acquire_owned()
                .await
                .expect("the matcher never closes its semaphore");
            actix::spawn(async move {
                work.await;
                drop(permit);
            });
        })
    }
}

impl ProofMatcher {
    /// The handling of `delivery`, its place in its block's line taken now
    /// (in arrival order), to run once it has a slot.
    fn work(&mut self, delivery: Delivery) -> impl Future<Output = ()> + 'static {
        let prepared = self.parse(&delivery).map(|event| {
            let block = match &event {
                Event::Block(block, ..) => *block,
                Event::Proof(proof) => proof.block,
            };
            (event, self.turn(block))
        });
        let (store, publisher) = (self.store.clone(), self.publisher.clone());
        let (expected, output) = (self.expected.clone(), self.output_queue.clone());
        async move {
            let (event, mut turn) = match prepared {
                Ok(prepared) => prepared,
                Err(reason) => return dead_letter(&delivery, &reason).await,
            };
            turn.wait().await;
            let applied = apply(
                event,
                store.as_ref(),
                publisher.as_ref(),
                &expected,
                &output,
            )
            .await;
            let settled = match applied {
                // Unconfirmed: what the message completes is published and
                // the record saved, so a lost ack brings one redelivery,
                // which finds the prover matched and publishes nothing.
                Ok(()) => delivery.ack.ack_unconfirmed().await,
                Err(error) => {
                    tracing::warn!(id = %delivery.id, %error, "matching failed; the message will be redelivered");
                    delivery.ack.nak(Duration::from_secs(1)).await
                }
            };
            if let Err(error) = settled {
                tracing::warn!(%error, "could not settle a message; the source will redeliver it");
            }
            // The next message of this block may go once this one is
            // settled: acked, or nak'ed to be applied again later.
            drop(turn);
        }
    }
}

/// Sends a malformed message to the dead-letter queue.
async fn dead_letter(delivery: &Delivery, reason: &str) {
    let (id, queue, bytes) = (&delivery.id, &delivery.queue, delivery.payload.len());
    match delivery.ack.reject(reason).await {
        Ok(()) => {
            tracing::warn!(%id, %queue, bytes, %reason, "malformed message dead-lettered")
        }
        Err(error) => {
            tracing::warn!(%id, %queue, bytes, %reason, %error, "could not dead-letter a malformed message; it will be delivered again")
        }
    }
}

/// Applies one event: load, publish what it completes, save.
async fn apply(
    event: Event,
    store: &dyn MatchStore,
    publisher: &dyn Publisher,
    expected: &BTreeSet<String>,
    output: &str,
) -> Result<(), EdgeError> {
    let now = unix_ms();
    let block = match &event {
        Event::Block(block, _) => *block,
        Event::Proof(proof) => proof.block,
    };
    let is_block = matches!(event, Event::Block(..));
    let (mut record, revision) = store.load(block).await?;
    let completed = match event {
        Event::Block(_, hash) => record.on_block(block, now, hash),
        Event::Proof(proof) => record.on_proof(proof, now).into_iter().collect(),
    };
    for proof in &completed {
        let id = proof.id();
        let payload = serde_json::to_vec(proof).expect("completed proof serializes");
        publisher
            .publish(output, Envelope::new(id, payload))
            .await?;
        if proof.orphaned {
            tracing::warn!(block, prover = %proof.prover, hash = ?proof.block_hash, "proof of a block a reorg replaced; published marked orphaned");
        } else {
            tracing::info!(block, prover = %proof.prover, latency_ms = proof.latency_ms, "proof matched");
        }
    }
    store.save(block, &record, revision).await?;
    if is_block {
        crate::metrics::block_announced(block);
    }
    for proof in completed.iter().filter(|p| !p.orphaned) {
        crate::metrics::proof_completed(&proof.prover, proof.block);
    }
    if !completed.is_empty() && !expected.is_empty() && record.fully_proved(expected) {
        tracing::info!(block, provers = ?record.provers, "block proved by every expected prover");
    }
    Ok(())
}

/// The most bytes of a payload or of a parser's message quoted in a reason
/// or a log line.
pub(crate) const EXCERPT_BYTES: usize = 200;

/// `text` cut to at most `max` bytes (on a character boundary), marked when
/// cut.
pub(crate) fn excerpt(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes in all]", &text[..end], text.len()).into()
}

/// Why `payload` is malformed, as `what` plus the parser's error, both
/// bounded: a serde error quotes string values whole, which for a large
/// payload would put the payload into the reason a second time.
pub(crate) fn malformed(what: &str, payload: &[u8], error: &serde_json::Error) -> String {
    let head = String::from_utf8_lossy(&payload[..payload.len().min(EXCERPT_BYTES)]);
    format!(
        "{what}: {} (payload of {} bytes starting {:?})",
        excerpt(&error.to_string(), EXCERPT_BYTES),
        payload.len(),
        excerpt(&head, EXCERPT_BYTES)
    )
}

//! Pairs proofs with the blocks they prove and emits completed proofs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::Inbound;
use crate::edges::match_store::MatchStore;
use crate::edges::{Delivery, EdgeError, Publisher};
use crate::messages::{BlockProof, Envelope, meta, queues, unix_ms};
use crate::shutdown::Lifeline;

/// Consumes block announcements and block proofs, and publishes one
/// [`CompletedProof`] per block and prover to the completed-proofs queue.
///
/// Each message is handled to the end before the next: load the block's
/// record, publish what it completes, save the record, ack. A failure on the
/// way naks the message, and the redelivery redoes it; publish ids make the
/// repeated publish harmless.
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
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, Inbound(delivery): Inbound, _ctx: &mut Self::Context) -> Self::Result {
        let event = self.parse(&delivery);
        let (store, publisher) = (self.store.clone(), self.publisher.clone());
        let (expected, output) = (self.expected.clone(), self.output_queue.clone());
        let work = async move {
            let event = match event {
                Ok(event) => event,
                Err(reason) => {
                    let (id, queue, bytes) =
                        (&delivery.id, &delivery.queue, delivery.payload.len());
                    match delivery.ack.reject(&reason).await {
                        Ok(()) => {
                            tracing::warn!(%id, %queue, bytes, %reason, "malformed message dead-lettered")
                        }
                        Err(error) => {
                            tracing::warn!(%id, %queue, bytes, %reason, %error, "could not dead-letter a malformed message; it will be delivered again")
                        }
                    }
                    return;
                }
            };
            let settled = match apply(
                event,
                store.as_ref(),
                publisher.as_ref(),
                &expected,
                &output,
            )
            .await
            {
                Ok(()) => delivery.ack.ack().await,
                Err(error) => {
                    tracing::warn!(id = %delivery.id, %error, "matching failed; the message will be redelivered");
                    delivery.ack.nak(Duration::from_secs(1)).await
                }
            };
            if let Err(error) = settled {
                tracing::warn!(%error, "could not settle a message; the source will redeliver it");
            }
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
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

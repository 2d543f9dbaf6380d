//! Pairs proofs with the blocks they prove and emits completed proofs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::edges::{Delivery, Publisher};
use crate::messages::{BlockProof, CompletedProof, Envelope, Inbound, queues};

/// Blocks remembered by the matcher; older ones are forgotten first.
const DEFAULT_WINDOW: usize = 50_000;

/// The matcher's state, free of any actor or transport so it can be tested
/// and persisted on its own.
#[derive(Debug)]
pub struct MatchBook {
    /// Announced blocks → when they were announced and who proved them.
    blocks: BTreeMap<u64, BlockEntry>,
    /// Proofs that arrived before their block, by block.
    early: BTreeMap<u64, Vec<BlockProof>>,
    expected: BTreeSet<String>,
    window: usize,
}

#[derive(Debug)]
struct BlockEntry {
    announced: Instant,
    provers: BTreeSet<String>,
}

impl MatchBook {
    /// A book that considers a block fully proved once every prover in
    /// `expected` delivered (or after the first proof, if `expected` is empty).
    pub fn new(expected: impl IntoIterator<Item = String>) -> Self {
        Self {
            blocks: BTreeMap::new(),
            early: BTreeMap::new(),
            expected: expected.into_iter().collect(),
            window: DEFAULT_WINDOW,
        }
    }

    /// Records an announced block; returns the proofs that were waiting for it.
    pub fn on_block(&mut self, block: u64) -> Vec<CompletedProof> {
        if self.blocks.contains_key(&block) {
            return Vec::new();
        }
        self.blocks.insert(
            block,
            BlockEntry {
                announced: Instant::now(),
                provers: BTreeSet::new(),
            },
        );
        let waiting = self.early.remove(&block).unwrap_or_default();
        let completed = waiting
            .into_iter()
            .filter_map(|proof| self.on_proof(proof))
            .collect();
        self.forget_old();
        completed
    }

    /// Records a proof; returns it matched if its block is known and this
    /// prover had not delivered it yet. Early proofs wait for their block.
    pub fn on_proof(&mut self, proof: BlockProof) -> Option<CompletedProof> {
        let Some(entry) = self.blocks.get_mut(&proof.block) else {
            let waiting = self.early.entry(proof.block).or_default();
            if !waiting.iter().any(|p| p.prover == proof.prover) {
                waiting.push(proof);
            }
            return None;
        };
        if !entry.provers.insert(proof.prover.clone()) {
            return None;
        }
        let latency_ms = entry.announced.elapsed().as_millis() as u64;
        Some(CompletedProof {
            block: proof.block,
            prover: proof.prover,
            proof: proof.proof,
            latency_ms,
        })
    }

    /// Whether every expected prover delivered a proof of `block`.
    pub fn fully_proved(&self, block: u64) -> bool {
        self.blocks.get(&block).is_some_and(|entry| {
            if self.expected.is_empty() {
                !entry.provers.is_empty()
            } else {
                self.expected.is_subset(&entry.provers)
            }
        })
    }

    fn forget_old(&mut self) {
        while self.blocks.len() > self.window {
            self.blocks.pop_first();
        }
        let oldest = self.blocks.keys().next().copied().unwrap_or(0);
        self.early.retain(|&block, _| block >= oldest);
    }
}

/// Consumes block announcements and block proofs, and publishes one
/// [`CompletedProof`] per block and prover to the completed-proofs queue.
///
/// A completed proof that cannot be published is kept and published again
/// with the next message or tick; the message that produced it is acked, as
/// its effect is in the book.
pub struct ProofMatcher {
    book: MatchBook,
    publisher: Arc<dyn Publisher>,
    blocks_queue: String,
    output_queue: String,
    unpublished: Vec<CompletedProof>,
}

/// Retry publishing completed proofs that failed to publish.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl ProofMatcher {
    /// A matcher reading announcements from the blocks queue (any other queue
    /// carries proofs) and expecting proofs from `expected` provers.
    pub fn new(publisher: Arc<dyn Publisher>, expected: Vec<String>) -> Self {
        Self {
            book: MatchBook::new(expected),
            publisher,
            blocks_queue: queues::BLOCKS.to_owned(),
            output_queue: queues::COMPLETED_PROOFS.to_owned(),
            unpublished: Vec::new(),
        }
    }

    /// Reads announcements from `blocks` and publishes to `output` instead of
    /// the default queues.
    pub fn with_queues(mut self, blocks: impl Into<String>, output: impl Into<String>) -> Self {
        self.blocks_queue = blocks.into();
        self.output_queue = output.into();
        self
    }

    fn take(&mut self, delivery: &Delivery) -> Result<Vec<CompletedProof>, String> {
        if delivery.queue == self.blocks_queue {
            let block: u64 = serde_json::from_slice(&delivery.payload)
                .map_err(|e| format!("not a block number: {e}"))?;
            return Ok(self.book.on_block(block));
        }
        let proof: BlockProof = serde_json::from_slice(&delivery.payload)
            .map_err(|e| format!("not a block proof: {e}"))?;
        Ok(self.book.on_proof(proof).into_iter().collect())
    }

    /// Publishes what is pending plus what `delivery` completes, then settles
    /// the delivery.
    fn process(&mut self, delivery: Option<Delivery>) -> AtomicResponse<Self, ()> {
        let mut batch = std::mem::take(&mut self.unpublished);
        let mut malformed = None;
        if let Some(delivery) = &delivery {
            match self.take(delivery) {
                Ok(completed) => batch.extend(completed),
                Err(reason) => malformed = Some(reason),
            }
        }
        let publisher = self.publisher.clone();
        let output = self.output_queue.clone();
        let work = async move {
            let failed = publish_all(publisher.as_ref(), &output, batch).await;
            if let Some(delivery) = delivery {
                let settled = match malformed {
                    Some(reason) => {
                        tracing::warn!(id = %delivery.id, queue = %delivery.queue, %reason, "malformed message dead-lettered");
                        delivery.ack.reject(&reason).await
                    }
                    None => delivery.ack.ack().await,
                };
                if let Err(error) = settled {
                    tracing::warn!(%error, "could not settle a message; it will be redelivered");
                }
            }
            failed
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|failed, matcher, _| {
            matcher.unpublished.extend(failed);
        })))
    }
}

/// Publishes each completed proof; returns the ones that failed.
async fn publish_all(
    publisher: &dyn Publisher,
    queue: &str,
    batch: Vec<CompletedProof>,
) -> Vec<CompletedProof> {
    let mut failed = Vec::new();
    for proof in batch {
        let id = format!("completed-{}-{}", proof.block, proof.prover);
        let payload = serde_json::to_vec(&proof).expect("completed proof serializes");
        match publisher.publish(queue, Envelope::new(id, payload)).await {
            Ok(()) => {
                tracing::info!(block = proof.block, prover = %proof.prover, latency_ms = proof.latency_ms, "proof matched")
            }
            Err(error) => {
                tracing::warn!(block = proof.block, %error, "could not publish a completed proof; will retry");
                failed.push(proof);
            }
        }
    }
    failed
}

impl Actor for ProofMatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(std::time::Duration::from_secs(2), |matcher, ctx| {
            if !matcher.unpublished.is_empty() {
                ctx.address().do_send(Flush);
            }
        });
    }
}

impl Handler<Inbound> for ProofMatcher {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, Inbound(delivery): Inbound, _ctx: &mut Self::Context) -> Self::Result {
        self.process(Some(delivery))
    }
}

impl Handler<Flush> for ProofMatcher {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Flush, _ctx: &mut Self::Context) -> Self::Result {
        self.process(None)
    }
}

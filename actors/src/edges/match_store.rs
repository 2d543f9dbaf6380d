//! The proof matcher's state: what it knows of one block, and the store it
//! keeps that in.
//!
//! Both live here, with the edges, because the stores are edges (in memory
//! for standalone mode, [`super::local::MemoryMatchStore`]; a JetStream
//! key-value bucket in role mode, [`super::nats::KvMatchStore`]) and edges
//! never depend on the actors that use them (the proof matcher). The
//! record's rules are plain data: no I/O, no clock; the caller passes the time.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::EdgeError;
use crate::messages::{BlockProof, CompletedProof};

/// What the matcher knows of one block. Kept in a [`MatchStore`], so a
/// restarted matcher picks up where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// When the block was announced (ms since the Unix epoch); `None` while
    /// only proofs have arrived.
    pub announced_ms: Option<u64>,
    /// The announced block's hash, when the watcher knew it. Following
    /// `latest`, a reorg announces the number again with another hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Provers whose proof of this block was matched and published.
    pub provers: BTreeSet<String>,
    /// Proofs that arrived before the block, one per prover.
    pub early: Vec<BlockProof>,
}

impl BlockRecord {
    /// The block was announced (with `hash`, if known): returns the early
    /// proofs, now matched. Announced again with another hash (a reorg
    /// replaced it), it returns, marked orphaned, one notice per proof
    /// already matched to the replaced block, and starts over.
    pub fn on_block(
        &mut self,
        block: u64,
        now_ms: u64,
        hash: Option<String>,
    ) -> Vec<CompletedProof> {
        if self.announced_ms.is_some() {
            let replaced = match (&self.hash, &hash) {
                (Some(old), Some(new)) => old != new,
                _ => false,
            };
            if !replaced {
                self.hash = self.hash.take().or(hash);
                return Vec::new();
            }
            let old = std::mem::replace(&mut self.hash, hash);
            self.announced_ms = Some(now_ms);
            return std::mem::take(&mut self.provers)
                .into_iter()
                .map(|prover| CompletedProof {
                    block,
                    prover,
                    proof: serde_json::Value::Null,
                    latency_ms: 0,
                    proving_ms: None,
                    block_hash: old.clone(),
                    orphaned: true,
                    extra: Default::default(),
                })
                .collect();
        }
        self.announced_ms = Some(now_ms);
        self.hash = hash;
        std::mem::take(&mut self.early)
            .into_iter()
            .filter_map(|proof| self.on_proof(proof, now_ms))
            .collect()
    }

    /// A proof arrived: returns it matched if the block is known and this
    /// prover had not delivered yet; keeps it for later if the block is not.
    /// A proof of another hash than the announced one proves a block a
    /// reorg replaced: it is returned marked orphaned, and counts for nothing.
    pub fn on_proof(&mut self, proof: BlockProof, now_ms: u64) -> Option<CompletedProof> {
        let Some(announced) = self.announced_ms else {
            if !self.early.iter().any(|p| p.prover == proof.prover) {
                self.early.push(proof);
            }
            return None;
        };
        let orphaned =
            matches!((&self.hash, &proof.block_hash), (Some(ours), Some(theirs)) if ours != theirs);
        if !orphaned && !self.provers.insert(proof.prover.clone()) {
            return None;
        }
        let latency_ms = now_ms.saturating_sub(announced);
        Some(CompletedProof {
            block: proof.block,
            prover: proof.prover,
            proof: proof.proof,
            latency_ms,
            proving_ms: proof.proving_ms,
            block_hash: proof.block_hash,
            orphaned,
            extra: proof.extra,
        })
    }

    /// Whether every prover in `expected` delivered (any one, if empty).
    pub fn fully_proved(&self, expected: &BTreeSet<String>) -> bool {
        if expected.is_empty() {
            !self.provers.is_empty()
        } else {
            expected.is_subset(&self.provers)
        }
    }
}

/// Where the matcher keeps its [`BlockRecord`]s: in memory for standalone
/// mode, in a JetStream key-value bucket in role mode.
///
/// Writes are conditional on the revision that was read, so two matcher
/// processes sharing one consumer name cannot overwrite each other's match:
/// the loser's message is redelivered and applied to the fresh record.
#[async_trait]
pub trait MatchStore: Send + Sync {
    /// The record of `block` (empty if none) and its revision (0 if none).
    async fn load(&self, block: u64) -> Result<(BlockRecord, u64), EdgeError>;
    /// Stores the record of `block` if its revision is still `revision`.
    async fn save(&self, block: u64, record: &BlockRecord, revision: u64) -> Result<(), EdgeError>;
}

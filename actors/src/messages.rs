//! Plain data that travels between actors and over queues.
//!
//! Payload shapes follow the prover binary contract: a block job is a bare JSON
//! number, a block proof is `{"block","proof","prover"}`, a step proof is
//! `{"data","task_id","group_id"}`. Extra fields a prover adds are kept.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Logical queue names. Role mode maps them to subjects
/// (`modularorchestrator.blocks`, ...); standalone mode to in-process queues.
pub mod queues {
    /// Block numbers announced by the watcher.
    pub const BLOCKS: &str = "blocks";
    /// Proofs of whole blocks, from provers or aggregators.
    pub const BLOCK_PROOFS: &str = "block_proofs";
    /// Proofs matched to their blocks: the pipeline's result.
    pub const COMPLETED_PROOFS: &str = "completed_proofs";
    /// Steps of a partitioned block (multistep proving).
    pub const STEPS: &str = "steps";
    /// Proofs of single steps.
    pub const STEP_PROOFS: &str = "step_proofs";
    /// Complete groups of step proofs, ready to aggregate.
    pub const COLLECTED_STEP_PROOFS: &str = "collected_step_proofs";
    /// Jobs that failed their last attempt, with the error.
    pub const DEAD_LETTER: &str = "dead_letter";
}

/// A message to publish: its payload and the id that deduplicates it, so a
/// retry or a redelivery never produces the same message twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Deterministic id (`block-100`, `mock-prover:block-100`, ...).
    pub id: String,
    /// The bytes as the consumer (often a prover binary) will read them.
    pub payload: Vec<u8>,
}

impl Envelope {
    /// An envelope with the given id and payload.
    pub fn new(id: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            id: id.into(),
            payload: payload.into(),
        }
    }

    /// The announcement of one block: payload is the bare JSON number.
    pub fn block(block: u64) -> Self {
        Self::new(format!("block-{block}"), block.to_string())
    }
}

/// A proof of a whole block, as a prover binary writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockProof {
    /// The block it proves.
    pub block: u64,
    /// The proof, usually a hex string; kept as the prover wrote it.
    pub proof: Value,
    /// Which prover made it; the matcher tracks delivery per prover.
    pub prover: String,
    /// Anything else the prover wrote, passed on untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A proof matched to its block: what the pipeline delivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletedProof {
    /// The proved block.
    pub block: u64,
    /// The prover that delivered the proof.
    pub prover: String,
    /// The proof as the prover wrote it.
    pub proof: Value,
    /// Milliseconds from the block's announcement to the match, as seen by
    /// the matcher (0 when the proof arrived first).
    pub latency_ms: u64,
    /// Anything else the prover wrote (cycles, timings), passed on.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A proof of one step of a block (multistep proving).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepProof {
    /// The step's proof, opaque to the orchestrator.
    pub data: Value,
    /// The step's id; one group holds each task once.
    pub task_id: String,
    /// The group the step belongs to (the block number in the template).
    pub group_id: Value,
}

/// What goes to the dead-letter queue when a job fails its last attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The queue the job came from.
    pub queue: String,
    /// The consumer that gave up on it. Two consumers of one queue (the
    /// matcher and the provers both read `blocks`) each dead-letter a bad
    /// message; naming the consumer keeps both letters apart. Empty in
    /// letters written before it existed.
    #[serde(default)]
    pub consumer: String,
    /// The job's message id.
    pub id: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub error: String,
    /// The job's payload, as text.
    pub payload: String,
}

impl DeadLetter {
    /// The dead-letter message for a job from `queue` with message `id`
    /// that `consumer` gave up on at its `attempts`-th delivery with
    /// `error`. Its id names the consumer: an id without it would be the
    /// same for every consumer of the queue, and the bus's dedupe would
    /// drop all letters but the first.
    pub fn envelope(
        consumer: &str,
        queue: &str,
        id: &str,
        attempts: u32,
        error: &str,
        payload: &[u8],
    ) -> Envelope {
        let letter = DeadLetter {
            queue: queue.to_owned(),
            consumer: consumer.to_owned(),
            id: id.to_owned(),
            attempts,
            error: error.to_owned(),
            payload: String::from_utf8_lossy(payload).into_owned(),
        };
        let bytes = serde_json::to_vec(&letter).expect("dead letter serializes");
        Envelope::new(format!("dead-{consumer}-{queue}-{id}-{attempts}"), bytes)
    }
}

/// The block a job payload is about, whatever its step: a bare block number, a
/// step or proof object with `block`, or an array of step proofs.
pub fn block_of_payload(payload: &[u8]) -> Option<u64> {
    fn of(value: &Value) -> Option<u64> {
        match value {
            Value::Number(n) => n.as_u64(),
            Value::Object(map) => map
                .get("block")
                .and_then(Value::as_u64)
                .or_else(|| map.get("data").and_then(of))
                .or_else(|| map.get("group_id").and_then(Value::as_u64)),
            Value::Array(items) => items.first().and_then(of),
            _ => None,
        }
    }
    serde_json::from_slice(payload).ok().as_ref().and_then(of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_of_every_payload_shape() {
        assert_eq!(block_of_payload(b"23839700"), Some(23839700));
        assert_eq!(
            block_of_payload(br#"{"block":7,"step_id":"s0","payload":"x"}"#),
            Some(7)
        );
        assert_eq!(
            block_of_payload(
                br#"[{"data":{"block":9,"proof":"0x","prover":"p"},"task_id":"s","group_id":9}]"#
            ),
            Some(9)
        );
        assert_eq!(block_of_payload(b"not json"), None);
    }

    #[test]
    fn block_proof_keeps_extra_fields() {
        let raw = r#"{"block":1,"proof":"0xff","prover":"p","cycles":42}"#;
        let proof: BlockProof = serde_json::from_str(raw).unwrap();
        assert_eq!(proof.extra["cycles"], 42);
        assert_eq!(serde_json::to_value(&proof).unwrap()["cycles"], 42);
    }
}

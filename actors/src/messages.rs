//! Plain data that travels between actors and over queues.
//!
//! Payload shapes follow the prover binary contract: a block job is a bare JSON
//! number, a block proof is `{"block","proof","prover"}`, a step proof is
//! `{"data","task_id","group_id"}`. Extra fields a prover adds are kept.

use std::collections::BTreeMap;

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
    /// What happened to each job ([`super::JobEvent`]), for the dashboard
    /// and the EthProofs reporter.
    pub const JOB_EVENTS: &str = "job_events";
}

/// Keys of [`Envelope::meta`].
pub mod meta {
    /// Milliseconds the prover binary ran to make this output.
    pub const PROVING_MS: &str = "proving-ms";
    /// The hash of the announced block (`0x…`), when the watcher knows it:
    /// following `latest`, a block number alone does not say which block a
    /// proof is of once a reorg replaced it. It rides beside the bare-number
    /// payload because the prover contract's input is the number alone.
    pub const BLOCK_HASH: &str = "block-hash";
    /// The announced block's timestamp (Unix seconds), when the watcher knows
    /// it: `--backlog newest` skips blocks older than `--max-age` by it.
    pub const BLOCK_TIME: &str = "block-time";
}

/// Metadata that travels beside a payload (NATS headers, or in process),
/// never inside it: a prover binary reads its input byte for byte.
pub type Meta = BTreeMap<String, String>;

/// A message to publish: its payload and the id that deduplicates it, so a
/// retry or a redelivery never produces the same message twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Deterministic id (`block-100`, `mock-prover:block-100`, ...).
    pub id: String,
    /// The bytes as the consumer (often a prover binary) will read them.
    pub payload: Vec<u8>,
    /// Metadata for our own consumers (see [`meta`]).
    pub meta: Meta,
}

impl Envelope {
    /// An envelope with the given id and payload.
    pub fn new(id: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            id: id.into(),
            payload: payload.into(),
            meta: Meta::new(),
        }
    }

    /// This envelope with `key` set to `value` in its metadata.
    pub fn with_meta(mut self, key: &str, value: impl ToString) -> Self {
        self.meta.insert(key.to_owned(), value.to_string());
        self
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
    /// Milliseconds of proving, when the prover writes it; else the
    /// matcher fills in its host's measurement ([`meta::PROVING_MS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proving_ms: Option<u64>,
    /// The hash of the block the prover was given; the matcher fills it in
    /// from the job's metadata ([`meta::BLOCK_HASH`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<String>,
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
    /// Milliseconds the prover binary ran, as its host measured it; `None`
    /// for proofs published by something other than this project's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proving_ms: Option<u64>,
    /// The hash of the block the prover was given, when the watcher knew it
    /// ([`meta::BLOCK_HASH`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<String>,
    /// The proof is of a block a reorg took out of the chain (following
    /// `latest`): it proves a block that is no longer block `block`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub orphaned: bool,
    /// Anything else the prover wrote (cycles, timings), passed on.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CompletedProof {
    /// Its message id: one per block and prover, and per block hash when
    /// known, so the proof of a block that replaced a reorged one is not
    /// taken for a duplicate; a proof marked orphaned is a message of its own.
    pub fn id(&self) -> String {
        let mut id = format!("completed-{}-{}", self.block, self.prover);
        if let Some(hash) = &self.block_hash {
            id = format!("{id}-{}", hash_in_id(hash));
        }
        if self.orphaned {
            id.push_str("-orphaned");
        }
        id
    }
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

/// Where a job is, as its prover host saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Taken from its queue by a host.
    Queued,
    /// The prover binary started.
    Proving,
    /// The binary's output was published.
    Proved,
    /// The attempt failed (retried, or dead-lettered when `last`).
    Failed,
    /// Not proved on purpose: with `--backlog newest`, the block was older
    /// than `--max-age` when a host took it (`error` says how old).
    Skipped,
}

/// One step in a job's life, published by the prover pool on
/// [`queues::JOB_EVENTS`] so that the dashboard and the EthProofs reporter
/// (which alone holds the API key) learn what prover hosts do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The block the job is about, when its payload names one.
    pub block: Option<u64>,
    /// The pool (consumer name) that ran it.
    pub pool: String,
    /// The queue the job came from.
    pub queue: String,
    /// The job's message id.
    pub job: String,
    /// Which delivery of the job this is, from 1.
    pub attempt: u32,
    /// What happened.
    pub status: JobStatus,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// With `Proved`: milliseconds the binary ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proving_ms: Option<u64>,
    /// With `Proved`: bytes of output published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
    /// With `Failed`: why, and whether no retry follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl JobEvent {
    /// The event as a message; its id is unique per job, attempt and status,
    /// so a republished event is deduplicated.
    pub fn envelope(&self) -> Envelope {
        let status = serde_json::to_value(self.status).expect("status serializes");
        let status = status.as_str().unwrap_or("event");
        let bytes = serde_json::to_vec(self).expect("job event serializes");
        Envelope::new(
            format!("event-{}-{}-{}-{status}", self.pool, self.job, self.attempt),
            bytes,
        )
    }
}

/// The part of a block hash that goes into message ids: its first 16 hex
/// digits, enough to tell a block from the one a reorg put in its place.
pub fn hash_in_id(hash: &str) -> &str {
    let hex = hash.trim_start_matches("0x");
    hex.get(..16).unwrap_or(hex)
}

/// Now, in milliseconds since the Unix epoch: the unit of every timestamp
/// in messages and records.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `text` cut to `chars` characters, marked with `…` when cut: for reasons
/// and errors that may quote a whole payload.
pub fn bounded(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
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

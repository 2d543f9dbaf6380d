//! The edges: the only places that touch the outside world.
//!
//! Core actors hold these traits, never a NATS client, an HTTP client or a
//! process handle, so a test can hand them fakes and the distributed mode can
//! swap the in-process bus for JetStream without touching an actor.

pub mod chain;
pub mod ethproofs;
pub mod local;
pub mod match_store;
pub mod nats;
pub mod process;
pub mod rpc;

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

pub use chain::{BlockHeader, ChainHead, Follow};

use crate::messages::{Envelope, Meta};

/// `text` with every character other than ASCII letters, digits, `-` and
/// `_` replaced by `_`: valid as a NATS consumer or bucket name and as a file
/// name, whatever a user or a message id put in.
pub fn safe_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A failure at an edge: a queue, the chain RPC.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EdgeError {
    /// Publishing to a queue failed; the message was not stored.
    #[error("publishing {id} to {queue} failed: {reason}")]
    Publish {
        /// Logical queue name.
        queue: String,
        /// Message id.
        id: String,
        /// What went wrong.
        reason: String,
    },
    /// The queue refused this message for good (too large even for the
    /// object store, for instance): retrying the same bytes cannot succeed.
    #[error("{queue} refused {id} for good: {reason}")]
    Rejected {
        /// Logical queue name.
        queue: String,
        /// Message id.
        id: String,
        /// Why it can never be stored.
        reason: String,
    },
    /// Acknowledging a delivery failed; the message will be redelivered.
    #[error("acknowledging {id} failed: {reason}")]
    Ack {
        /// Message id.
        id: String,
        /// What went wrong.
        reason: String,
    },
    /// A state store (the matcher's key-value bucket) failed, or another
    /// writer changed the entry since it was read.
    #[error("state store entry {key}: {reason}")]
    Store {
        /// The entry's key.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// The Ethereum RPC did not answer as expected.
    #[error("Ethereum RPC {url}: {reason}")]
    Rpc {
        /// The endpoint (without credentials).
        url: String,
        /// What went wrong.
        reason: String,
    },
}

impl EdgeError {
    /// Whether retrying the same operation can never succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, EdgeError::Rejected { .. })
    }
}

/// How a consumer settles one delivery. Every delivery carries one, so the
/// actor that finishes the work decides its fate, whatever the transport.
#[async_trait]
pub trait AckHandle: Send + Sync {
    /// Done: never deliver again.
    async fn ack(&self) -> Result<(), EdgeError>;
    /// Failed this time: deliver again after `delay`, counting an attempt.
    async fn nak(&self, delay: Duration) -> Result<(), EdgeError>;
    /// Still working on it: do not redeliver yet (long proofs).
    async fn in_progress(&self) -> Result<(), EdgeError>;
    /// Failed for good: send the payload and `reason` to the dead-letter
    /// queue, then never deliver again.
    async fn reject(&self, reason: &str) -> Result<(), EdgeError>;
    /// Done, without waiting for the source to confirm it: for a consumer
    /// whose outputs are already stored under deduplicating ids and for
    /// which a redelivery costs little (the proof matcher re-reads a record
    /// and publishes nothing new). A lost ack then only means one cheap
    /// redelivery, and the round trip [`AckHandle::ack`] waits for is saved
    /// on every message. Defaults to [`AckHandle::ack`].
    async fn ack_unconfirmed(&self) -> Result<(), EdgeError> {
        self.ack().await
    }
}

/// One message from a source, with what the consumer needs to settle it.
pub struct Delivery {
    /// The logical queue it came from (`blocks`, `steps`, ...).
    pub queue: String,
    /// Its message id, stable across redeliveries.
    pub id: String,
    /// Its payload, byte for byte.
    pub payload: Vec<u8>,
    /// Which delivery this is, starting at 1.
    pub attempt: u32,
    /// The metadata it was published with.
    pub meta: Meta,
    /// Settles the message at its source.
    pub ack: Box<dyn AckHandle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("queue", &self.queue)
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("payload_bytes", &self.payload.len())
            .finish()
    }
}

/// A stream of deliveries that a consumer pulls one at a time, so a busy
/// consumer takes no more work than it can start.
#[async_trait]
pub trait JobSource: Send {
    /// The next delivery; `None` once the source is closed for good.
    async fn next(&mut self) -> Option<Delivery>;

    /// Between 1 and `max` deliveries: waits for the first, then takes
    /// only what is available at once, never waiting for more. A pool with
    /// `max` idle workers asks for `max`, so a backlog costs one request per
    /// batch instead of one per job, while no delivery waits here for a
    /// worker (another host could be proving it). Empty once the source is
    /// closed for good. Defaults to one [`JobSource::next`].
    async fn next_up_to(&mut self, max: usize) -> Vec<Delivery> {
        let _ = max;
        self.next().await.into_iter().collect()
    }
}

/// Publishes messages to logical queues. `Ok` means stored: a consumer will
/// see it. Publishing the same id twice stores it once.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publish `message` to `queue`.
    async fn publish(&self, queue: &str, message: Envelope) -> Result<(), EdgeError>;

    /// Publish every message of `messages` to `queue`, in order; `Ok` means
    /// all are stored. A transport that can pipeline (JetStream) sends them
    /// all before waiting for the first answer, so a batch costs about one
    /// round trip instead of one per message. On an error, some of the
    /// messages may be stored (a later one possibly, when an earlier one
    /// failed): publishing the whole batch again is safe, since ids
    /// deduplicate. Defaults to one [`Publisher::publish`] after the other,
    /// stopping at the first error.
    async fn publish_many(&self, queue: &str, messages: Vec<Envelope>) -> Result<(), EdgeError> {
        for message in messages {
            self.publish(queue, message).await?;
        }
        Ok(())
    }
}

/// Why one run of a prover failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum JobFailure {
    /// The binary could not be started.
    #[error("could not start prover {binary}: {reason}")]
    Spawn {
        /// The binary path.
        binary: String,
        /// The OS error.
        reason: String,
    },
    /// The prover exited with a non-zero code.
    #[error("prover exited with code {code}; stderr: {stderr}")]
    Exit {
        /// Its exit code.
        code: i32,
        /// The tail of its stderr.
        stderr: String,
    },
    /// The prover was killed by a signal (out of memory, killed by hand, ...).
    #[error("prover was killed by signal {signal}; stderr: {stderr}")]
    Killed {
        /// The signal number.
        signal: i32,
        /// The tail of its stderr.
        stderr: String,
    },
    /// The prover ran past the job timeout and was killed with its children.
    #[error("prover ran past the job timeout of {}s and was killed", *millis as f64 / 1000.0)]
    Timeout {
        /// The timeout, in milliseconds.
        millis: u64,
    },
    /// The prover exited 0 but wrote no output file.
    #[error("prover exited 0 but wrote no output file")]
    MissingOutput,
    /// The prover's output is not what the contract asks for.
    #[error("prover output is invalid: {reason}")]
    InvalidOutput {
        /// What is wrong with it.
        reason: String,
    },
    /// The worker running the job stopped (crash or panic) before answering.
    #[error("the worker running this job stopped before it finished")]
    WorkerLost,
    /// Local I/O around the job failed (work directory, input file).
    #[error("job I/O failed: {reason}")]
    Io {
        /// What went wrong.
        reason: String,
    },
}

impl JobFailure {
    /// Whether the worker that saw this failure should be replaced: a child
    /// killed by a signal often means the host or device is in a bad state.
    pub fn needs_new_worker(&self) -> bool {
        matches!(self, JobFailure::Killed { .. } | JobFailure::WorkerLost)
    }
}

impl JobFailure {
    /// Whether running the same job again cannot help: the prover answered,
    /// but with output no consumer can use, or it exited with code 3, which
    /// the contract (and prover-sdk) reserves for "input unreadable or
    /// invalid". Such a job is dead-lettered at once instead of burning GPU
    /// hours on identical retries.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            JobFailure::InvalidOutput { .. } | JobFailure::Exit { code: 3, .. }
        )
    }
}

/// One run of a prover: the job and the worker slot it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's message id (log tag, job file names).
    pub id: String,
    /// The input payload, byte for byte.
    pub input: Vec<u8>,
    /// The worker slot running it (log tag).
    pub slot: usize,
    /// The GPU this slot owns, if the pool was given devices: the child sees
    /// only this one (`CUDA_VISIBLE_DEVICES`).
    pub gpu: Option<String>,
}

/// Runs one job: input bytes in, output bytes out. The real one runs a prover
/// binary as a child process ([`process::ProcessRunner`]).
#[async_trait]
pub trait JobRunner: Send + Sync {
    /// Run `job`; answer with the prover's output bytes.
    async fn run(&self, job: &Job) -> Result<Vec<u8>, JobFailure>;
}

//! Operator metrics: every metric name and label declared once, and one small
//! function per event, called where the event happens (the watcher, the
//! pool, the matcher, the NATS edge).
//!
//! The calls go through the `metrics` facade: without a recorder installed
//! (the actor tests, `proof get`) they cost next to nothing and record
//! nothing. The binary installs a Prometheus recorder and serves it on
//! `/metrics` (`src/http.rs`). Names and labels here are a public interface
//! for dashboards and alerts: rename one only with the README and the
//! Grafana dashboard.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{counter, gauge, histogram};

/// Blocks the watcher has passed: announced, or skipped by `--every`.
pub const BLOCKS_SEEN: &str = "orchestrator_blocks_seen_total";
/// Blocks the watcher published to its queue.
pub const BLOCKS_PUBLISHED: &str = "orchestrator_blocks_published_total";
/// Reorgs the watcher noticed (following `latest`).
pub const REORGS: &str = "orchestrator_reorgs_total";
/// Announced blocks that reorgs replaced (and that were announced again).
pub const REORGED_BLOCKS: &str = "orchestrator_reorged_blocks_total";
/// Jobs not proved on purpose: older than `--max-age` with `--backlog newest`.
pub const JOBS_SKIPPED: &str = "orchestrator_jobs_skipped_total";
/// The followed head (finalized unless `--follow` says otherwise) at the
/// watcher's last successful poll.
pub const FINALIZED_HEAD: &str = "orchestrator_finalized_head";
/// The newest block the matcher has seen announced.
pub const LAST_BLOCK_ANNOUNCED: &str = "orchestrator_last_block_announced";
/// The newest block with a completed proof (matched by the matcher).
pub const LAST_BLOCK_PROVED: &str = "orchestrator_last_block_proved";
/// Newest known block (the finalized head where this process watches the
/// chain, else the newest announced) minus the last block proved.
pub const PROVING_LAG: &str = "orchestrator_proving_lag_blocks";
/// Completed proofs published by the matcher, by prover (the proof's own
/// `prover` field).
pub const PROOFS_COMPLETED: &str = "orchestrator_proofs_completed_total";

/// Jobs handed to a worker. Every started job ends once as succeeded, skipped,
/// failed or handed back.
pub const JOBS_STARTED: &str = "orchestrator_jobs_started_total";
/// Jobs proved and published (and acked).
pub const JOBS_SUCCEEDED: &str = "orchestrator_jobs_succeeded_total";
/// Failed attempts: retried ones and last ones alike.
pub const JOBS_FAILED: &str = "orchestrator_jobs_failed_total";
/// Failed attempts that will be tried again (nak with backoff).
pub const JOBS_RETRIED: &str = "orchestrator_jobs_retried_total";
/// Jobs sent to the dead-letter queue: out of attempts, or failed for good.
pub const JOBS_DEAD_LETTERED: &str = "orchestrator_jobs_dead_lettered_total";
/// Running jobs given back to the queue because the process was stopping.
pub const JOBS_HANDED_BACK: &str = "orchestrator_jobs_handed_back_total";
/// Seconds one successful prover run took (the binary, as the pool saw it).
pub const PROVING_SECONDS: &str = "orchestrator_proving_seconds";
/// Bytes of a successful prover run's output.
pub const PROOF_BYTES: &str = "orchestrator_proof_bytes";
/// Jobs running on a worker slot (0 or 1), by slot and GPU.
pub const JOBS_IN_FLIGHT: &str = "orchestrator_jobs_in_flight";
/// Workers replaced after they died.
pub const WORKER_RESTARTS: &str = "orchestrator_worker_restarts_total";
/// 1 while the pool takes no new job after failures in a row (its circuit
/// breaker, see `PoolConfig::pause_after_failure`), else 0.
pub const INTAKE_PAUSED: &str = "orchestrator_intake_paused";
/// Jobs failed in a row on this host; 0 after a success.
pub const FAILURES_IN_A_ROW: &str = "orchestrator_failures_in_a_row";
/// Publishes that failed, each try counted (a retried publish counts once
/// per failed try).
pub const PUBLISH_ERRORS: &str = "orchestrator_publish_errors_total";
/// Acks, naks, in-progress acks and terminations the server did not take.
pub const ACK_ERRORS: &str = "orchestrator_ack_errors_total";

/// Label: the prover pool (its consumer name in role mode, `standalone` in
/// `run`), or the proof's prover on completed proofs.
pub const LABEL_PROVER: &str = "prover";
/// Label: the queue a job came from, or a publish went to.
pub const LABEL_QUEUE: &str = "queue";
/// Label: the worker slot of a pool.
pub const LABEL_SLOT: &str = "slot";
/// Label: the GPU of a worker slot (empty without `--gpus`).
pub const LABEL_GPU: &str = "gpu";

/// Buckets of [`PROVING_SECONDS`]: dense around EthProofs' real-time mark
/// (10 s), then up to the long runs of CPU provers.
pub const PROVING_SECONDS_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 8.0, 10.0, 12.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Buckets of [`PROOF_BYTES`]: 1 KiB to 64 MiB (ZisK ~336 KiB, SP1 ~1 MB,
/// Airbender ~2 MB, OpenVM several MB; the largest message is 64 MiB).
pub const PROOF_BYTES_BUCKETS: &[f64] = &[
    1024.0,
    16384.0,
    131_072.0,
    262_144.0,
    524_288.0,
    1_048_576.0,
    2_097_152.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// Newest finalized head and last proved block seen by this process, for
/// the lag (0: not known yet; block 0 is never proved in practice).
static HEAD: AtomicU64 = AtomicU64::new(0);
static PROVED: AtomicU64 = AtomicU64::new(0);

fn update_lag() {
    let (head, proved) = (HEAD.load(Ordering::Relaxed), PROVED.load(Ordering::Relaxed));
    if head > 0 && proved > 0 {
        gauge!(PROVING_LAG).set(head.saturating_sub(proved) as f64);
    }
}

/// The watcher read `block` as the finalized head.
pub fn finalized_head(block: u64) {
    gauge!(FINALIZED_HEAD).set(block as f64);
    HEAD.fetch_max(block, Ordering::Relaxed);
    update_lag();
}

/// The watcher passed `count` blocks (announced, or skipped by `--every`).
pub fn blocks_seen(count: u64) {
    counter!(BLOCKS_SEEN).increment(count);
}

/// The watcher published a block.
pub fn block_published() {
    counter!(BLOCKS_PUBLISHED).increment(1);
}

/// The matcher saw `block` announced.
pub fn block_announced(block: u64) {
    let newest = HEAD.fetch_max(block, Ordering::Relaxed).max(block);
    gauge!(LAST_BLOCK_ANNOUNCED).set(newest as f64);
    update_lag();
}

/// The matcher published a completed proof of `block` by `prover`.
pub fn proof_completed(prover: &str, block: u64) {
    counter!(PROOFS_COMPLETED, LABEL_PROVER => prover.to_owned()).increment(1);
    let newest = PROVED.fetch_max(block, Ordering::Relaxed).max(block);
    gauge!(LAST_BLOCK_PROVED).set(newest as f64);
    update_lag();
}

/// How a job on the pool ended, for its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// Proved, published, acked.
    Succeeded,
    /// Failed; tried again later.
    Retried,
    /// Failed for good; dead-lettered.
    DeadLettered,
    /// Given back at shutdown.
    HandedBack,
    /// Not proved on purpose: too old (`--backlog newest`).
    Skipped,
}

/// `prover`'s pool started on `queues`: its job counters start at 0, so a
/// scrape shows "no failures yet" as 0 rather than as a missing series.
pub fn pool_started(prover: &str, queues: &[&str]) {
    for queue in queues {
        let labels = [
            (LABEL_PROVER, prover.to_owned()),
            (LABEL_QUEUE, (*queue).to_owned()),
        ];
        for name in [
            JOBS_STARTED,
            JOBS_SUCCEEDED,
            JOBS_FAILED,
            JOBS_RETRIED,
            JOBS_DEAD_LETTERED,
            JOBS_HANDED_BACK,
            JOBS_SKIPPED,
        ] {
            counter!(name, &labels).increment(0);
        }
    }
    counter!(WORKER_RESTARTS, LABEL_PROVER => prover.to_owned()).increment(0);
    intake(prover, false, 0);
}

/// `prover`'s pool handed a job from `queue` to a worker.
pub fn job_started(prover: &str, queue: &str) {
    counter!(JOBS_STARTED, LABEL_PROVER => prover.to_owned(), LABEL_QUEUE => queue.to_owned())
        .increment(1);
}

/// A job of `prover` from `queue` ended as `end`.
pub fn job_ended(prover: &str, queue: &str, end: JobEnd) {
    let labels = [
        (LABEL_PROVER, prover.to_owned()),
        (LABEL_QUEUE, queue.to_owned()),
    ];
    let count = |name: &'static str| counter!(name, &labels).increment(1);
    match end {
        JobEnd::Succeeded => count(JOBS_SUCCEEDED),
        JobEnd::Skipped => count(JOBS_SKIPPED),
        JobEnd::Retried => {
            count(JOBS_FAILED);
            count(JOBS_RETRIED);
        }
        JobEnd::DeadLettered => {
            count(JOBS_FAILED);
            count(JOBS_DEAD_LETTERED);
        }
        JobEnd::HandedBack => count(JOBS_HANDED_BACK),
    }
}

/// A prover run of `prover` on a job from `queue` succeeded after
/// `elapsed` with `bytes` of output.
pub fn job_proved(prover: &str, queue: &str, elapsed: Duration, bytes: usize) {
    let labels = [
        (LABEL_PROVER, prover.to_owned()),
        (LABEL_QUEUE, queue.to_owned()),
    ];
    histogram!(PROVING_SECONDS, &labels).record(elapsed.as_secs_f64());
    histogram!(PROOF_BYTES, &labels).record(bytes as f64);
}

/// Worker `slot` (on `gpu`) of `prover` started (`true`) or finished a job.
pub fn job_in_flight(prover: &str, slot: usize, gpu: Option<&str>, running: bool) {
    gauge!(
        JOBS_IN_FLIGHT,
        LABEL_PROVER => prover.to_owned(),
        LABEL_SLOT => slot.to_string(),
        LABEL_GPU => gpu.unwrap_or_default().to_owned()
    )
    .set(if running { 1.0 } else { 0.0 });
}

/// A worker of `prover` died and is being replaced.
pub fn worker_restarted(prover: &str) {
    counter!(WORKER_RESTARTS, LABEL_PROVER => prover.to_owned()).increment(1);
}

/// `prover`'s circuit breaker: `paused` while it takes no new job, after
/// `failures_in_a_row` failures.
pub fn intake(prover: &str, paused: bool, failures_in_a_row: u32) {
    gauge!(INTAKE_PAUSED, LABEL_PROVER => prover.to_owned()).set(if paused { 1.0 } else { 0.0 });
    gauge!(FAILURES_IN_A_ROW, LABEL_PROVER => prover.to_owned()).set(f64::from(failures_in_a_row));
}

/// A try to publish to `queue` failed.
pub fn publish_error(queue: &str) {
    counter!(PUBLISH_ERRORS, LABEL_QUEUE => queue.to_owned()).increment(1);
}

/// An ack, nak, in-progress ack or termination failed.
pub fn ack_error() {
    counter!(ACK_ERRORS).increment(1);
}

/// The watcher saw a reorg replace `depth` announced blocks (following
/// `latest`).
pub fn reorg(depth: u64) {
    counter!(REORGS).increment(1);
    counter!(REORGED_BLOCKS).increment(depth);
}

//! The core actors, one per file. None of them knows NATS or processes.

mod block_watcher;
mod ethproofs_reporter;
mod proof_matcher;
mod prover_pool;
mod prover_worker;
mod step_collector;

pub use block_watcher::{Backlog, BlockWatcher, LONGEST_SMART_POLL, WatcherConfig, smart_poll};
pub use ethproofs_reporter::{
    API_LIMIT, EthProofsReporter, RateLimit, Report, ReporterConfig, Window, proof_base64,
    proving_time, report_of,
};
pub use proof_matcher::ProofMatcher;
pub use prover_pool::{PoolConfig, PoolStatus, ProverPool, Route, WorkerStats};
pub use prover_worker::{ProverWorker, RunJob};
pub use step_collector::{DEFAULT_GROUP_TIMEOUT, StepCollector};

use std::future::Future;
use std::time::Duration;

use actix::{Message, Recipient};

use crate::edges::{AckHandle, Delivery, JobSource};
use crate::shutdown::Shutdown;

/// A delivery from a source, handed to a consuming actor (matcher, collector,
/// the binary's reporter) by [`pump`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Inbound(pub Delivery);

/// Deliveries a [`pump`] takes from its source at once: what is there,
/// up to this many, in one request instead of one request each (the
/// matcher works on up to 16 messages at a time). The consuming actor
/// still takes them one by one, in order.
const PUMP_BATCH: usize = 16;

/// Forwards every delivery of `source` to `consumer`, one at a time: the
/// next batch is pulled only once the consumer took the last one, so a slow
/// consumer slows the source instead of growing a queue. The forwarding is
/// work tracked by `shutdown` and ends when a stop is asked for.
pub fn pump(mut source: Box<dyn JobSource>, consumer: Recipient<Inbound>, shutdown: &Shutdown) {
    let stop = shutdown.clone();
    let forward = async move {
        'pull: loop {
            let deliveries = source.next_up_to(PUMP_BATCH).await;
            if deliveries.is_empty() {
                break;
            }
            for delivery in deliveries {
                if consumer.send(Inbound(delivery)).await.is_err() {
                    // The consuming actor died: a process without it is useless,
                    // so stop and let the supervisor (compose, systemd) restart it.
                    stop.exit(1, "a consuming actor stopped unexpectedly");
                    break 'pull;
                }
            }
        }
    };
    let stop = shutdown.clone();
    shutdown.spawn(async move {
        tokio::select! {
            _ = forward => {}
            _ = stop.triggered() => {}
        }
    });
}

/// Awaits `work`, telling its source every `every` that the message is
/// still being handled (a long proof, a report waiting out a rate limit), so
/// it is not redelivered to someone else meanwhile.
pub(crate) async fn keep_alive<F: Future>(
    work: F,
    ack: &dyn AckHandle,
    every: Duration,
) -> F::Output {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = ticker.tick() => {
                if let Err(error) = ack.in_progress().await {
                    tracing::warn!(%error, "could not send an in-progress ack");
                }
            }
        }
    }
}

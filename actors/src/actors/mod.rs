//! The core actors, one per file. None of them knows NATS or processes.

mod block_watcher;
mod proof_matcher;
mod prover_pool;
mod prover_worker;
mod step_collector;

pub use block_watcher::{BlockWatcher, WatcherConfig};
pub use proof_matcher::ProofMatcher;
pub use prover_pool::{PoolConfig, PoolStatus, ProverPool, Route, WorkerStats};
pub use prover_worker::{ProverWorker, RunJob};
pub use step_collector::{DEFAULT_GROUP_TIMEOUT, StepCollector};

use actix::{Message, Recipient};

use crate::edges::{Delivery, JobSource};

/// A delivery from a source, handed to a consuming actor (matcher, collector,
/// the binary's reporter) by [`pump`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Inbound(pub Delivery);

/// Forwards every delivery of `source` to `consumer`, one at a time: the next
/// is pulled only once the consumer took the last, so a slow consumer slows
/// the source instead of growing a queue.
pub fn pump(mut source: Box<dyn JobSource>, consumer: Recipient<Inbound>) {
    actix::spawn(async move {
        while let Some(delivery) = source.next().await {
            if consumer.send(Inbound(delivery)).await.is_err() {
                // The consuming actor died: a process without it is useless,
                // so stop and let the supervisor (compose, systemd) restart it.
                tracing::error!("a consuming actor stopped unexpectedly; stopping the process");
                actix::System::current().stop_with_code(1);
                break;
            }
        }
    });
}

//! The prover pool on the in-process bus, for the pool's actor tests.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::Actor;
use orchestrator_actors::actors::{PoolConfig, PoolStatus, ProverPool, Route, WorkerStats};
use orchestrator_actors::backoff::Backoff;
use orchestrator_actors::edges::local::{LocalBus, LocalSource};
use orchestrator_actors::edges::{JobFailure, JobRunner, JobSource, Publisher};
use orchestrator_actors::messages::{Envelope, queues};

use super::{ScriptedRunner, Step};

/// An output queue without a known consumer, so outputs are not shape-checked.
pub const OUTPUT: &str = "out";

pub fn config(workers: usize, multiple_output: bool) -> PoolConfig {
    let quick = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
    PoolConfig {
        name: "test-prover".into(),
        workers,
        gpus: Vec::new(),
        max_attempts: 3,
        retry: quick,
        pause_after_failure: false,
        restart: quick,
        progress_interval: Duration::from_millis(50),
        routes: vec![Route {
            input: queues::BLOCKS.into(),
            output: OUTPUT.into(),
            multiple_output,
        }],
        max_age: None,
    }
}

pub struct Harness {
    pub bus: LocalBus,
    pub proofs: LocalSource,
    pub dead: LocalSource,
    pub pool: actix::Addr<ProverPool>,
}

pub fn start(runner: Arc<dyn JobRunner>, config: PoolConfig) -> Harness {
    let bus = LocalBus::new();
    let jobs = bus.subscribe(&[queues::BLOCKS]);
    let proofs = bus.subscribe(&[OUTPUT]);
    let dead = bus.subscribe(&[queues::DEAD_LETTER]);
    let pool = ProverPool::new(config, runner, Box::new(jobs), Arc::new(bus.clone())).start();
    Harness {
        bus,
        proofs,
        dead,
        pool,
    }
}

pub async fn announce(bus: &LocalBus, blocks: impl IntoIterator<Item = u64>) {
    for block in blocks {
        bus.publish(queues::BLOCKS, Envelope::block(block))
            .await
            .unwrap();
    }
}

/// A runner whose first prover is killed by a signal; then it echoes.
pub fn killed_once() -> Arc<ScriptedRunner> {
    let killed = JobFailure::Killed {
        signal: 9,
        stderr: String::new(),
    };
    Arc::new(ScriptedRunner::new(vec![Step::Fail(killed), Step::Echo]))
}

pub async fn stats(h: &Harness) -> WorkerStats {
    h.pool.send(PoolStatus).await.unwrap()
}

/// Counts the deliveries the pool took from its source.
pub struct CountingSource(pub LocalSource, pub Arc<std::sync::atomic::AtomicUsize>);

#[async_trait::async_trait]
impl JobSource for CountingSource {
    async fn next(&mut self) -> Option<orchestrator_actors::edges::Delivery> {
        let delivery = self.0.next().await;
        self.1.fetch_add(1, Ordering::SeqCst);
        delivery
    }
}

/// Polls the pool's stats until `done` holds; fails after `secs` seconds (a
/// deadlock guard), naming `what` and the last stats.
pub async fn await_stats(
    pool: &actix::Addr<ProverPool>,
    secs: u64,
    what: &str,
    done: impl Fn(&WorkerStats) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let now = pool.send(PoolStatus).await.unwrap();
        if done(&now) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! Where the pool's workers run: with several workers each has a thread of
//! its own, so one job's file work, spawn and log reading do not wait for
//! another's on the pool's thread; a single worker stays on the pool's
//! thread, where a job costs no hand-over between threads.

mod common;

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use async_trait::async_trait;
use common::next_within;
use common::pool_harness::{announce, config, start};
use orchestrator_actors::edges::{Job, JobFailure, JobRunner};
use tokio::sync::Barrier;

/// Records the thread each slot's job runs on. Every job waits at a barrier
/// for the others of its round, so the round's jobs are all running at once.
struct ThreadRecorder {
    seen: Mutex<Vec<(usize, ThreadId)>>,
    round: Barrier,
}

#[async_trait]
impl JobRunner for ThreadRecorder {
    async fn run(&self, job: &Job) -> Result<Vec<u8>, JobFailure> {
        self.seen
            .lock()
            .unwrap()
            .push((job.slot, std::thread::current().id()));
        self.round.wait().await;
        Ok(job.input.clone())
    }
}

/// Runs `workers` jobs on a pool of `workers` workers at once; the threads
/// their slots ran on.
async fn threads_of(workers: usize) -> Vec<(usize, ThreadId)> {
    let runner = Arc::new(ThreadRecorder {
        seen: Mutex::new(Vec::new()),
        round: Barrier::new(workers),
    });
    let mut h = start(runner.clone(), config(workers, false));
    announce(&h.bus, 1..=workers as u64).await;
    for _ in 0..workers {
        // The barrier lets the round through only when all its jobs run.
        next_within(&mut h.proofs, 10).await;
    }
    runner.seen.lock().unwrap().clone()
}

#[actix_rt::test]
async fn several_workers_each_run_on_a_thread_of_their_own() {
    let pool_thread = std::thread::current().id();
    let seen = threads_of(2).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_ne!(seen[0].0, seen[1].0, "two slots ran the two jobs: {seen:?}");
    assert!(
        seen.iter().all(|(_, thread)| *thread != pool_thread),
        "a worker ran on the pool's thread: {seen:?}"
    );
    assert_ne!(
        seen[0].1, seen[1].1,
        "two workers shared one thread: {seen:?}"
    );
}

#[actix_rt::test]
async fn a_single_worker_runs_on_the_pools_thread() {
    let pool_thread = std::thread::current().id();
    let seen = threads_of(1).await;
    assert_eq!(seen, vec![(0, pool_thread)]);
}

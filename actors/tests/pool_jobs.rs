//! The prover pool's job lifecycle at the actor level: publishing a proved
//! output (retried alone, or refused for good), handing jobs back at
//! shutdown, one worker per GPU, and a host whose jobs keep failing.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Actor;
use common::pool_harness::*;
use common::{ScriptedRunner, Step, assert_quiet, next_within};
use orchestrator_actors::actors::{PoolStatus, ProverPool};
use orchestrator_actors::edges::local::{LocalBus, LocalSource};
use orchestrator_actors::edges::{
    AckHandle, Delivery, EdgeError, Job, JobFailure, JobRunner, JobSource, Publisher,
};
use orchestrator_actors::messages::{DeadLetter, Envelope, queues};
use orchestrator_actors::shutdown::Shutdown;

/// A publisher that fails its first `failures` publishes of outputs, for
/// good when `permanent`, else as an outage would; then passes on to the
/// bus. Job events pass always: they are not what these tests break.
struct FlakyPublisher {
    bus: LocalBus,
    failures: std::sync::atomic::AtomicUsize,
    permanent: bool,
}

#[async_trait::async_trait]
impl Publisher for FlakyPublisher {
    async fn publish(&self, queue: &str, message: Envelope) -> Result<(), EdgeError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left == 0 || queue == queues::JOB_EVENTS {
            return self.bus.publish(queue, message).await;
        }
        self.failures.store(left - 1, Ordering::SeqCst);
        let (queue, id) = (queue.to_owned(), message.id);
        Err(if self.permanent {
            EdgeError::Rejected {
                queue,
                id,
                reason: "too large".into(),
            }
        } else {
            EdgeError::Publish {
                queue,
                id,
                reason: "no responders".into(),
            }
        })
    }
}

fn start_flaky(runner: Arc<ScriptedRunner>, failures: usize, permanent: bool) -> Harness {
    let bus = LocalBus::new();
    let jobs = bus.subscribe(&[queues::BLOCKS]);
    let proofs = bus.subscribe(&[OUTPUT]);
    let dead = bus.subscribe(&[queues::DEAD_LETTER]);
    let publisher = FlakyPublisher {
        bus: bus.clone(),
        failures: failures.into(),
        permanent,
    };
    let pool = ProverPool::new(
        config(1, false),
        runner,
        Box::new(jobs),
        Arc::new(publisher),
    )
    .start();
    Harness {
        bus,
        proofs,
        dead,
        pool,
    }
}

#[actix_rt::test]
async fn a_failed_publish_is_retried_without_running_the_prover_again() {
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Echo]));
    let mut h = start_flaky(runner.clone(), 3, false);
    announce(&h.bus, [9]).await;
    assert_eq!(next_within(&mut h.proofs, 20).await.payload, b"9");
    assert_eq!(
        runner.calls.load(Ordering::SeqCst),
        1,
        "the prover ran again"
    );
    let stats = stats(&h).await;
    assert_eq!(
        (stats.proved, stats.retried, stats.publish_retries),
        (1, 0, 3)
    );
    assert_quiet(&mut h.dead).await;
}

#[actix_rt::test]
async fn an_output_refused_for_good_is_dead_lettered_at_once() {
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Echo]));
    let mut h = start_flaky(runner.clone(), 1, true);
    announce(&h.bus, [4]).await;
    let letter: DeadLetter =
        serde_json::from_slice(&next_within(&mut h.dead, 10).await.payload).unwrap();
    assert!(
        letter.error.contains("can never be published") && letter.error.contains("too large"),
        "{}",
        letter.error
    );
    assert_eq!(
        (letter.attempts, runner.calls.load(Ordering::SeqCst)),
        (1, 1)
    );
    assert_quiet(&mut h.proofs).await;
}

/// Records how each delivery was settled, then settles it at the bus.
struct RecordingAck {
    inner: Box<dyn AckHandle>,
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl AckHandle for RecordingAck {
    async fn ack(&self) -> Result<(), EdgeError> {
        self.log.lock().unwrap().push("ack".into());
        self.inner.ack().await
    }
    async fn nak(&self, delay: Duration) -> Result<(), EdgeError> {
        self.log.lock().unwrap().push(format!("nak {delay:?}"));
        self.inner.nak(delay).await
    }
    async fn in_progress(&self) -> Result<(), EdgeError> {
        self.inner.in_progress().await
    }
    async fn reject(&self, reason: &str) -> Result<(), EdgeError> {
        self.log.lock().unwrap().push("reject".into());
        self.inner.reject(reason).await
    }
}

struct RecordingSource(LocalSource, Arc<Mutex<Vec<String>>>);

#[async_trait::async_trait]
impl JobSource for RecordingSource {
    async fn next(&mut self) -> Option<Delivery> {
        let mut delivery = self.0.next().await?;
        delivery.ack = Box::new(RecordingAck {
            inner: delivery.ack,
            log: self.1.clone(),
        });
        Some(delivery)
    }
}

#[actix_rt::test]
async fn stopping_hands_the_running_job_back_at_once_and_takes_no_other() {
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Slow(Duration::from_secs(
        60,
    ))]));
    let bus = LocalBus::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let source = RecordingSource(bus.subscribe(&[queues::BLOCKS]), log.clone());
    let shutdown = Shutdown::new();
    let pool = ProverPool::new(
        config(1, false),
        runner.clone(),
        Box::new(source),
        Arc::new(bus.clone()),
    )
    .with_shutdown(shutdown.clone())
    .start();
    announce(&bus, [1]).await;
    await_stats(&pool, 5, "the job running", |s| s.busy == 1).await;
    assert!(shutdown.drain(Duration::from_secs(5)).await, "not drained");
    assert_eq!(*log.lock().unwrap(), ["nak 0ns"]);
    assert_eq!(pool.send(PoolStatus).await.unwrap().handed_back, 1);
    announce(&bus, [2]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        runner.calls.load(Ordering::SeqCst),
        1,
        "took a job while stopping"
    );
}

/// Notes which GPU each job ran on and whether two ever shared one.
#[derive(Default)]
struct GpuRecorder {
    busy: Mutex<std::collections::HashSet<String>>,
    seen: Mutex<Vec<Option<String>>>,
    shared: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl JobRunner for GpuRecorder {
    async fn run(&self, job: &Job) -> Result<Vec<u8>, JobFailure> {
        self.seen.lock().unwrap().push(job.gpu.clone());
        let gpu = job.gpu.clone().unwrap_or_default();
        if !self.busy.lock().unwrap().insert(gpu.clone()) {
            self.shared.store(true, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.busy.lock().unwrap().remove(&gpu);
        Ok(job.input.clone())
    }
}

#[actix_rt::test]
async fn one_worker_per_gpu_and_never_two_jobs_on_one() {
    let runner = Arc::new(GpuRecorder::default());
    let mut config = config(1, false);
    config.gpus = vec!["0".into(), "1".into()];
    let bus = LocalBus::new();
    let mut proofs = bus.subscribe(&[OUTPUT]);
    let jobs = bus.subscribe(&[queues::BLOCKS]);
    let pool = ProverPool::new(
        config,
        runner.clone(),
        Box::new(jobs),
        Arc::new(bus.clone()),
    )
    .start();
    announce(&bus, 1..=10).await;
    for _ in 0..10 {
        next_within(&mut proofs, 10).await;
    }
    assert_eq!(pool.send(PoolStatus).await.unwrap().live, 2);
    assert!(
        !runner.shared.load(Ordering::SeqCst),
        "two jobs shared a GPU"
    );
    let seen = runner.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|g| matches!(g.as_deref(), Some("0" | "1"))),
        "{seen:?}"
    );
    assert!(
        seen.contains(&Some("0".into())) && seen.contains(&Some("1".into())),
        "{seen:?}"
    );
}

#[actix_rt::test]
async fn a_host_whose_jobs_keep_failing_pauses_its_intake() {
    let exit = JobFailure::Exit {
        code: 1,
        stderr: "no space left on device".into(),
    };
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Fail(exit)]));
    let mut config = config(1, false);
    // Long enough that a pause is unmistakable, short jobs otherwise.
    config.retry = orchestrator_actors::backoff::Backoff::new(
        Duration::from_secs(30),
        Duration::from_secs(60),
    );
    config.pause_after_failure = true;
    let bus = LocalBus::new();
    let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let source = CountingSource(bus.subscribe(&[queues::BLOCKS]), pulled.clone());
    let pool = ProverPool::new(
        config,
        runner.clone(),
        Box::new(source),
        Arc::new(bus.clone()),
    )
    .start();
    announce(&bus, [1, 2, 3]).await;
    await_stats(&pool, 5, "the first failure", |s| s.retried == 1).await;
    assert_eq!(pool.send(PoolStatus).await.unwrap().retried, 1);
    // Blocks 2 and 3 wait on the queue for a healthy host instead of being
    // taken, failed and dead-lettered here one after the other.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        1,
        "a failing host kept taking jobs"
    );
    assert_eq!(runner.calls.load(Ordering::SeqCst), 1);
}

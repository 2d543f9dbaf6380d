//! ProverPool and ProverWorker at the actor level: fake runners, local bus.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::Actor;
use common::{ScriptedRunner, Step, assert_quiet, next_within};
use orchestrator_actors::actors::{PoolConfig, PoolStatus, ProverPool, Route, WorkerStats};
use orchestrator_actors::backoff::Backoff;
use orchestrator_actors::edges::local::{LocalBus, LocalSource};
use orchestrator_actors::edges::{
    AckHandle, Delivery, EdgeError, Job, JobFailure, JobRunner, JobSource, Publisher,
};
use orchestrator_actors::messages::{DeadLetter, Envelope, queues};
use orchestrator_actors::shutdown::Shutdown;
use std::sync::Mutex;

/// An output queue without a known consumer, so outputs are not shape-checked.
const OUTPUT: &str = "out";

fn config(workers: usize, multiple_output: bool) -> PoolConfig {
    let quick = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
    PoolConfig {
        name: "test-prover".into(),
        workers,
        gpus: Vec::new(),
        max_attempts: 3,
        retry: quick,
        restart: quick,
        progress_interval: Duration::from_millis(50),
        routes: vec![Route {
            input: queues::BLOCKS.into(),
            output: OUTPUT.into(),
            multiple_output,
        }],
    }
}

struct Harness {
    bus: LocalBus,
    proofs: LocalSource,
    dead: LocalSource,
    pool: actix::Addr<ProverPool>,
}

fn start(runner: Arc<ScriptedRunner>, config: PoolConfig) -> Harness {
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

async fn announce(bus: &LocalBus, blocks: impl IntoIterator<Item = u64>) {
    for block in blocks {
        bus.publish(queues::BLOCKS, Envelope::block(block))
            .await
            .unwrap();
    }
}

/// A runner whose first prover is killed by a signal; then it echoes.
fn killed_once() -> Arc<ScriptedRunner> {
    let killed = JobFailure::Killed {
        signal: 9,
        stderr: String::new(),
    };
    Arc::new(ScriptedRunner::new(vec![Step::Fail(killed), Step::Echo]))
}

async fn stats(h: &Harness) -> WorkerStats {
    h.pool.send(PoolStatus).await.unwrap()
}

#[actix_rt::test]
async fn replaces_a_worker_that_panicked() {
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Panic, Step::Echo]));
    let mut h = start(runner.clone(), config(1, false));
    announce(&h.bus, [7]).await;
    let proof = next_within(&mut h.proofs, 10).await;
    assert_eq!(
        (proof.id.as_str(), proof.payload.as_slice()),
        ("test-prover:block-7", b"7".as_slice())
    );
    let stats = stats(&h).await;
    assert_eq!(
        (stats.restarts, stats.live, stats.proved, stats.retried),
        (1, 1, 1, 1)
    );
    assert_eq!(runner.calls.load(Ordering::SeqCst), 2);
}

#[actix_rt::test]
async fn replaces_a_worker_whose_child_was_killed() {
    let runner = killed_once();
    let mut h = start(runner, config(1, false));
    announce(&h.bus, [8]).await;
    assert_eq!(next_within(&mut h.proofs, 10).await.payload, b"8");
    let stats = stats(&h).await;
    assert_eq!((stats.restarts, stats.live), (1, 1));
}

#[actix_rt::test]
async fn failing_job_is_retried_then_dead_lettered_and_the_pool_goes_on() {
    let exit = JobFailure::Exit {
        code: 1,
        stderr: "out of cheese".into(),
    };
    let runner = Arc::new(ScriptedRunner::new(vec![
        Step::Fail(exit.clone()),
        Step::Fail(exit.clone()),
        Step::Fail(exit),
        Step::Echo,
    ]));
    let mut h = start(runner.clone(), config(1, false));
    announce(&h.bus, [1]).await;
    let letter: DeadLetter =
        serde_json::from_slice(&next_within(&mut h.dead, 10).await.payload).unwrap();
    assert_eq!((letter.payload.as_str(), letter.attempts), ("1", 3));
    assert!(letter.error.contains("out of cheese"), "{}", letter.error);
    assert_quiet(&mut h.proofs).await;

    announce(&h.bus, [2]).await;
    assert_eq!(next_within(&mut h.proofs, 10).await.payload, b"2");
    let stats = stats(&h).await;
    assert_eq!(
        (stats.retried, stats.failed, stats.proved, stats.restarts),
        (2, 1, 1, 0)
    );
}

#[actix_rt::test]
async fn multiple_output_publishes_each_element_with_its_own_id() {
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Output(
        r#"[{"step":0},{"step":1},{"step":2}]"#,
    )]));
    let mut h = start(runner, config(1, true));
    announce(&h.bus, [5]).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let part = next_within(&mut h.proofs, 10).await;
        assert_eq!(part.payload, format!(r#"{{"step":{i}}}"#).into_bytes());
        ids.push(part.id);
    }
    assert_eq!(
        ids,
        [
            "test-prover:block-5:0",
            "test-prover:block-5:1",
            "test-prover:block-5:2"
        ]
    );
}

#[actix_rt::test]
async fn multiple_output_that_is_not_an_array_is_a_failure() {
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Output(r#"{"block":1}"#)]));
    let mut h = start(runner, config(1, true));
    announce(&h.bus, [1]).await;
    let letter: DeadLetter =
        serde_json::from_slice(&next_within(&mut h.dead, 10).await.payload).unwrap();
    assert!(
        letter.error.contains("must be a JSON array"),
        "{}",
        letter.error
    );
}

#[actix_rt::test]
async fn runs_one_job_per_worker_at_a_time() {
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Slow(
        Duration::from_millis(150),
    )]));
    let mut h = start(runner.clone(), config(2, false));
    announce(&h.bus, 1..=6).await;
    let mut proved: Vec<Vec<u8>> = Vec::new();
    for _ in 0..6 {
        proved.push(next_within(&mut h.proofs, 10).await.payload);
    }
    proved.sort();
    assert_eq!(
        proved,
        (1..=6)
            .map(|b: u64| b.to_string().into_bytes())
            .collect::<Vec<_>>()
    );
    assert_eq!(runner.max_running.load(Ordering::SeqCst), 2);
}

#[actix_rt::test]
async fn output_of_the_wrong_shape_for_its_queue_is_a_failure() {
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Output(
        r#"{"block":1,"proof":"0xff"}"#,
    )]));
    let mut config = config(1, false);
    config.routes[0].output = queues::BLOCK_PROOFS.into();
    let mut h = start(runner.clone(), config);
    announce(&h.bus, [1]).await;
    let letter: DeadLetter =
        serde_json::from_slice(&next_within(&mut h.dead, 10).await.payload).unwrap();
    assert!(
        letter.error.contains("not what block_proofs expects"),
        "{}",
        letter.error
    );
    assert_eq!(
        runner.calls.load(Ordering::SeqCst),
        1,
        "the same prover would write the same output: no retry"
    );
    assert_eq!(letter.attempts, 1);
}

#[actix_rt::test]
async fn multiple_output_elements_pass_byte_for_byte() {
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Output(
        r#"[{"z":1,"a":123456789012345678901234567890}]"#,
    )]));
    let mut h = start(runner, config(1, true));
    announce(&h.bus, [5]).await;
    let part = next_within(&mut h.proofs, 10).await;
    assert_eq!(
        part.payload,
        br#"{"z":1,"a":123456789012345678901234567890}"#.to_vec()
    );
}

/// Counts the deliveries the pool took from its source.
struct CountingSource(LocalSource, Arc<std::sync::atomic::AtomicUsize>);

#[async_trait::async_trait]
impl JobSource for CountingSource {
    async fn next(&mut self) -> Option<orchestrator_actors::edges::Delivery> {
        let delivery = self.0.next().await;
        self.1.fetch_add(1, Ordering::SeqCst);
        delivery
    }
}

#[actix_rt::test]
async fn takes_no_job_while_its_only_worker_is_being_replaced() {
    let runner = killed_once();
    let mut config = config(1, false);
    config.restart = Backoff::new(Duration::from_secs(30), Duration::from_secs(30));
    let bus = LocalBus::new();
    let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let source = CountingSource(bus.subscribe(&[queues::BLOCKS]), pulled.clone());
    let pool = ProverPool::new(config, runner, Box::new(source), Arc::new(bus.clone())).start();
    announce(&bus, [1, 2]).await;
    for _ in 0..500 {
        if pool.send(PoolStatus).await.unwrap().restarts == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pool.send(PoolStatus).await.unwrap().restarts, 1);
    // A job taken now would sit unacknowledged until the replacement starts,
    // while another host could prove it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        1,
        "a job was taken with no live worker"
    );
}

/// A publisher that fails its first `failures` publishes, for good when
/// `permanent`, else as an outage would; then passes on to the bus.
struct FlakyPublisher {
    bus: LocalBus,
    failures: std::sync::atomic::AtomicUsize,
    permanent: bool,
}

#[async_trait::async_trait]
impl Publisher for FlakyPublisher {
    async fn publish(&self, queue: &str, message: Envelope) -> Result<(), EdgeError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left == 0 {
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
    for _ in 0..500 {
        if pool.send(PoolStatus).await.unwrap().busy == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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

/// Makes the next `left` prover workers die as they start, before any job:
/// a tracing subscriber (this thread's default, so only this test's) that
/// panics on a worker's "started" event, i.e. inside the worker actor.
/// Nothing in the pool's API stops an idle worker, and a job's crash is seen
/// by the pool through that job.
#[derive(Clone)]
struct WorkerStartBomb {
    left: Arc<std::sync::atomic::AtomicUsize>,
    fired: Arc<std::sync::atomic::AtomicUsize>,
}

impl WorkerStartBomb {
    /// Sets the bomb for this thread until the guard is dropped.
    fn arm(workers: usize) -> (WorkerStartBomb, tracing::subscriber::DefaultGuard) {
        let bomb = WorkerStartBomb {
            left: Arc::new(workers.into()),
            fired: Arc::new(0.into()),
        };
        let guard = tracing::subscriber::set_default(bomb.clone());
        (bomb, guard)
    }

    fn fired(&self) -> usize {
        self.fired.load(Ordering::SeqCst)
    }
}

impl tracing::Subscriber for WorkerStartBomb {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if message.0 != "prover worker started" {
            return;
        }
        let armed = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if armed {
            self.fired.fetch_add(1, Ordering::SeqCst);
            panic!("test: prover worker dies while idle");
        }
    }
}

/// Polls the pool's stats until `done` holds; fails after `secs` seconds (a
/// deadlock guard), naming `what` and the last stats.
async fn await_stats(h: &Harness, secs: u64, what: &str, done: impl Fn(&WorkerStats) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let now = stats(h).await;
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

#[actix_rt::test]
async fn replaces_a_worker_that_died_while_idle() {
    let (bomb, _guard) = WorkerStartBomb::arm(1);
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Slow(
        Duration::from_millis(300),
    )]));
    let mut h = start(runner.clone(), config(2, false));
    await_stats(&h, 10, "the dead idle worker replaced", |s| {
        s.restarts == 1 && s.live == 2
    })
    .await;
    assert_eq!(bomb.fired(), 1, "no worker died");
    // Both workers take jobs again: two run at once.
    announce(&h.bus, [1, 2]).await;
    for _ in 0..2 {
        next_within(&mut h.proofs, 10).await;
    }
    assert_eq!(runner.max_running.load(Ordering::SeqCst), 2);
    let stats = stats(&h).await;
    assert_eq!((stats.restarts, stats.live, stats.proved), (1, 2, 2));
}

#[actix_rt::test]
async fn replaces_its_only_worker_that_died_while_idle() {
    // The feeder holds the only permit from the start, waiting for a job:
    // the dead worker must be replaced all the same, or the job waits for a
    // worker forever.
    let (bomb, _guard) = WorkerStartBomb::arm(1);
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Echo]));
    let mut h = start(runner, config(1, false));
    announce(&h.bus, [5]).await;
    assert_eq!(next_within(&mut h.proofs, 10).await.payload, b"5");
    assert_eq!(bomb.fired(), 1, "no worker died");
    let stats = stats(&h).await;
    assert_eq!((stats.restarts, stats.live, stats.proved), (1, 1, 1));
}

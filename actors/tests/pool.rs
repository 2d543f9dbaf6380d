//! ProverPool and ProverWorker at the actor level: fake runners, local bus.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::Actor;
use common::log_tap::tap_logs;
use common::pool_harness::*;
use common::{ScriptedRunner, Step, assert_quiet, next_within};
use orchestrator_actors::actors::{PoolStatus, ProverPool};
use orchestrator_actors::backoff::Backoff;
use orchestrator_actors::edges::JobFailure;
use orchestrator_actors::edges::local::LocalBus;
use orchestrator_actors::messages::{DeadLetter, queues};

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
    await_stats(&pool, 5, "the worker replaced", |s| s.restarts == 1).await;
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
        let armed = bomb.clone();
        let guard = tap_logs(move |event| {
            if event.message != "prover worker started" {
                return;
            }
            let left = armed
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if left {
                armed.fired.fetch_add(1, Ordering::SeqCst);
                panic!("test: prover worker dies while idle");
            }
        });
        (bomb, guard)
    }

    fn fired(&self) -> usize {
        self.fired.load(Ordering::SeqCst)
    }
}

#[actix_rt::test]
async fn replaces_a_worker_that_died_while_idle() {
    let (bomb, _guard) = WorkerStartBomb::arm(1);
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Slow(
        Duration::from_millis(300),
    )]));
    let mut h = start(runner.clone(), config(2, false));
    await_stats(&h.pool, 10, "the dead idle worker replaced", |s| {
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

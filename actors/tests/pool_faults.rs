//! Faults the prover pool must end at once instead of retrying: a prover
//! that says its input is invalid (exit code 3, as prover-sdk documents it)
//! is run once and its job dead-lettered, while other exit codes are still
//! retried.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::pool_harness::{config, start, stats};
use common::{ScriptedRunner, Step, assert_quiet, next_within};
use orchestrator_actors::edges::local::LocalBus;
use orchestrator_actors::edges::{JobFailure, Publisher};
use orchestrator_actors::messages::{DeadLetter, Envelope, queues};

fn exit(code: i32, stderr: &str) -> JobFailure {
    JobFailure::Exit {
        code,
        stderr: stderr.into(),
    }
}

async fn publish(bus: &LocalBus, id: &str, payload: &str) {
    bus.publish(queues::BLOCKS, Envelope::new(id, payload))
        .await
        .unwrap();
}

#[actix_rt::test]
async fn input_invalid_exit_code_is_dead_lettered_after_one_run() {
    let runner = Arc::new(ScriptedRunner::new(vec![
        Step::Fail(exit(3, "input is not a block number")),
        Step::Echo,
    ]));
    let mut h = start(runner.clone(), config(1, false));
    publish(&h.bus, "block-bad", "\"not a block\"").await;
    let letter: DeadLetter =
        serde_json::from_slice(&next_within(&mut h.dead, 10).await.payload).unwrap();
    assert_eq!(letter.attempts, 1, "{letter:?}");
    assert_eq!(letter.payload, "\"not a block\"");
    assert!(
        letter.error.contains("code 3") && letter.error.contains("input is not a block number"),
        "the real cause is in the dead letter: {}",
        letter.error
    );
    assert_eq!(
        runner.calls.load(Ordering::SeqCst),
        1,
        "the prover ran once"
    );
    assert_quiet(&mut h.dead).await;
    assert_quiet(&mut h.proofs).await;

    // The pool goes on with the next job.
    publish(&h.bus, "block-2", "2").await;
    assert_eq!(next_within(&mut h.proofs, 10).await.payload, b"2");
    let stats = stats(&h).await;
    assert_eq!((stats.retried, stats.failed, stats.proved), (0, 1, 1));
}

#[actix_rt::test]
async fn other_exit_codes_are_still_retried() {
    let runner = Arc::new(ScriptedRunner::new(vec![
        Step::Fail(exit(4, "disk full")),
        Step::Fail(exit(1, "out of memory")),
        Step::Echo,
    ]));
    let mut h = start(runner.clone(), config(1, false));
    publish(&h.bus, "block-5", "5").await;
    assert_eq!(next_within(&mut h.proofs, 10).await.payload, b"5");
    assert_eq!(runner.calls.load(Ordering::SeqCst), 3);
    assert_quiet(&mut h.dead).await;
}

/// Hands out one delivery of `blocks` with the given attempt number, whose
/// reject records its reason; then nothing.
struct OneDelivery(Option<(u32, Arc<std::sync::Mutex<Vec<String>>>)>);

struct RecordingAck(Arc<std::sync::Mutex<Vec<String>>>);

#[async_trait::async_trait]
impl orchestrator_actors::edges::AckHandle for RecordingAck {
    async fn ack(&self) -> Result<(), orchestrator_actors::edges::EdgeError> {
        Ok(())
    }
    async fn nak(
        &self,
        _: std::time::Duration,
    ) -> Result<(), orchestrator_actors::edges::EdgeError> {
        Ok(())
    }
    async fn in_progress(&self) -> Result<(), orchestrator_actors::edges::EdgeError> {
        Ok(())
    }
    async fn reject(&self, reason: &str) -> Result<(), orchestrator_actors::edges::EdgeError> {
        self.0.lock().unwrap().push(reason.to_owned());
        Ok(())
    }
}

#[async_trait::async_trait]
impl orchestrator_actors::edges::JobSource for OneDelivery {
    async fn next(&mut self) -> Option<orchestrator_actors::edges::Delivery> {
        match self.0.take() {
            Some((attempt, rejects)) => Some(orchestrator_actors::edges::Delivery {
                queue: queues::BLOCKS.into(),
                id: "block-9".into(),
                payload: b"9".to_vec(),
                attempt,
                meta: Default::default(),
                ack: Box::new(RecordingAck(rejects)),
            }),
            None => std::future::pending().await,
        }
    }
}

#[actix_rt::test]
async fn an_over_delivered_job_is_dead_lettered_without_a_run_and_says_why() {
    use actix::Actor;
    let rejects = Arc::new(std::sync::Mutex::new(Vec::new()));
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Echo]));
    let source = OneDelivery(Some((5, rejects.clone())));
    let _pool = orchestrator_actors::actors::ProverPool::new(
        config(1, false),
        runner.clone(),
        Box::new(source),
        Arc::new(LocalBus::new()),
    )
    .start();
    for _ in 0..200 {
        if !rejects.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let rejects = rejects.lock().unwrap().clone();
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(runner.calls.load(Ordering::SeqCst), 0, "not run again");
    let reason = &rejects[0];
    assert!(
        reason.contains("delivered 5 times")
            && reason.contains("handed it back at shutdown")
            && reason.contains("logs of the hosts that ran job block-9"),
        "{reason}"
    );
    assert!(!reason.contains("ended without an answer"), "{reason}");
}

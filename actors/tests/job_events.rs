//! What the pool tells the operator's view about each job: the job events
//! on `job_events`, and the proving time that travels beside an output to
//! the completed proof.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use common::pool_harness::*;
use common::{ScriptedRunner, Step, next_within, start_matcher};
use orchestrator_actors::edges::local::LocalBus;
use orchestrator_actors::edges::{JobFailure, Publisher};
use orchestrator_actors::messages::{CompletedProof, Envelope, JobEvent, JobStatus, meta, queues};

async fn next_event(events: &mut orchestrator_actors::edges::local::LocalSource) -> JobEvent {
    let delivery = next_within(events, 10).await;
    serde_json::from_slice(&delivery.payload).expect("a job event")
}

#[actix_rt::test]
async fn a_job_is_queued_proving_then_proved_with_its_time_and_size() {
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Slow(
        Duration::from_millis(50),
    )]));
    let mut h = start(runner, config(1, false));
    let mut events = h.bus.subscribe(&[queues::JOB_EVENTS]);
    announce(&h.bus, [7]).await;

    let output = next_within(&mut h.proofs, 10).await;
    let ms: u64 = output.meta[meta::PROVING_MS].parse().unwrap();
    assert!(ms >= 50, "the binary's time travels with the output: {ms}");

    let statuses: Vec<JobEvent> = vec![
        next_event(&mut events).await,
        next_event(&mut events).await,
        next_event(&mut events).await,
    ];
    let mut seen: Vec<JobStatus> = statuses.iter().map(|e| e.status).collect();
    seen.sort_by_key(|s| *s as u8);
    assert_eq!(
        seen,
        [JobStatus::Queued, JobStatus::Proving, JobStatus::Proved]
    );
    let proved = statuses
        .iter()
        .find(|e| e.status == JobStatus::Proved)
        .unwrap();
    assert_eq!(proved.block, Some(7));
    assert_eq!(proved.pool, "test-prover");
    assert_eq!(proved.attempt, 1);
    assert_eq!(proved.proving_ms, Some(ms));
    assert_eq!(proved.output_bytes, Some(output.payload.len() as u64));
}

#[actix_rt::test]
async fn a_failed_attempt_is_told_with_its_cause() {
    let killed = JobFailure::Exit {
        code: 1,
        stderr: "disk full".into(),
    };
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Fail(killed), Step::Echo]));
    let mut h = start(runner, config(1, false));
    let mut events = h.bus.subscribe(&[queues::JOB_EVENTS]);
    announce(&h.bus, [8]).await;
    next_within(&mut h.proofs, 10).await;

    let mut failed = None;
    let mut proved = None;
    while failed.is_none() || proved.is_none() {
        let event = next_event(&mut events).await;
        match event.status {
            JobStatus::Failed => failed = Some(event),
            JobStatus::Proved => proved = Some(event),
            _ => {}
        }
    }
    let failed = failed.unwrap();
    assert_eq!(failed.attempt, 1);
    assert!(
        failed.error.as_deref().unwrap_or("").contains("disk full"),
        "{failed:?}"
    );
    assert_eq!(proved.unwrap().attempt, 2);
}

#[actix_rt::test]
async fn the_matcher_keeps_the_proving_time_of_the_output() {
    let bus = LocalBus::new();
    let mut completed = bus.subscribe(&[queues::COMPLETED_PROOFS]);
    start_matcher(&bus);

    let measured = r#"{"block":5,"proof":"0xff","prover":"a"}"#;
    let own = r#"{"block":5,"proof":"0xff","prover":"b","proving_ms":42}"#;
    for (id, body) in [("a", measured), ("b", own)] {
        let envelope = Envelope::new(id, body).with_meta(meta::PROVING_MS, 1234);
        bus.publish(queues::BLOCK_PROOFS, envelope).await.unwrap();
    }
    bus.publish(queues::BLOCKS, Envelope::block(5))
        .await
        .unwrap();

    let mut times = Vec::new();
    for _ in 0..2 {
        let delivery = next_within(&mut completed, 10).await;
        let proof: CompletedProof = serde_json::from_slice(&delivery.payload).unwrap();
        times.push((proof.prover, proof.proving_ms));
    }
    times.sort();
    assert_eq!(
        times,
        [("a".to_owned(), Some(1234)), ("b".to_owned(), Some(42))],
        "the host's measurement, unless the prover wrote its own"
    );
}

/// Passes publishes on to the bus, holding the first job event back a
/// while, as a slow round trip to the server would.
struct SlowFirstEvent {
    bus: LocalBus,
    held: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Publisher for SlowFirstEvent {
    async fn publish(
        &self,
        queue: &str,
        message: Envelope,
    ) -> Result<(), orchestrator_actors::edges::EdgeError> {
        if queue == queues::JOB_EVENTS && !self.held.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.bus.publish(queue, message).await
    }
}

#[actix_rt::test]
async fn events_arrive_in_the_order_they_happened() {
    let bus = LocalBus::new();
    let jobs = bus.subscribe(&[queues::BLOCKS]);
    let mut events = bus.subscribe(&[queues::JOB_EVENTS]);
    let publisher = Arc::new(SlowFirstEvent {
        bus: bus.clone(),
        held: false.into(),
    });
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Echo]));
    let _pool = orchestrator_actors::actors::ProverPool::new(
        config(1, false),
        runner,
        Box::new(jobs),
        publisher,
    )
    .start();
    announce(&bus, [3]).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event(&mut events).await.status);
    }
    assert_eq!(
        seen,
        [JobStatus::Queued, JobStatus::Proving, JobStatus::Proved],
        "a slow first publish must not let later events overtake it"
    );
}

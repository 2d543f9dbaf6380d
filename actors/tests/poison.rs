//! Poison messages at the matcher and the step collector: a large payload
//! that is not what the queue carries is dead-lettered with a bounded
//! reason (the dead letter holds the payload once, not twice), no log line
//! quotes the payload, and "dead-lettered" is logged only once the reject
//! succeeded.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Actor;
use async_trait::async_trait;
use common::log_tap::tap_logs;
use common::{assert_quiet, next_within, start_matcher};
use orchestrator_actors::actors::{Inbound, ProofMatcher, StepCollector, pump};
use orchestrator_actors::edges::local::{LocalBus, MemoryMatchStore};
use orchestrator_actors::edges::{AckHandle, Delivery, EdgeError, Publisher};
use orchestrator_actors::messages::{DeadLetter, Envelope, queues};
use orchestrator_actors::shutdown::Shutdown;

/// 600 KB: a JSON string, whose serde error quotes it whole, and plain text.
fn poison() -> [Vec<u8>; 2] {
    let text = "x".repeat(600 * 1024);
    [format!("\"{text}\"").into_bytes(), text.into_bytes()]
}

/// The most a reason or a log line may hold, whatever the payload's size.
const BOUND: usize = 2048;

/// Every event logged on this thread while the guard lives: its message
/// and the total size of its fields.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<(String, usize)>>>);

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let kept = logs.clone();
        let guard = tap_logs(move |event| kept.0.lock().unwrap().push((event.message, event.size)));
        (logs, guard)
    }

    fn messages(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    }

    fn largest(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }
}

async fn dead_letters_bounded(queue: &str, start: impl FnOnce(&LocalBus)) {
    let (logs, _guard) = Logs::capture();
    let bus = LocalBus::new();
    let mut dead = bus.subscribe(&[queues::DEAD_LETTER]);
    start(&bus);
    for (i, payload) in poison().into_iter().enumerate() {
        bus.publish(queue, Envelope::new(format!("poison-{i}"), payload.clone()))
            .await
            .unwrap();
        let letter = next_within(&mut dead, 10).await;
        let letter: DeadLetter = serde_json::from_slice(&letter.payload).unwrap();
        assert_eq!(letter.payload.as_bytes(), payload, "the payload, once");
        assert!(
            letter.error.len() <= BOUND,
            "a reason of {} bytes: {}…",
            letter.error.len(),
            &letter.error[..300]
        );
    }
    assert_quiet(&mut dead).await;
    assert!(
        logs.largest() <= BOUND,
        "a log line of {} bytes quotes the payload",
        logs.largest()
    );
}

#[actix_rt::test]
async fn matcher_dead_letters_a_large_poison_message_with_a_bounded_reason() {
    dead_letters_bounded(queues::BLOCKS, start_matcher).await;
}

#[actix_rt::test]
async fn matcher_dead_letters_a_large_poison_proof_with_a_bounded_reason() {
    dead_letters_bounded(queues::BLOCK_PROOFS, start_matcher).await;
}

#[actix_rt::test]
async fn collector_dead_letters_a_large_poison_step_with_a_bounded_reason() {
    dead_letters_bounded(queues::STEP_PROOFS, |bus| {
        let input = bus.subscribe(&[queues::STEP_PROOFS]);
        let collector = StepCollector::new(2, Arc::new(bus.clone())).start();
        pump(Box::new(input), collector.recipient(), &Shutdown::new());
    })
    .await;
}

/// An ack handle whose reject fails, as a dead-letter publish the server
/// refuses does; it counts the rejects tried.
#[derive(Clone, Default)]
struct RefusingAck(Arc<Mutex<usize>>);

#[async_trait]
impl AckHandle for RefusingAck {
    async fn ack(&self) -> Result<(), EdgeError> {
        Ok(())
    }
    async fn nak(&self, _: Duration) -> Result<(), EdgeError> {
        Ok(())
    }
    async fn in_progress(&self) -> Result<(), EdgeError> {
        Ok(())
    }
    async fn reject(&self, _: &str) -> Result<(), EdgeError> {
        *self.0.lock().unwrap() += 1;
        Err(EdgeError::Rejected {
            queue: queues::DEAD_LETTER.into(),
            id: "dead".into(),
            reason: "too large".into(),
        })
    }
}

fn delivery(queue: &str, ack: RefusingAck) -> Delivery {
    Delivery {
        queue: queue.into(),
        id: "poison".into(),
        payload: b"not json".to_vec(),
        attempt: 1,
        meta: Default::default(),
        ack: Box::new(ack),
    }
}

#[actix_rt::test]
async fn a_failed_dead_letter_is_not_logged_as_dead_lettered() {
    let (logs, _guard) = Logs::capture();
    let bus = LocalBus::new();
    let matcher = ProofMatcher::new(
        Arc::new(MemoryMatchStore::default()),
        Arc::new(bus.clone()),
        vec![],
    )
    .start();
    let collector = StepCollector::new(2, Arc::new(bus)).start();
    let ack = RefusingAck::default();
    matcher
        .send(Inbound(delivery(queues::BLOCKS, ack.clone())))
        .await
        .unwrap();
    collector
        .send(Inbound(delivery(queues::STEP_PROOFS, ack.clone())))
        .await
        .unwrap();
    assert_eq!(*ack.0.lock().unwrap(), 2, "both tried to dead-letter");
    let messages = logs.messages();
    assert!(
        !messages.iter().any(|m| m.contains(" dead-lettered")),
        "logged as dead-lettered although the reject failed: {messages:?}"
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.starts_with("could not dead-letter"))
            .count(),
        2,
        "{messages:?}"
    );
}

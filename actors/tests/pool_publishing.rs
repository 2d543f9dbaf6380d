//! A proved job's publish and ack run beside the next job: the worker is
//! free once its prover exits, and a redelivery of a job that is still being
//! published (the server redelivers a job whose ack is late, e.g. during an
//! outage) is acked when the publish ends, never proved twice.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Actor;
use common::pool_harness::*;
use common::{ScriptedRunner, Step, next_within};
use orchestrator_actors::actors::ProverPool;
use orchestrator_actors::edges::local::LocalBus;
use orchestrator_actors::edges::{AckHandle, Delivery, EdgeError, JobSource, Publisher};
use orchestrator_actors::messages::{Envelope, Meta, queues};
use tokio::sync::Semaphore;

/// Holds every publish of an output until the test opens the gate; job
/// events pass.
struct GatedPublisher {
    bus: LocalBus,
    gate: Arc<Semaphore>,
}

#[async_trait::async_trait]
impl Publisher for GatedPublisher {
    async fn publish(&self, queue: &str, message: Envelope) -> Result<(), EdgeError> {
        if queue == OUTPUT {
            drop(self.gate.acquire().await.expect("gate open"));
        }
        self.bus.publish(queue, message).await
    }
}

/// Records the acks of each delivery as "id#attempt".
struct LoggedAck {
    name: String,
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl AckHandle for LoggedAck {
    async fn ack(&self) -> Result<(), EdgeError> {
        self.log.lock().unwrap().push(format!("ack {}", self.name));
        Ok(())
    }
    async fn nak(&self, _delay: Duration) -> Result<(), EdgeError> {
        self.log.lock().unwrap().push(format!("nak {}", self.name));
        Ok(())
    }
    async fn in_progress(&self) -> Result<(), EdgeError> {
        Ok(())
    }
    async fn reject(&self, _reason: &str) -> Result<(), EdgeError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("reject {}", self.name));
        Ok(())
    }
}

/// Hands out the listed (block, attempt) deliveries in order, then waits.
struct Script {
    deliveries: Vec<(u64, u32)>,
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl JobSource for Script {
    async fn next(&mut self) -> Option<Delivery> {
        if self.deliveries.is_empty() {
            return std::future::pending().await;
        }
        let (block, attempt) = self.deliveries.remove(0);
        let id = format!("block-{block}");
        Some(Delivery {
            queue: queues::BLOCKS.into(),
            ack: Box::new(LoggedAck {
                name: format!("{id}#{attempt}"),
                log: self.log.clone(),
            }),
            id,
            payload: block.to_string().into_bytes(),
            attempt,
            meta: Meta::new(),
        })
    }
}

#[actix_rt::test]
async fn the_worker_proves_on_while_a_proof_is_published_and_a_redelivery_meanwhile_is_acked_not_proved()
 {
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Echo]));
    let bus = LocalBus::new();
    let mut proofs = bus.subscribe(&[OUTPUT]);
    let gate = Arc::new(Semaphore::new(0));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let source = Script {
        // Block 1, its redelivery while its proof is held at the gate, then
        // block 2.
        deliveries: vec![(1, 1), (1, 2), (2, 1)],
        log: acks.clone(),
    };
    let publisher = GatedPublisher {
        bus: bus.clone(),
        gate: gate.clone(),
    };
    let pool = ProverPool::new(
        config(1, false),
        runner.clone(),
        Box::new(source),
        Arc::new(publisher),
    )
    .start();

    // One worker: block 2 can only run if the worker was freed while block
    // 1's proof waits at the gate; and it is taken after block 1's
    // redelivery, so that redelivery was handled by then.
    let calls = runner.clone();
    await_stats(
        &pool,
        10,
        "block 2 proved while block 1 is published",
        |s| calls.calls.load(Ordering::SeqCst) >= 2 && s.publishing >= 1,
    )
    .await;
    assert!(
        acks.lock().unwrap().is_empty(),
        "acked before the proof was published: {:?}",
        acks.lock().unwrap()
    );

    gate.add_permits(100);
    let mut published = vec![
        next_within(&mut proofs, 10).await.payload,
        next_within(&mut proofs, 10).await.payload,
    ];
    published.sort();
    assert_eq!(published, [b"1".to_vec(), b"2".to_vec()]);
    await_stats(&pool, 10, "both jobs settled", |s| {
        s.proved == 2 && s.publishing == 0
    })
    .await;
    let acks_now = || {
        let mut acks = acks.lock().unwrap().clone();
        acks.sort();
        acks
    };
    await_stats(&pool, 10, "the redelivery acked", |_| acks_now().len() == 3).await;
    assert_eq!(
        acks_now(),
        ["ack block-1#1", "ack block-1#2", "ack block-2#1"]
    );
    assert_eq!(
        runner.calls.load(Ordering::SeqCst),
        2,
        "block 1 was proved again"
    );
}

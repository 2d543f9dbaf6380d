//! A proved job's publish and ack run beside the next job: the worker is
//! free once its prover exits. The server redelivers a job whose ack is
//! late (e.g. NATS down longer than the ack wait); a redelivery of a job
//! that is running or being published here, or was just proved, is settled
//! with it, never proved twice.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Actor;
use common::pool_harness::*;
use common::{ScriptedRunner, Step, next_within};
use orchestrator_actors::actors::ProverPool;
use orchestrator_actors::edges::local::{LocalBus, LocalSource};
use orchestrator_actors::edges::{
    AckHandle, Delivery, EdgeError, Job, JobFailure, JobRunner, JobSource, Publisher,
};
use orchestrator_actors::messages::{Envelope, Meta, queues};
use tokio::sync::{Semaphore, mpsc};

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

/// Hands out the (block, attempt) deliveries the test sends, in order.
struct Script {
    deliveries: mpsc::UnboundedReceiver<(u64, u32)>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Script {
    fn new(log: &Arc<Mutex<Vec<String>>>) -> (Self, mpsc::UnboundedSender<(u64, u32)>) {
        let (send, deliveries) = mpsc::unbounded_channel();
        let log = log.clone();
        (Self { deliveries, log }, send)
    }
}

#[async_trait::async_trait]
impl JobSource for Script {
    async fn next(&mut self) -> Option<Delivery> {
        let Some((block, attempt)) = self.deliveries.recv().await else {
            return std::future::pending().await;
        };
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

/// A pool on a scripted source: the deliveries the test sends, the acks the
/// pool gives ("ack block-1#2"), the outputs it publishes.
struct Rig {
    pool: actix::Addr<ProverPool>,
    deliveries: mpsc::UnboundedSender<(u64, u32)>,
    acks: Arc<Mutex<Vec<String>>>,
    proofs: LocalSource,
}

impl Rig {
    /// `workers` workers running `runner`; outputs go to an in-process bus
    /// through the publisher `publisher` makes of it.
    fn start(
        workers: usize,
        runner: Arc<dyn JobRunner>,
        publisher: impl FnOnce(LocalBus) -> Arc<dyn Publisher>,
    ) -> Self {
        let bus = LocalBus::new();
        let proofs = bus.subscribe(&[OUTPUT]);
        let acks = Arc::default();
        let (source, deliveries) = Script::new(&acks);
        let pool = ProverPool::new(
            config(workers, false),
            runner,
            Box::new(source),
            publisher(bus),
        )
        .start();
        Self {
            pool,
            deliveries,
            acks,
            proofs,
        }
    }

    /// Hands these (block, attempt) deliveries to the pool, in order.
    fn send(&self, deliveries: &[(u64, u32)]) {
        for delivery in deliveries {
            self.deliveries.send(*delivery).unwrap();
        }
    }

    /// The acks so far, in the order given.
    fn acks(&self) -> Vec<String> {
        self.acks.lock().unwrap().clone()
    }

    /// The acks so far, sorted.
    fn sorted_acks(&self) -> Vec<String> {
        let mut acks = self.acks();
        acks.sort();
        acks
    }

    /// Blocks 1 and 2 are published, and block 1's delivery, its
    /// redelivery and block 2's delivery all acked.
    async fn both_proved_and_block_1_acked_twice(&mut self) {
        let mut published = vec![
            next_within(&mut self.proofs, 10).await.payload,
            next_within(&mut self.proofs, 10).await.payload,
        ];
        published.sort();
        assert_eq!(published, [b"1".to_vec(), b"2".to_vec()]);
        await_stats(&self.pool, 10, "all three deliveries acked", |_| {
            self.acks().len() == 3
        })
        .await;
        assert_eq!(
            self.sorted_acks(),
            ["ack block-1#1", "ack block-1#2", "ack block-2#1"]
        );
    }
}

fn to_bus(bus: LocalBus) -> Arc<dyn Publisher> {
    Arc::new(bus)
}

#[actix_rt::test]
async fn the_worker_proves_on_while_a_proof_is_published_and_a_redelivery_meanwhile_is_acked_not_proved()
 {
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Echo]));
    let gate = Arc::new(Semaphore::new(0));
    let held = gate.clone();
    let mut rig = Rig::start(1, runner.clone(), |bus| {
        Arc::new(GatedPublisher { bus, gate: held })
    });
    // Block 1, its redelivery while its proof is held at the gate, then
    // block 2.
    rig.send(&[(1, 1), (1, 2), (2, 1)]);

    // One worker: block 2 can only run if the worker was freed while block
    // 1's proof waits at the gate; and it is taken after block 1's
    // redelivery, so that redelivery was handled by then.
    let calls = runner.clone();
    await_stats(
        &rig.pool,
        10,
        "block 2 proved while block 1 is published",
        |s| calls.calls.load(Ordering::SeqCst) >= 2 && s.publishing >= 1,
    )
    .await;
    assert!(
        rig.acks().is_empty(),
        "acked before the proof was published: {:?}",
        rig.acks()
    );

    gate.add_permits(100);
    rig.both_proved_and_block_1_acked_twice().await;
    await_stats(&rig.pool, 10, "both jobs settled", |s| {
        s.proved == 2 && s.publishing == 0
    })
    .await;
    assert_eq!(
        runner.calls.load(Ordering::SeqCst),
        2,
        "block 1 was proved again"
    );
}

/// The server redelivers a job whose ack came late; that redelivery can
/// reach the pool just after the publish and ack ended (seen in a fault test
/// with NATS down 40 s). It is acked, not proved again; a new message (first
/// attempt) with the same id, a deliberate resubmission, is proved.
#[actix_rt::test]
async fn a_redelivery_arriving_after_the_proof_was_published_and_acked_is_acked_not_proved() {
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Echo]));
    let mut rig = Rig::start(1, runner.clone(), to_bus);

    rig.send(&[(1, 1)]);
    assert_eq!(next_within(&mut rig.proofs, 10).await.payload, b"1");
    await_stats(&rig.pool, 10, "block 1 proved and acked", |s| {
        s.proved == 1 && s.publishing == 0 && rig.acks() == ["ack block-1#1"]
    })
    .await;

    // Its late redelivery, then block 2: one worker, so block 2 is proved
    // only after the redelivery was handled.
    rig.send(&[(1, 2), (2, 1)]);
    assert_eq!(next_within(&mut rig.proofs, 10).await.payload, b"2");
    await_stats(&rig.pool, 10, "block 2 proved, the redelivery acked", |s| {
        s.proved == 2 && rig.acks().len() == 3
    })
    .await;
    assert_eq!(
        rig.acks(),
        ["ack block-1#1", "ack block-1#2", "ack block-2#1"],
        "the redelivery of block 1 was not acked before block 2"
    );
    assert_eq!(
        runner.calls.load(Ordering::SeqCst),
        2,
        "block 1 was proved again"
    );

    // Its output has the same message id, so the bus drops it; the count
    // of proved jobs shows it ran.
    rig.send(&[(1, 1)]);
    await_stats(&rig.pool, 10, "block 1 resubmitted and proved", |s| {
        s.proved == 3
    })
    .await;
    assert_eq!(runner.calls.load(Ordering::SeqCst), 3);
}

/// Echoes each input once the test lets it finish (the first one fails if
/// `fail_first`); records which started.
struct GatedRunner {
    started: Mutex<Vec<String>>,
    gate: Semaphore,
    fail_first: bool,
}

impl GatedRunner {
    fn new(fail_first: bool) -> Arc<Self> {
        Arc::new(Self {
            started: Mutex::default(),
            gate: Semaphore::new(0),
            fail_first,
        })
    }

    fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl JobRunner for GatedRunner {
    async fn run(&self, job: &Job) -> Result<Vec<u8>, JobFailure> {
        let input = String::from_utf8_lossy(&job.input).into_owned();
        let first = {
            let mut started = self.started.lock().unwrap();
            started.push(input);
            started.len() == 1
        };
        self.gate.acquire().await.expect("gate open").forget();
        if first && self.fail_first {
            return Err(JobFailure::Exit {
                code: 1,
                stderr: String::new(),
            });
        }
        Ok(job.input.to_vec())
    }
}

/// Starts block 1 on one of two workers, then hands over its redelivery
/// and block 2; returns once block 2 runs on the other worker, which it
/// can only do once the redelivery was handled without taking that worker.
async fn block_1_running_and_redelivered(runner: &Arc<GatedRunner>) -> Rig {
    let rig = Rig::start(2, runner.clone(), to_bus);
    rig.send(&[(1, 1)]);
    await_stats(&rig.pool, 10, "block 1 running", |_| {
        runner.started() == ["1"]
    })
    .await;
    rig.send(&[(1, 2), (2, 1)]);
    await_stats(&rig.pool, 10, "block 2 running", |_| {
        runner.started().len() == 2
    })
    .await;
    rig
}

/// NATS down longer than the ack wait while a prover runs: the server
/// redelivers the job, and this host has an idle worker. The redelivery
/// waits for the running job and is acked with it; no second GPU proves the
/// same block.
#[actix_rt::test]
async fn a_redelivery_of_a_running_job_waits_for_it_and_is_acked_with_it() {
    let runner = GatedRunner::new(false);
    let mut rig = block_1_running_and_redelivered(&runner).await;
    assert_eq!(runner.started(), ["1", "2"], "block 1 ran twice at once");

    runner.gate.add_permits(2);
    rig.both_proved_and_block_1_acked_twice().await;
}

/// A redelivery that waited for a running job that then failed is left to
/// the server (the job is retried by its schedule), not acked.
#[actix_rt::test]
async fn a_redelivery_that_waited_for_a_failed_attempt_is_not_acked() {
    let runner = GatedRunner::new(true);
    let mut rig = block_1_running_and_redelivered(&runner).await;
    runner.gate.add_permits(2);
    assert_eq!(next_within(&mut rig.proofs, 10).await.payload, b"2");
    await_stats(&rig.pool, 10, "block 1 failed, block 2 proved", |s| {
        s.retried == 1 && s.proved == 1 && rig.acks().len() == 2
    })
    .await;
    assert_eq!(rig.sorted_acks(), ["ack block-2#1", "nak block-1#1"]);
}

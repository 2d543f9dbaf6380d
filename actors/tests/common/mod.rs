//! Fakes and helpers for actor-level tests: no network, no real prover.
#![allow(dead_code)]

pub mod log_tap;
pub mod pool_harness;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_actors::edges::local::LocalSource;
use orchestrator_actors::edges::{Delivery, Job, JobFailure, JobRunner, JobSource};

/// What the scripted runner does on one call.
#[derive(Clone)]
pub enum Step {
    Output(&'static str),
    /// Echo the input back as output.
    Echo,
    Fail(JobFailure),
    Panic,
    /// Echo after sleeping.
    Slow(Duration),
}

/// A runner whose answers are scripted; the last step repeats forever.
pub struct ScriptedRunner {
    script: Mutex<VecDeque<Step>>,
    pub calls: AtomicUsize,
    running: AtomicUsize,
    pub max_running: AtomicUsize,
}

impl ScriptedRunner {
    pub fn new(script: Vec<Step>) -> Self {
        Self {
            script: Mutex::new(script.into()),
            calls: 0.into(),
            running: 0.into(),
            max_running: 0.into(),
        }
    }
}

#[async_trait]
impl JobRunner for ScriptedRunner {
    async fn run(&self, job: &Job) -> Result<Vec<u8>, JobFailure> {
        let input = &job.input;
        self.calls.fetch_add(1, Ordering::SeqCst);
        let step = {
            let mut script = self.script.lock().unwrap();
            if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                script[0].clone()
            }
        };
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let result = match step {
            Step::Output(out) => Ok(out.as_bytes().to_vec()),
            Step::Echo => Ok(input.to_vec()),
            Step::Fail(failure) => Err(failure),
            Step::Panic => panic!("scripted worker panic"),
            Step::Slow(delay) => {
                tokio::time::sleep(delay).await;
                Ok(input.to_vec())
            }
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

/// The next delivery of `source`, failing the test after `secs` seconds.
pub async fn next_within(source: &mut LocalSource, secs: u64) -> Delivery {
    tokio::time::timeout(Duration::from_secs(secs), source.next())
        .await
        .expect("timed out waiting for a message")
        .expect("source closed")
}

/// Asserts nothing arrives on `source` for a short while.
pub async fn assert_quiet(source: &mut LocalSource) {
    let got = tokio::time::timeout(Duration::from_millis(300), source.next()).await;
    assert!(got.is_err(), "unexpected message: {:?}", got.unwrap());
}

/// A proof matcher reading `blocks` and `block_proofs` on `bus`, with its
/// state in memory, publishing to `bus`.
pub fn start_matcher(bus: &orchestrator_actors::edges::local::LocalBus) {
    use actix::Actor;
    use orchestrator_actors::actors::{ProofMatcher, pump};
    use orchestrator_actors::edges::local::MemoryMatchStore;
    use orchestrator_actors::messages::queues;

    let input = bus.subscribe(&[queues::BLOCKS, queues::BLOCK_PROOFS]);
    let matcher = ProofMatcher::new(
        std::sync::Arc::new(MemoryMatchStore::default()),
        std::sync::Arc::new(bus.clone()),
        vec![],
    )
    .start();
    pump(
        Box::new(input),
        matcher.recipient(),
        &orchestrator_actors::shutdown::Shutdown::new(),
    );
}

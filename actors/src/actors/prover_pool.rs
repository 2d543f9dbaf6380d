//! Owns the prover workers of one host: hands each job to an idle worker,
//! retries failed jobs, replaces workers that die.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::prover_worker::{ProverWorker, RunJob};
use crate::backoff::Backoff;
use crate::edges::{AckHandle, Delivery, JobFailure, JobRunner, JobSource, Publisher};
use serde_json::value::RawValue;

use crate::messages::{BlockProof, Envelope, StepProof, queues};

/// Where the output of a job from one input queue goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The queue jobs come from.
    pub input: String,
    /// The queue outputs go to.
    pub output: String,
    /// The output is a JSON array whose elements are published one by one
    /// (a partitioner's steps).
    pub multiple_output: bool,
}

/// How the pool runs and retries jobs.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Name of this prover group; prefixes output message ids so distinct
    /// provers' proofs of one block never deduplicate each other.
    pub name: String,
    /// Number of workers, i.e. jobs run at once.
    pub workers: usize,
    /// Attempts per job before it goes to the dead-letter queue.
    pub max_attempts: u32,
    /// Delay before a failed job's next attempt.
    pub retry: Backoff,
    /// Delay before replacing a worker that keeps dying.
    pub restart: Backoff,
    /// How often a running job tells its source it is still alive.
    pub progress_interval: Duration,
    /// Input queue → output queue.
    pub routes: Vec<Route>,
}

/// Counters describing the pool, for tests, logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, MessageResponse)]
pub struct WorkerStats {
    /// Workers currently alive.
    pub live: usize,
    /// Workers running a job.
    pub busy: usize,
    /// Workers replaced after dying.
    pub restarts: u64,
    /// Jobs that succeeded and were published.
    pub proved: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Jobs that failed their last attempt.
    pub failed: u64,
}

/// Asks the pool for its [`WorkerStats`].
#[derive(Debug, Message)]
#[rtype(result = "WorkerStats")]
pub struct PoolStatus;

/// A job pulled from the source, with the permit that bounds jobs in flight.
#[derive(Message)]
#[rtype(result = "()")]
struct Dispatch {
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
}

/// How a job ended, as the pool needs to know it.
enum Outcome {
    Proved,
    Retried,
    Failed,
}

struct Slot {
    worker: Option<Addr<ProverWorker>>,
    busy: bool,
    /// Deaths since the last job that succeeded on this slot.
    deaths: u32,
}

/// Supervises `workers` [`ProverWorker`]s on this host.
///
/// It pulls a job from its source only when a worker is free, so a busy host
/// leaves work on the queue for others. A failed job is nak'ed with backoff
/// and, after `max_attempts`, rejected to the dead-letter queue. A worker that
/// panicked or retired is replaced, with backoff when it keeps dying.
pub struct ProverPool {
    config: Arc<PoolConfig>,
    runner: Arc<dyn JobRunner>,
    publisher: Arc<dyn Publisher>,
    source: Option<Box<dyn JobSource>>,
    slots: Vec<Slot>,
    waiting: VecDeque<Dispatch>,
    stats: WorkerStats,
    /// One permit per live, idle worker: the feeder pulls a job only with a
    /// permit, so no job waits here (unacknowledged) for a worker that is
    /// still being replaced while another host could prove it.
    free_workers: Arc<Semaphore>,
}

impl ProverPool {
    /// A pool running jobs from `source` with `runner`, publishing outputs.
    pub fn new(
        config: PoolConfig,
        runner: Arc<dyn JobRunner>,
        source: Box<dyn JobSource>,
        publisher: Arc<dyn Publisher>,
    ) -> Self {
        let workers = config.workers.max(1);
        Self {
            config: Arc::new(config),
            runner,
            publisher,
            source: Some(source),
            slots: (0..workers)
                .map(|_| Slot {
                    worker: None,
                    busy: false,
                    deaths: 0,
                })
                .collect(),
            waiting: VecDeque::new(),
            stats: WorkerStats::default(),
            free_workers: Arc::new(Semaphore::new(workers)),
        }
    }

    fn spawn_worker(&mut self, slot: usize) {
        self.slots[slot].worker = Some(ProverWorker::new(slot, self.runner.clone()).start());
    }

    /// Replaces the worker of `slot` after a backoff. Its permit was taken
    /// out of circulation by the caller and comes back with the replacement.
    fn worker_died(&mut self, slot: usize, ctx: &mut Context<Self>) {
        let state = &mut self.slots[slot];
        state.worker = None;
        state.deaths += 1;
        self.stats.restarts += 1;
        let delay = self.config.restart.delay(state.deaths);
        tracing::warn!(slot, deaths = state.deaths, restart_in = ?delay, "prover worker died; replacing it");
        ctx.run_later(delay, move |pool, ctx| {
            pool.spawn_worker(slot);
            pool.free_workers.add_permits(1);
            pool.dispatch_waiting(ctx);
        });
    }

    fn dispatch_waiting(&mut self, ctx: &mut Context<Self>) {
        while let Some(slot) = self.idle_slot() {
            let Some(job) = self.waiting.pop_front() else {
                return;
            };
            self.start(slot, job, ctx);
        }
    }

    fn idle_slot(&self) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| !s.busy && s.worker.as_ref().is_some_and(Addr::connected))
    }

    fn start(&mut self, slot: usize, job: Dispatch, ctx: &mut Context<Self>) {
        let Dispatch { delivery, permit } = job;
        let worker = self.slots[slot]
            .worker
            .clone()
            .expect("idle slot has a worker");
        self.slots[slot].busy = true;
        let work = settle(
            worker,
            delivery,
            self.config.clone(),
            self.publisher.clone(),
        );
        ctx.spawn(
            work.into_actor(self)
                .map(move |(outcome, retire), pool, ctx| {
                    if retire {
                        permit.forget();
                    } else {
                        drop(permit);
                    }
                    pool.slots[slot].busy = false;
                    match outcome {
                        Outcome::Proved => {
                            pool.stats.proved += 1;
                            pool.slots[slot].deaths = 0;
                        }
                        Outcome::Retried => pool.stats.retried += 1,
                        Outcome::Failed => pool.stats.failed += 1,
                    }
                    if retire {
                        pool.worker_died(slot, ctx);
                    }
                    pool.dispatch_waiting(ctx);
                }),
        );
    }

    /// Notices workers that died while idle (a mailbox closes on panic).
    fn check_workers(&mut self, ctx: &mut Context<Self>) {
        let dead: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                !self.slots[i].busy
                    && self.slots[i]
                        .worker
                        .as_ref()
                        .is_some_and(|w| !w.connected())
            })
            .collect();
        for slot in dead {
            // An idle slot's permit is free; take it out until the replacement.
            match self.free_workers.clone().try_acquire_owned() {
                Ok(permit) => permit.forget(),
                Err(_) => continue, // the feeder holds it; the next check will see the slot again
            }
            self.worker_died(slot, ctx);
        }
    }
}

impl Actor for ProverPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for slot in 0..self.slots.len() {
            self.spawn_worker(slot);
        }
        ctx.run_interval(Duration::from_secs(1), |pool, ctx| pool.check_workers(ctx));
        let mut source = self.source.take().expect("pool started once");
        let free_workers = self.free_workers.clone();
        let pool = ctx.address();
        actix::spawn(async move {
            loop {
                let Ok(permit) = free_workers.clone().acquire_owned().await else {
                    break;
                };
                let Some(delivery) = source.next().await else {
                    break;
                };
                if pool.send(Dispatch { delivery, permit }).await.is_err() {
                    break;
                }
            }
        });
        tracing::info!(pool = %self.config.name, workers = self.slots.len(), "prover pool started");
    }
}

impl Handler<Dispatch> for ProverPool {
    type Result = ();

    fn handle(&mut self, job: Dispatch, ctx: &mut Self::Context) {
        self.waiting.push_back(job);
        self.dispatch_waiting(ctx);
    }
}

impl Handler<PoolStatus> for ProverPool {
    type Result = WorkerStats;

    fn handle(&mut self, _: PoolStatus, _ctx: &mut Self::Context) -> WorkerStats {
        WorkerStats {
            live: self
                .slots
                .iter()
                .filter(|s| s.worker.as_ref().is_some_and(Addr::connected))
                .count(),
            busy: self.slots.iter().filter(|s| s.busy).count(),
            ..self.stats.clone()
        }
    }
}

/// Runs one delivery on `worker` and settles it at its source. Returns how it
/// ended and whether the worker must be replaced.
async fn settle(
    worker: Addr<ProverWorker>,
    delivery: Delivery,
    config: Arc<PoolConfig>,
    publisher: Arc<dyn Publisher>,
) -> (Outcome, bool) {
    let Some(route) = config.routes.iter().find(|r| r.input == delivery.queue) else {
        let reason = format!("no route for queue {}", delivery.queue);
        return (reject(&delivery, &reason).await, false);
    };
    if delivery.attempt > config.max_attempts {
        // Only a crash of this process mid-job gets a message here: do not
        // let a message that kills its prover's host loop forever.
        let reason = format!(
            "delivered {} times, more than the {} attempts allowed; earlier attempts ended without an answer",
            delivery.attempt, config.max_attempts
        );
        return (reject(&delivery, &reason).await, false);
    }
    let started = Instant::now();
    let run = worker.send(RunJob {
        id: delivery.id.clone(),
        input: delivery.payload.clone(),
    });
    let answer = keep_alive(run, delivery.ack.as_ref(), config.progress_interval).await;
    let result = answer.unwrap_or(Err(JobFailure::WorkerLost));
    let retire = result
        .as_ref()
        .err()
        .is_some_and(JobFailure::needs_new_worker);
    let result = result.and_then(|output| outputs(&config.name, &delivery, route, output));
    let envelopes = match result {
        Ok(envelopes) => envelopes,
        Err(failure) => return (retry_or_reject(&delivery, &failure, &config).await, retire),
    };
    for envelope in envelopes {
        if let Err(error) = publisher.publish(&route.output, envelope).await {
            tracing::warn!(job = %delivery.id, %error, "could not publish the job's output; it will run again");
            let _ = delivery.ack.nak(config.retry.delay(delivery.attempt)).await;
            return (Outcome::Retried, retire);
        }
    }
    if let Err(error) = delivery.ack.ack().await {
        tracing::warn!(job = %delivery.id, %error, "output published but ack failed; a redelivery will be deduplicated");
    }
    tracing::info!(job = %delivery.id, queue = %delivery.queue, attempt = delivery.attempt, seconds = started.elapsed().as_secs_f64(), "job done");
    (Outcome::Proved, retire)
}

/// Awaits `work`, telling the source every `every` that the job is alive.
async fn keep_alive<F: Future>(work: F, ack: &dyn AckHandle, every: Duration) -> F::Output {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = ticker.tick() => {
                if let Err(error) = ack.in_progress().await {
                    tracing::warn!(%error, "could not send an in-progress ack");
                }
            }
        }
    }
}

/// The messages a job's output becomes: one, or one per array element, each
/// passed on byte for byte. Outputs bound for the proof queues must have the
/// shape the next consumer reads, or the job fails here and is retried
/// instead of being dead-lettered downstream.
fn outputs(
    pool: &str,
    delivery: &Delivery,
    route: &Route,
    output: Vec<u8>,
) -> Result<Vec<Envelope>, JobFailure> {
    let parts: Vec<Vec<u8>> = if route.multiple_output {
        let items: Vec<&RawValue> =
            serde_json::from_slice(&output).map_err(|e| JobFailure::InvalidOutput {
                reason: format!(
                    "multiple output is on for {}, so the output must be a JSON array ({e})",
                    route.input
                ),
            })?;
        items
            .iter()
            .map(|item| item.get().as_bytes().to_vec())
            .collect()
    } else {
        vec![output]
    };
    for part in &parts {
        check_shape(&route.output, part)?;
    }
    let single = parts.len() == 1 && !route.multiple_output;
    Ok(parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let id = if single {
                format!("{pool}:{}", delivery.id)
            } else {
                format!("{pool}:{}:{i}", delivery.id)
            };
            Envelope::new(id, part)
        })
        .collect())
}

/// Checks that `payload` is what consumers of `queue` expect, for the
/// queues whose consumers this project knows.
fn check_shape(queue: &str, payload: &[u8]) -> Result<(), JobFailure> {
    let parsed = match queue {
        queues::BLOCK_PROOFS => serde_json::from_slice::<BlockProof>(payload).map(drop),
        queues::STEP_PROOFS => serde_json::from_slice::<StepProof>(payload).map(drop),
        _ => return Ok(()),
    };
    parsed.map_err(|e| JobFailure::InvalidOutput {
        reason: format!("not what {queue} expects ({e}); see the binary contract in README.md"),
    })
}

async fn retry_or_reject(
    delivery: &Delivery,
    failure: &JobFailure,
    config: &PoolConfig,
) -> Outcome {
    if delivery.attempt >= config.max_attempts {
        let reason = format!(
            "failed after {} attempt{}: {failure}",
            delivery.attempt,
            if delivery.attempt == 1 { "" } else { "s" }
        );
        return reject(delivery, &reason).await;
    }
    let delay = config.retry.delay(delivery.attempt);
    tracing::warn!(job = %delivery.id, attempt = delivery.attempt, max_attempts = config.max_attempts, retry_in = ?delay, %failure, "job failed; retrying");
    if let Err(error) = delivery.ack.nak(delay).await {
        tracing::warn!(job = %delivery.id, %error, "nak failed; the source will redeliver after its ack timeout");
    }
    Outcome::Retried
}

async fn reject(delivery: &Delivery, reason: &str) -> Outcome {
    tracing::error!(job = %delivery.id, queue = %delivery.queue, reason, "job failed for good; sent to the dead-letter queue");
    if let Err(error) = delivery.ack.reject(reason).await {
        tracing::error!(job = %delivery.id, %error, "could not dead-letter the job");
    }
    Outcome::Failed
}

//! Owns the prover workers of one host: hands each job to an idle worker,
//! retries failed jobs, replaces workers that die.

mod intake;
mod job;
mod redeliveries;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::intake::Intake;
use self::job::{Outcome, Publish, Ran};
use self::redeliveries::{Arrival, JobKey, Redeliveries};
use super::prover_worker::ProverWorker;
use crate::backoff::Backoff;
use crate::edges::{Delivery, JobRunner, JobSource, Publisher};
use crate::metrics::{self, JobEnd};
use crate::shutdown::{Lifeline, Shutdown};

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
    /// Number of workers, i.e. jobs run at once; ignored when `gpus` is set.
    pub workers: usize,
    /// One worker per listed device; each worker's prover sees only its
    /// own device, so two jobs never share a GPU.
    pub gpus: Vec<String>,
    /// Attempts per job before it goes to the dead-letter queue.
    pub max_attempts: u32,
    /// Delay before a failed job's next attempt.
    pub retry: Backoff,
    /// After jobs fail on this host, take no new job for a while (longer
    /// with each failure in a row, reset by a success), so that on a shared
    /// queue a sick host (full disk, broken GPU), which is always idle
    /// first, does not win every redelivery and dead-letter the queue while
    /// healthy hosts could prove it. Pointless with no other host.
    pub pause_after_failure: bool,
    /// Delay before replacing a worker that keeps dying.
    pub restart: Backoff,
    /// How often a running job tells its source it is still alive.
    pub progress_interval: Duration,
    /// Input queue → output queue.
    pub routes: Vec<Route>,
    /// With `--backlog newest`: a job whose block is older than this when
    /// it is taken is acked unproved and reported skipped. `None`: prove all.
    pub max_age: Option<Duration>,
}

/// Counters describing the pool, for tests, logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, MessageResponse)]
pub struct WorkerStats {
    /// Workers currently alive.
    pub live: usize,
    /// Workers running a job.
    pub busy: usize,
    /// Proved jobs whose outputs are being published and which are not yet
    /// acked; their workers are already free.
    pub publishing: usize,
    /// Workers replaced after dying.
    pub restarts: u64,
    /// Jobs that succeeded and were published.
    pub proved: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Jobs that failed their last attempt, or failed for good.
    pub failed: u64,
    /// Jobs handed back to the queue because this process is stopping.
    pub handed_back: u64,
    /// Jobs acked unproved as too old (`--backlog newest`).
    pub skipped: u64,
    /// Publishes of a proved output that failed and were retried.
    pub publish_retries: u64,
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

struct Slot {
    worker: Option<Addr<ProverWorker>>,
    /// The thread the worker runs on, when it has one of its own (see
    /// [`ProverPool::spawn_worker`]).
    thread: Option<Arbiter>,
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
    shutdown: Shutdown,
    /// Failures in a row here, and the pause they put on taking jobs.
    intake: Intake,
    /// Jobs taken, running or publishing here, and redeliveries of them.
    redeliveries: Redeliveries,
    /// Proved jobs whose outputs are being published.
    publishing: usize,
    /// Bounds the proved jobs being published at once, so that a slow or
    /// absent server holds back the workers instead of piling up outputs
    /// (several MB each) in memory.
    publish_room: Arc<Semaphore>,
    /// Dropped with the actor; see [`Lifeline`].
    lifeline: Option<Lifeline>,
}

impl ProverPool {
    /// A pool running jobs from `source` with `runner`, publishing outputs.
    pub fn new(
        config: PoolConfig,
        runner: Arc<dyn JobRunner>,
        source: Box<dyn JobSource>,
        publisher: Arc<dyn Publisher>,
    ) -> Self {
        let workers = if config.gpus.is_empty() {
            config.workers.max(1)
        } else {
            config.gpus.len()
        };
        Self {
            config: Arc::new(config),
            runner,
            publisher,
            source: Some(source),
            slots: (0..workers)
                .map(|_| Slot {
                    worker: None,
                    thread: None,
                    busy: false,
                    deaths: 0,
                })
                .collect(),
            waiting: VecDeque::new(),
            stats: WorkerStats::default(),
            free_workers: Arc::new(Semaphore::new(workers)),
            shutdown: Shutdown::new(),
            intake: Intake::new(),
            redeliveries: Redeliveries::new(),
            publishing: 0,
            publish_room: Arc::new(Semaphore::new(workers)),
            lifeline: None,
        }
    }

    /// Stops taking jobs and hands running ones back to their source when
    /// `shutdown` is triggered; tracked so the process can wait for that.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Exits the process through `lifeline` when this actor stops: a role
    /// without it would hold its consumer and do nothing.
    pub fn with_lifeline(mut self, lifeline: Lifeline) -> Self {
        self.lifeline = Some(lifeline);
        self
    }

    /// Starts the worker of `slot`. With several workers each runs on a
    /// thread of its own: a job's file work, its spawn (the calling thread
    /// waits until the prover has exec'd) and the reading of its logs then
    /// run side by side with the other workers' instead of one after the
    /// other on the pool's thread, which also stays free for NATS. A single
    /// worker stays on the pool's thread: there is nothing to overlap, and
    /// a job handed to another thread and back costs two wake-ups.
    fn spawn_worker(&mut self, slot: usize) {
        let gpu = self.config.gpus.get(slot).cloned();
        let worker = ProverWorker::new(slot, gpu, self.runner.clone());
        let own_thread = self.slots.len() > 1;
        let state = &mut self.slots[slot];
        // A replaced worker is dead; its thread goes with it.
        if let Some(old) = state.thread.take() {
            old.stop();
        }
        state.worker = Some(if own_thread {
            let thread = Arbiter::new();
            // Its logs (the prover's lines among them) go where the pool's
            // go, also when that is a scoped subscriber rather than the
            // global one; the guard lasts as long as the thread.
            let logs = tracing::dispatcher::get_default(Clone::clone);
            thread.spawn_fn(move || std::mem::forget(tracing::dispatcher::set_default(&logs)));
            let worker = ProverWorker::start_in_arbiter(&thread.handle(), |_| worker);
            state.thread = Some(thread);
            worker
        } else {
            worker.start()
        });
    }

    /// Replaces the worker of `slot` after a backoff. Its permit was taken
    /// out of circulation by the caller and comes back with the replacement.
    fn worker_died(&mut self, slot: usize, ctx: &mut Context<Self>) {
        let state = &mut self.slots[slot];
        state.worker = None;
        state.deaths += 1;
        self.stats.restarts += 1;
        metrics::worker_restarted(&self.config.name);
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
        let (prover, queue) = (self.config.name.clone(), delivery.queue.clone());
        let key = redeliveries::key(&delivery);
        let gpu = self.config.gpus.get(slot).cloned();
        metrics::job_started(&prover, &queue);
        metrics::job_in_flight(&prover, slot, gpu.as_deref(), true);
        let work = self.shutdown.track(job::run(
            worker,
            delivery,
            self.config.clone(),
            self.publisher.clone(),
            self.shutdown.clone(),
            self.publish_room.clone(),
        ));
        ctx.spawn(work.into_actor(self).map(move |(ran, retire), pool, ctx| {
            if retire {
                permit.forget();
            } else {
                drop(permit);
            }
            pool.slots[slot].busy = false;
            metrics::job_in_flight(&prover, slot, gpu.as_deref(), false);
            match ran {
                Ran::Settled(outcome) => pool.settled(key, &queue, outcome, ctx),
                Ran::Proved(publish) => {
                    pool.slots[slot].deaths = 0;
                    pool.publish(publish, key, queue, ctx);
                }
            }
            if retire {
                pool.worker_died(slot, ctx);
            }
            pool.dispatch_waiting(ctx);
        }));
    }

    /// Publishes a proved job's outputs and acks it, while its worker runs
    /// the next job.
    fn publish(
        &mut self,
        publish: Box<Publish>,
        key: JobKey,
        queue: String,
        ctx: &mut Context<Self>,
    ) {
        self.publishing += 1;
        ctx.spawn(
            publish
                .run()
                .into_actor(self)
                .map(move |outcome, pool, ctx| {
                    pool.publishing -= 1;
                    pool.settled(key, &queue, outcome, ctx);
                }),
        );
    }

    /// A job left this pool: counts how it ended and settles the
    /// redeliveries of it that waited. Once the job is acked or dead-lettered
    /// they are acked too; a job that comes back (retried, handed back) comes
    /// back by the server's schedule, so they are left to it.
    fn settled(&mut self, key: JobKey, queue: &str, outcome: Outcome, ctx: &mut Context<Self>) {
        let proved = matches!(outcome, Outcome::Proved { .. });
        let for_good = !matches!(outcome, Outcome::Retried | Outcome::HandedBack);
        self.ended(queue, outcome, ctx);
        for redelivery in self.redeliveries.ended(key, proved, for_good) {
            self.ack_settled(redelivery);
        }
    }

    /// Acks a redelivery of a job already settled, without running it.
    fn ack_settled(&self, redelivery: Delivery) {
        self.shutdown.spawn(async move {
            if let Err(error) = redelivery.ack.ack().await {
                tracing::warn!(job = %redelivery.id, %error, "could not ack a redelivery of a job already settled; it comes again and is acked then");
            }
        });
    }

    /// Counts how a job ended, in the stats and metrics, and lets failures
    /// pause the intake.
    fn ended(&mut self, queue: &str, outcome: Outcome, ctx: &mut Context<Self>) {
        let end = match outcome {
            Outcome::Proved { .. } => JobEnd::Succeeded,
            Outcome::Retried => JobEnd::Retried,
            Outcome::Failed | Outcome::InputRefused => JobEnd::DeadLettered,
            Outcome::HandedBack => JobEnd::HandedBack,
            Outcome::Skipped => JobEnd::Skipped,
        };
        metrics::job_ended(&self.config.name, queue, end);
        match outcome {
            Outcome::Proved { publish_retries } => {
                self.stats.proved += 1;
                self.stats.publish_retries += publish_retries;
                self.intake.succeeded(&self.config);
            }
            Outcome::Retried => {
                self.stats.retried += 1;
                self.job_failed(ctx);
            }
            Outcome::Failed => {
                self.stats.failed += 1;
                self.job_failed(ctx);
            }
            Outcome::InputRefused => self.stats.failed += 1,
            Outcome::HandedBack => self.stats.handed_back += 1,
            Outcome::Skipped => self.stats.skipped += 1,
        }
    }

    fn job_failed(&mut self, ctx: &mut Context<Self>) {
        if let Some(pause) = self.intake.failed(&self.config) {
            ctx.run_later(pause, |pool, _ctx| pool.intake.pause_over(&pool.config));
        }
    }

    /// Notices workers that died while idle (a mailbox closes on panic) and
    /// replaces them.
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
            match self.free_workers.clone().try_acquire_owned() {
                // The idle slot's permit is free: take it out until the
                // replacement, which brings it back after the backoff.
                Ok(permit) => {
                    permit.forget();
                    self.worker_died(slot, ctx);
                }
                // The feeder holds it, waiting for a job or with one waiting
                // here: it cannot be taken back, so the replacement starts
                // now, with the permit where it is. Waiting for it instead
                // would wedge a pool whose every permit the feeder holds
                // (one worker), and a job it brings must not wait for a
                // backoff unacknowledged. The check interval bounds how
                // often a worker that keeps dying idle is replaced.
                Err(_) => {
                    let state = &mut self.slots[slot];
                    state.deaths += 1;
                    self.stats.restarts += 1;
                    metrics::worker_restarted(&self.config.name);
                    tracing::warn!(
                        slot,
                        deaths = state.deaths,
                        "idle prover worker died; replacing it now"
                    );
                    self.spawn_worker(slot);
                    self.dispatch_waiting(ctx);
                }
            }
        }
    }
}

impl Drop for ProverPool {
    /// Stops the workers' threads and waits for them: their jobs are
    /// dropped there, which kills the provers and removes the job files, and
    /// that must be done before this process exits (the pool is dropped when
    /// the actor system stops).
    fn drop(&mut self) {
        let threads: Vec<Arbiter> = self
            .slots
            .iter_mut()
            .filter_map(|s| s.thread.take())
            .collect();
        for thread in &threads {
            thread.stop();
        }
        for thread in threads {
            let _ = thread.join();
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
        let source = self.source.take().expect("pool started once");
        let feeder = self.intake.feeder(
            source,
            self.free_workers.clone(),
            ctx.address(),
            self.shutdown.clone(),
        );
        // Owned by the pool: it ends with the pool, or at shutdown.
        ctx.spawn(fut::wrap_future(feeder));
        let inputs: Vec<&str> = self
            .config
            .routes
            .iter()
            .map(|r| r.input.as_str())
            .collect();
        metrics::pool_started(&self.config.name, &inputs);
        tracing::info!(pool = %self.config.name, workers = self.slots.len(), "prover pool started");
    }
}

impl Handler<Dispatch> for ProverPool {
    type Result = ();

    fn handle(&mut self, job: Dispatch, ctx: &mut Self::Context) {
        let Dispatch { delivery, permit } = job;
        // A redelivery that is not run gives its permit back: the worker
        // takes another job meanwhile.
        match self.redeliveries.arrived(delivery) {
            Arrival::Run(delivery) => {
                self.waiting.push_back(Dispatch { delivery, permit });
                self.dispatch_waiting(ctx);
            }
            Arrival::Ack(redelivery) => self.ack_settled(redelivery),
            Arrival::Parked => {}
        }
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
            publishing: self.publishing,
            ..self.stats.clone()
        }
    }
}

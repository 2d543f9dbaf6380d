//! The life of one job on the pool: run it on a worker, keep it alive at its
//! source while it runs, publish its output (retrying only the publish), and
//! settle it: ack, nak for a retry, dead-letter, or hand back at shutdown.
//! The publish and ack of a proved job are a phase of their own
//! ([`Publish`]): they need no worker, so the worker takes its next job
//! while they wait for the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use backon::Retryable;
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::{PoolConfig, Route};
use crate::actors::keep_alive;
use crate::actors::prover_worker::{ProverWorker, RunJob};
use crate::backoff::Backoff;
use crate::edges::{Delivery, EdgeError, JobFailure, Publisher};
use crate::messages::{
    BlockProof, Envelope, JobEvent, JobStatus, StepProof, block_of_payload, meta, queues, unix_ms,
};
use crate::shutdown::Shutdown;

/// Delays between attempts to publish an output that is already proved. The
/// prover is never run again for a publish that failed: its output is kept
/// and only the publish is retried, for as long as it takes.
const PUBLISH_RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

/// How a job ended, as the pool needs to know it.
pub(super) enum Outcome {
    /// Every publish of the output was tried until it was stored.
    Proved {
        publish_retries: u64,
    },
    Retried,
    Failed,
    /// Dead-lettered because the prover said its input is invalid (exit
    /// code 3): the message's fault, not this host's, so it must not make
    /// the host look sick (a burst of bad messages would pause its intake).
    InputRefused,
    HandedBack,
    /// Acked unproved: the block was older than `max_age` (`--backlog
    /// newest`), and a job event says so.
    Skipped,
}

/// Where a job is once its prover is done with it.
pub(super) enum Ran {
    /// Settled at its source already: it failed, was skipped or handed back.
    Settled(Outcome),
    /// Proved: its output still has to be published and the job acked,
    /// which needs no worker.
    Proved(Box<Publish>),
}

/// Runs one delivery on `worker`. A job that failed is settled at its
/// source here; a proved one comes back as [`Ran::Proved`] to be published,
/// once it has a permit of `publish_room` (until then the worker stays
/// taken). Also returns whether the worker must be replaced.
pub(super) async fn run(
    worker: Addr<ProverWorker>,
    delivery: Delivery,
    config: Arc<PoolConfig>,
    publisher: Arc<dyn Publisher>,
    shutdown: Shutdown,
    publish_room: Arc<Semaphore>,
) -> (Ran, bool) {
    let Some(route) = config.routes.iter().find(|r| r.input == delivery.queue) else {
        let reason = format!("no route for queue {}", delivery.queue);
        return (Ran::Settled(reject(&delivery, &reason).await), false);
    };
    if delivery.attempt > config.max_attempts {
        // Only a delivery that was never settled with a result gets here (a
        // host killed mid-job, a hand-back at shutdown, a dead letter that
        // could not be published): do not let a message that kills its
        // prover's host loop forever. The causes were logged by the hosts
        // that ran it; this one cannot know them.
        let reason = format!(
            "delivered {} times, more than the {} attempts allowed, so not run again; no earlier delivery ended with a result this host could see (a host stopped or crashed while proving it, handed it back at shutdown, or could not dead-letter it): the causes are in the logs of the hosts that ran job {}",
            delivery.attempt, config.max_attempts, delivery.id
        );
        return (Ran::Settled(reject(&delivery, &reason).await), false);
    }
    let events = Events::new(&config.name, &delivery, publisher.clone());
    if let Some(reason) = too_old(&delivery, config.max_age) {
        events.send(JobStatus::Skipped, |e| e.error = Some(reason.clone()));
        tracing::info!(job = %delivery.id, %reason, "job skipped");
        if let Err(error) = delivery.ack.ack().await {
            tracing::warn!(job = %delivery.id, %error, "could not ack a skipped job; it will be delivered again and skipped again");
        }
        return (Ran::Settled(Outcome::Skipped), false);
    }
    events.send(JobStatus::Queued, |_| {});
    let started = Instant::now();
    events.send(JobStatus::Proving, |_| {});
    let run = worker.send(RunJob {
        id: delivery.id.clone(),
        input: delivery.payload.clone(),
    });
    let answer = tokio::select! {
        biased;
        _ = shutdown.triggered() => return (Ran::Settled(hand_back(&delivery).await), false),
        answer = keep_alive(run, delivery.ack.as_ref(), config.progress_interval) => answer,
    };
    let result = answer.unwrap_or(Err(JobFailure::WorkerLost));
    if let Ok(output) = &result {
        crate::metrics::job_proved(
            &config.name,
            &delivery.queue,
            started.elapsed(),
            output.len(),
        );
    }
    let proving_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let retire = result
        .as_ref()
        .err()
        .is_some_and(JobFailure::needs_new_worker);
    let result = result.and_then(|output| outputs(&config.name, &delivery, route, output));
    let envelopes = match result {
        Ok(envelopes) => envelopes,
        Err(failure) => {
            events.send(JobStatus::Failed, |e| e.error = Some(failure.to_string()));
            let outcome = settle_failure(&delivery, &failure, &config).await;
            return (Ran::Settled(outcome), retire);
        }
    };
    let output_bytes = envelopes.iter().map(|e| e.payload.len() as u64).sum();
    let envelopes = envelopes
        .into_iter()
        .map(|e| with_block_meta(e.with_meta(meta::PROVING_MS, proving_ms), &delivery))
        .collect();
    let room = publish_room.acquire_owned().await.expect("never closed");
    let publish = Publish {
        queue: route.output.clone(),
        delivery,
        envelopes,
        events,
        config,
        publisher,
        proving_ms,
        output_bytes,
        started,
        _room: room,
        // Taken while this future is still tracked: no moment in which a
        // stopping process would think the job done before its publish.
        _hold: shutdown.hold(),
    };
    (Ran::Proved(Box::new(publish)), retire)
}

/// A proved job's outputs, to be published before the job is acked. Holds
/// its place among the publishes in flight, and counts as unfinished work
/// for a stopping process, until it is done.
pub(super) struct Publish {
    queue: String,
    delivery: Delivery,
    envelopes: Vec<Envelope>,
    events: Events,
    config: Arc<PoolConfig>,
    publisher: Arc<dyn Publisher>,
    proving_ms: u64,
    output_bytes: u64,
    started: Instant,
    _room: OwnedSemaphorePermit,
    _hold: TaskTrackerToken,
}

impl Publish {
    /// Publishes every output, retrying only the publish, then acks the
    /// job; dead-letters it if the output can never be published.
    pub(super) async fn run(self) -> Outcome {
        let (delivery, events) = (&self.delivery, &self.events);
        let publishing = publish_all(
            self.publisher.as_ref(),
            &self.queue,
            self.envelopes,
            &delivery.id,
        );
        let publish_retries = match keep_alive(
            publishing,
            delivery.ack.as_ref(),
            self.config.progress_interval,
        )
        .await
        {
            Ok(retries) => retries,
            Err(error) => {
                let reason = format!("the proved output can never be published: {error}");
                events.send(JobStatus::Failed, |e| e.error = Some(reason.clone()));
                return reject(delivery, &reason).await;
            }
        };
        events.send(JobStatus::Proved, |e| {
            e.proving_ms = Some(self.proving_ms);
            e.output_bytes = Some(self.output_bytes);
        });
        if let Err(error) = delivery.ack.ack().await {
            tracing::warn!(job = %delivery.id, %error, "output published but ack failed; a redelivery will be deduplicated");
        }
        tracing::info!(job = %delivery.id, queue = %delivery.queue, attempt = delivery.attempt, seconds = self.started.elapsed().as_secs_f64(), "job done");
        Outcome::Proved { publish_retries }
    }
}

/// Why `delivery` is not worth proving under `max_age` (`--backlog
/// newest`): its block's time, which the watcher put beside it, is older.
/// A job without a block time is always proved.
fn too_old(delivery: &Delivery, max_age: Option<Duration>) -> Option<String> {
    let max_age = max_age?;
    let block_time: u64 = delivery.meta.get(meta::BLOCK_TIME)?.parse().ok()?;
    let age = Duration::from_millis(unix_ms().saturating_sub(block_time.saturating_mul(1000)));
    (age > max_age).then(|| {
        format!(
            "skipped: the block is {}s old, older than the --max-age of {}s (--backlog newest)",
            age.as_secs(),
            max_age.as_secs()
        )
    })
}

/// `output` carrying the block hash and time its input came with, so the
/// matcher can tell a proof of a block a reorg replaced.
fn with_block_meta(mut output: Envelope, input: &Delivery) -> Envelope {
    for key in [meta::BLOCK_HASH, meta::BLOCK_TIME] {
        if let Some(value) = input.meta.get(key) {
            output = output.with_meta(key, value);
        }
    }
    output
}

/// Dead-letters a job whose failure no retry can change; retries others.
async fn settle_failure(delivery: &Delivery, failure: &JobFailure, config: &PoolConfig) -> Outcome {
    if failure.is_permanent() {
        let reason = format!("{failure}; running the prover again would not change it");
        let outcome = reject(delivery, &reason).await;
        let bad_input = matches!(failure, JobFailure::Exit { code: 3, .. });
        return if bad_input {
            Outcome::InputRefused
        } else {
            outcome
        };
    }
    retry_or_reject(delivery, failure, config).await
}

/// The job's [`JobEvent`]s, published in the background and in order (a
/// reporter must not see `proving` before `queued`): the dashboard and the
/// EthProofs reporter follow them, and proving never waits for them.
struct Events {
    queue: tokio::sync::mpsc::UnboundedSender<JobEvent>,
    template: JobEvent,
}

impl Events {
    fn new(pool: &str, delivery: &Delivery, publisher: Arc<dyn Publisher>) -> Self {
        let template = JobEvent {
            block: block_of_payload(&delivery.payload),
            pool: pool.to_owned(),
            queue: delivery.queue.clone(),
            job: delivery.id.clone(),
            attempt: delivery.attempt,
            status: JobStatus::Queued,
            at_ms: 0,
            proving_ms: None,
            output_bytes: None,
            error: None,
        };
        let (queue, mut events) = tokio::sync::mpsc::unbounded_channel::<JobEvent>();
        // Ends once the job is settled (the sender dropped) and its events sent.
        actix::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Err(error) = publisher
                    .publish(queues::JOB_EVENTS, event.envelope())
                    .await
                {
                    tracing::debug!(job = %event.job, %error, "could not publish a job event");
                }
            }
        });
        Self { queue, template }
    }

    fn send(&self, status: JobStatus, fill: impl FnOnce(&mut JobEvent)) {
        let mut event = JobEvent {
            status,
            at_ms: unix_ms(),
            ..self.template.clone()
        };
        fill(&mut event);
        // The publishing task lives as long as this sender: it cannot be gone.
        let _ = self.queue.send(event);
    }
}

/// Publishes every envelope, retrying each failed publish (same id, so
/// nothing doubles) until it is stored. Only a permanent refusal ends it
/// early. Returns how many publishes had to be retried.
async fn publish_all(
    publisher: &dyn Publisher,
    queue: &str,
    envelopes: Vec<Envelope>,
    job: &str,
) -> Result<u64, EdgeError> {
    let mut retries = 0;
    for envelope in envelopes {
        (|| publisher.publish(queue, envelope.clone()))
            .retry(PUBLISH_RETRY.forever())
            .sleep(tokio::time::sleep)
            .when(|error| !error.is_permanent())
            .notify(|error, delay| {
                retries += 1;
                tracing::warn!(%job, %error, retry_in = ?delay, "could not publish the proved output; keeping it and retrying the publish only");
            })
            .await?;
    }
    Ok(retries)
}

/// Gives a running job back to its source for another host to start now.
async fn hand_back(delivery: &Delivery) -> Outcome {
    tracing::info!(job = %delivery.id, "stopping: handing the running job back to the queue");
    if let Err(error) = delivery.ack.nak(Duration::ZERO).await {
        tracing::warn!(job = %delivery.id, %error, "could not hand the job back; it is redelivered after the ack wait");
    }
    Outcome::HandedBack
}

/// The messages a job's output becomes: one, or one per array element, each
/// passed on byte for byte. Outputs bound for the proof queues must have the
/// shape the next consumer reads, or the job fails here, for good, instead
/// of being dead-lettered downstream.
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

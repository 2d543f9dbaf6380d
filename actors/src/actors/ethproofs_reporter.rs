//! Reports each block's progress to EthProofs: queued and proving from the
//! provers' job events, proved from completed proofs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use backon::Retryable;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::{Inbound, keep_alive};
use crate::backoff::Backoff;
use crate::edges::Delivery;
use crate::edges::ethproofs::{Answer, Endpoint, EthProofsApi, Refusal};
use crate::messages::{CompletedProof, JobEvent, JobStatus, bounded, queues};
use crate::shutdown::Lifeline;

/// The documented limit: 60 requests per minute per key.
pub const API_LIMIT: RateLimit = RateLimit {
    requests: 60,
    window: Duration::from_secs(60),
};

/// At most `requests` calls in any `window`: the API's limit per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls allowed in one window.
    pub requests: usize,
    /// The sliding window.
    pub window: Duration,
}

/// What the reporter needs besides the API.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// The team's cluster id on EthProofs.
    pub cluster_id: u64,
    /// Requests allowed per window ([`API_LIMIT`]).
    pub limit: RateLimit,
    /// Delays between sends of a report that met a 5xx or a network error.
    pub retry: Backoff,
    /// How often a report being retried is reported alive to its source,
    /// so NATS does not hand it to another reporter meanwhile.
    pub keepalive: Duration,
    /// The queue of job events; anything else read is a completed proof.
    pub events_queue: String,
}

impl ReporterConfig {
    /// Settings for `cluster_id` with the API's limit and default delays.
    pub fn new(cluster_id: u64) -> Self {
        Self {
            cluster_id,
            limit: API_LIMIT,
            retry: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            keepalive: Duration::from_secs(10),
            events_queue: queues::JOB_EVENTS.to_owned(),
        }
    }
}

/// Reads job events and completed proofs and POSTs each block's `queued`,
/// `proving` and `proved` to EthProofs, one report at a time, in order.
///
/// It runs on its own consumer (its own role, or its own source in `run`),
/// so reporting never waits on or slows down proving. A report is acked
/// only after a 2xx or a 409, so a restarted reporter resumes exactly where
/// it stopped. 5xx and network errors are retried with backoff, 429 after
/// its `Retry-After`; 400 dead-letters that one report; 401/404 (bad key,
/// unknown cluster), which no retry fixes, stop reporting: the role exits
/// through its lifeline, a standalone run goes on proving without reports.
pub struct EthProofsReporter {
    api: Arc<dyn EthProofsApi>,
    config: Arc<ReporterConfig>,
    window: Arc<tokio::sync::Mutex<Window>>,
    /// Set once EthProofs refused the key or the cluster (standalone only).
    refused: bool,
    /// Dropped with the actor; see [`Lifeline`].
    lifeline: Option<Lifeline>,
}

impl EthProofsReporter {
    /// A reporter posting through `api`.
    pub fn new(api: Arc<dyn EthProofsApi>, config: ReporterConfig) -> Self {
        Self {
            window: Arc::new(tokio::sync::Mutex::new(Window::new(config.limit))),
            api,
            config: Arc::new(config),
            refused: false,
            lifeline: None,
        }
    }

    /// Stops this actor, and with it the process through `lifeline`, when
    /// EthProofs refuses the key or the cluster. Without one (standalone
    /// `run`) the actor stays, acking what it reads without reporting it.
    pub fn with_lifeline(mut self, lifeline: Lifeline) -> Self {
        self.lifeline = Some(lifeline);
        self
    }
}

impl Actor for EthProofsReporter {
    type Context = Context<Self>;
}

impl Handler<Inbound> for EthProofsReporter {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, Inbound(delivery): Inbound, _ctx: &mut Context<Self>) -> Self::Result {
        let refused = self.refused;
        let api = self.api.clone();
        let config = self.config.clone();
        let window = self.window.clone();
        let work = async move {
            if refused {
                // Standalone after a refused key: nothing would pass.
                let _ = delivery.ack.ack().await;
                return Ok(());
            }
            let report = match report_of(&delivery, &config) {
                Ok(Some(report)) => report,
                Ok(None) => {
                    if let Err(error) = delivery.ack.ack().await {
                        tracing::warn!(id = %delivery.id, %error, "could not ack a message that needs no report");
                    }
                    return Ok(());
                }
                Err(reason) => {
                    tracing::error!(id = %delivery.id, queue = %delivery.queue, %reason, "cannot report this message to EthProofs; sent to the dead-letter queue");
                    if let Err(error) = delivery.ack.reject(&reason).await {
                        tracing::error!(id = %delivery.id, %error, "could not dead-letter the message");
                    }
                    return Ok(());
                }
            };
            let sending = send(api.as_ref(), &window, &config, &report);
            let answer = keep_alive(sending, delivery.ack.as_ref(), config.keepalive).await;
            settle(&delivery, &report, answer).await
        };
        Box::pin(work.into_actor(self).map(|outcome, act, ctx| {
            if let Err(refusal) = outcome {
                if act.lifeline.is_some() {
                    ctx.stop();
                } else if !act.refused {
                    act.refused = true;
                    tracing::error!(
                        "EthProofs reporting is off for the rest of this run ({}); proving goes on",
                        refusal.advice()
                    );
                }
            }
        }))
    }
}

/// One POST to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Which call.
    pub endpoint: Endpoint,
    /// The block it is about.
    pub block: u64,
    /// The JSON body.
    pub body: Value,
}

/// The report `delivery` calls for: `None` for events EthProofs does not
/// track (failures, step jobs, proved events: the completed proof carries
/// those), an error for a payload that cannot be read.
pub fn report_of(delivery: &Delivery, config: &ReporterConfig) -> Result<Option<Report>, String> {
    let cluster = config.cluster_id;
    if delivery.queue == config.events_queue {
        let event: JobEvent = serde_json::from_slice(&delivery.payload)
            .map_err(|e| format!("not a job event ({e})"))?;
        let endpoint = match event.status {
            JobStatus::Queued => Endpoint::Queued,
            JobStatus::Proving => Endpoint::Proving,
            JobStatus::Proved | JobStatus::Failed | JobStatus::Skipped => return Ok(None),
        };
        // Only whole-block jobs are EthProofs' queued/proving; steps of a
        // multistep block are not.
        let Some(block) = event.block.filter(|_| event.queue == queues::BLOCKS) else {
            return Ok(None);
        };
        let body = json!({"block_number": block, "cluster_id": cluster});
        return Ok(Some(Report {
            endpoint,
            block,
            body,
        }));
    }
    let proof: CompletedProof = serde_json::from_slice(&delivery.payload).map_err(|e| {
        format!(
            "not a completed proof ({}): expected {{\"block\",\"prover\",\"proof\",\"latency_ms\"}}",
            bounded_error(&e)
        )
    })?;
    let mut body = Map::new();
    body.insert("block_number".into(), proof.block.into());
    body.insert("cluster_id".into(), cluster.into());
    body.insert("proving_time".into(), proving_time(&proof).into());
    body.insert("proof".into(), proof_base64(&proof.proof).into());
    if let Some(cycles) = positive(&proof.extra, &["proving_cycles", "cycles"]) {
        body.insert("proving_cycles".into(), cycles.into());
    }
    if let Some(verifier) = proof.extra.get("verifier_id").filter(|v| !v.is_null()) {
        body.insert("verifier_id".into(), verifier.clone());
    }
    Ok(Some(Report {
        endpoint: Endpoint::Proved,
        block: proof.block,
        body: Value::Object(body),
    }))
}

/// A serde error, cut short: it may quote a whole proof string.
fn bounded_error(error: &serde_json::Error) -> String {
    bounded(&error.to_string(), 200)
}

/// Milliseconds of proving, always at least 1 (EthProofs rejects 0): the
/// prover's own `proving_time`, else `proving_ms` (the prover's, or the
/// binary's run time as its host measured it), else the latency from the
/// block's announcement (an upper bound), else 1.
pub fn proving_time(proof: &CompletedProof) -> u64 {
    if let Some(ms) = positive(&proof.extra, &["proving_time"]) {
        return ms;
    }
    if let Some(ms) = proof.proving_ms.filter(|ms| *ms > 0) {
        return ms;
    }
    tracing::warn!(
        block = proof.block,
        prover = %proof.prover,
        latency_ms = proof.latency_ms,
        "the proof carries no proving time; reporting the latency since the block's announcement (at least 1 ms) instead"
    );
    proof.latency_ms.max(1)
}

/// The first of `keys` in `extra` that holds a number > 0, rounded to a
/// whole number.
fn positive(extra: &Map<String, Value>, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|key| {
        let value = extra.get(*key)?;
        let number = value.as_u64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.5)
                .map(|f| f.round() as u64)
        })?;
        (number > 0).then_some(number)
    })
}

/// The proof's bytes in base64: a `0x` hex string is decoded (the contract's
/// usual form); any other string is sent as its UTF-8 bytes, and any other
/// JSON value as its JSON text.
pub fn proof_base64(proof: &Value) -> String {
    let bytes = match proof {
        Value::String(text) => hex_bytes(text).unwrap_or_else(|| text.as_bytes().to_vec()),
        other => other.to_string().into_bytes(),
    };
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bytes of `0x`-prefixed hex, or `None` if `text` is not that.
fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("0x")?.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    fn nibble(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    digits
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// Why a report could not be sent now.
#[derive(Debug)]
enum Retry {
    RateLimited(Option<Duration>),
    Unavailable(String),
}

/// Sends `report` until EthProofs gives a final answer: waits for room in
/// the rate window before each try, retries 5xx and network errors with
/// backoff and 429 after its `Retry-After`.
async fn send(
    api: &dyn EthProofsApi,
    window: &tokio::sync::Mutex<Window>,
    config: &ReporterConfig,
    report: &Report,
) -> Answer {
    let attempt = || async {
        window.lock().await.acquire().await;
        let answer = api.post(report.endpoint, &report.body).await;
        window.lock().await.answered();
        match answer {
            Answer::RateLimited { retry_after } => Err(Retry::RateLimited(retry_after)),
            Answer::Unavailable { reason } => Err(Retry::Unavailable(reason)),
            answer => Ok(answer),
        }
    };
    let result = attempt
        .retry(config.retry.forever())
        .sleep(tokio::time::sleep)
        .adjust(|retry, delay| match retry {
            Retry::RateLimited(Some(after)) => Some(*after),
            _ => delay,
        })
        .notify(|retry, delay| match retry {
            Retry::RateLimited(_) => tracing::warn!(block = report.block, call = report.endpoint.path(), retry_in = ?delay, "EthProofs answered 429 Too Many Requests; waiting as asked"),
            Retry::Unavailable(reason) => tracing::warn!(block = report.block, call = report.endpoint.path(), %reason, retry_in = ?delay, "EthProofs is unavailable; retrying"),
        })
        .await;
    result.expect("retried forever")
}

/// Acks, dead-letters or hands back `delivery` after `answer`. Returns the
/// refusal that stops all reporting, if it was one.
async fn settle(delivery: &Delivery, report: &Report, answer: Answer) -> Result<(), Refusal> {
    let call = report.endpoint.path();
    match answer {
        Answer::Accepted { proof_id } => {
            tracing::info!(
                block = report.block,
                call,
                proof_id = proof_id.as_deref().unwrap_or(""),
                "reported to EthProofs"
            );
        }
        Answer::AlreadyDone => {
            tracing::info!(
                block = report.block,
                call,
                "EthProofs answered 409: already recorded; counted as done"
            );
        }
        Answer::Refused {
            refusal,
            status,
            message,
        } => {
            let reason = format!(
                "EthProofs refused POST /{call} for block {} with {status}: {} ({message})",
                report.block,
                refusal.advice()
            );
            if refusal.stops_reporting() {
                tracing::error!(
                    block = report.block,
                    "{reason}; no retry can fix this, so reporting stops"
                );
                // Back to the queue at once: the next reporter, with a
                // fixed setting, reports it.
                if let Err(error) = delivery.ack.nak(Duration::ZERO).await {
                    tracing::warn!(id = %delivery.id, %error, "could not hand the report back; it is redelivered after the ack wait");
                }
                return Err(refusal);
            }
            tracing::error!(
                block = report.block,
                "{reason}; sent to the dead-letter queue"
            );
            if let Err(error) = delivery.ack.reject(&reason).await {
                tracing::error!(id = %delivery.id, %error, "could not dead-letter the report");
            }
            return Ok(());
        }
        Answer::RateLimited { .. } | Answer::Unavailable { .. } => {
            unreachable!("retried until another answer")
        }
    }
    if let Err(error) = delivery.ack.ack().await {
        tracing::warn!(id = %delivery.id, %error, "reported, but the ack failed; the redelivery will be answered 409 or recorded again");
    }
    Ok(())
}

/// The times of the last requests, to keep under [`RateLimit`] in any
/// sliding window: whatever window EthProofs counts in, it sees no more.
#[derive(Debug)]
pub struct Window {
    limit: RateLimit,
    sent: VecDeque<tokio::time::Instant>,
}

impl Window {
    /// An empty window for `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            sent: VecDeque::new(),
        }
    }

    /// Waits until one more request fits, and counts it.
    pub async fn acquire(&mut self) {
        loop {
            let now = tokio::time::Instant::now();
            while self
                .sent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.limit.window)
            {
                self.sent.pop_front();
            }
            if self.sent.len() < self.limit.requests.max(1) {
                self.sent.push_back(now);
                return;
            }
            let oldest = *self.sent.front().expect("full");
            tracing::debug!(wait = ?(oldest + self.limit.window - now), "at the EthProofs rate limit; waiting");
            tokio::time::sleep_until(oldest + self.limit.window).await;
        }
    }

    /// Counts the last request from now, when its answer came: the server
    /// counted it somewhere between the send and the answer, so counting
    /// from the answer never lets the next one in too early.
    pub fn answered(&mut self) {
        if let Some(last) = self.sent.back_mut() {
            *last = tokio::time::Instant::now();
        }
    }
}

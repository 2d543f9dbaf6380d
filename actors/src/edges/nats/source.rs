//! Consuming from JetStream: one message per pull, or as many as are
//! asked for and available at once ([`JobSource::next_up_to`]), each payload
//! resolved when it is a reference to a stored object, settled through
//! [`NatsAck`].

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind};
use async_trait::async_trait;
use futures_util::StreamExt;

use super::NatsBus;
use super::payload::PayloadError;
use crate::backoff::Backoff;
use crate::edges::{AckHandle, Delivery, EdgeError, JobSource, Publisher};
use crate::messages::{DeadLetter, queues};

/// How long one pull waits for a message before asking again.
const PULL_EXPIRY: Duration = Duration::from_secs(10);
/// Delay between failed pulls.
const PULL_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
/// Redelivery delay of a message whose stored payload could not be read,
/// by attempt.
const UNREADABLE_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

/// A durable pull consumer that fetches only what its consumer asks for
/// (one message, or as many as it has idle workers), so a busy worker never
/// holds messages another host could be proving.
pub struct NatsSource {
    pub(super) consumer: PullConsumer,
    pub(super) bus: NatsBus,
    /// The consumer's `max_deliver`: the last delivery of a message whose
    /// payload cannot be read dead-letters it instead of dropping it silently.
    pub(super) max_deliver: i64,
    /// The last pull left nothing pending on the consumer: the next one
    /// waits for a message at once instead of first asking for what is
    /// there (a consumer that keeps up would otherwise pay two requests per
    /// message).
    pub(super) drained: bool,
}

#[async_trait]
impl JobSource for NatsSource {
    async fn next(&mut self) -> Option<Delivery> {
        self.next_up_to(1).await.pop()
    }

    async fn next_up_to(&mut self, max: usize) -> Vec<Delivery> {
        let max = max.max(1);
        let mut failures = 0;
        loop {
            // What is there now, in one request that the server answers at
            // once, empty or not: a backlog is taken `max` at a time, and
            // nothing more than asked for is ever held here. Skipped when
            // the last pull left nothing pending: the answer would be "none".
            let available = if self.drained {
                Some(Vec::new())
            } else {
                self.fetch_now(max).await
            };
            let messages = match available {
                Some(messages) if !messages.is_empty() => messages,
                // Nothing there (or nothing pending after the last pull):
                // wait for one message. Waiting for `max` would keep the
                // first one waiting until `max` arrived.
                Some(_) => {
                    let started = Instant::now();
                    match self.pull_one().await {
                        Some(message) => vec![message],
                        // An expired pull that got nothing is normal;
                        // anything quicker is an error, and must not become
                        // a busy loop.
                        None if started.elapsed() >= PULL_EXPIRY / 2 => {
                            failures = 0;
                            continue;
                        }
                        None => Vec::new(),
                    }
                }
                None => Vec::new(),
            };
            if messages.is_empty() {
                failures += 1;
                tokio::time::sleep(PULL_BACKOFF.delay(failures)).await;
                continue;
            }
            failures = 0;
            self.drained = messages
                .last()
                .and_then(|last| last.info().ok())
                .is_none_or(|info| info.pending == 0);
            let mut deliveries = Vec::with_capacity(messages.len());
            for message in messages {
                if let Some(delivery) = self.delivery(message).await {
                    deliveries.push(delivery);
                }
            }
            // All unreadable (settled already): ask again.
            if !deliveries.is_empty() {
                return deliveries;
            }
        }
    }
}

impl NatsSource {
    /// Up to `max` messages that are available now (a no-wait pull the
    /// server answers at once); `None` when the request failed (logged).
    async fn fetch_now(&self, max: usize) -> Option<Vec<jetstream::Message>> {
        // No expiry: with one, the server would hold the request open until
        // a message comes, and the caller could not tell "none now" apart.
        // The client then sets no deadline of its own, so this one keeps a
        // server that stopped answering from hanging the consumer.
        let fetch = async {
            let batch = self.consumer.fetch().max_messages(max).messages().await;
            match batch {
                Ok(batch) => Some(Self::collect(batch).await),
                Err(error) => {
                    tracing::warn!(%error, "pulling from NATS failed; retrying");
                    None
                }
            }
        };
        match tokio::time::timeout(PULL_EXPIRY, fetch).await {
            Ok(fetched) => fetched,
            Err(_) => {
                tracing::warn!(timeout = ?PULL_EXPIRY, "NATS did not answer a pull request; retrying");
                None
            }
        }
    }

    /// One pull of one message, waiting up to [`PULL_EXPIRY`] for it;
    /// `None` when none came (errors are logged).
    async fn pull_one(&self) -> Option<jetstream::Message> {
        let batch = self
            .consumer
            .batch()
            .max_messages(1)
            .expires(PULL_EXPIRY)
            .messages()
            .await;
        match batch {
            Ok(batch) => Self::collect(batch).await.pop(),
            Err(error) => {
                tracing::warn!(%error, "pulling from NATS failed; retrying");
                None
            }
        }
    }

    /// Every message of one pull request, to its end (the batch is full,
    /// the request expired, or nothing more was there).
    async fn collect(mut batch: jetstream::consumer::pull::Batch) -> Vec<jetstream::Message> {
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => messages.push(message),
                Err(error) => tracing::warn!(%error, "pull request failed"),
            }
        }
        messages
    }

    /// The delivery of `message`, or `None` when its stored payload cannot
    /// be read (the message is then dead-lettered or delivered again later).
    async fn delivery(&self, message: jetstream::Message) -> Option<Delivery> {
        let (attempt, sequence) = message.info().map_or((1, 0), |info| {
            (info.delivered.max(1) as u32, info.stream_sequence)
        });
        let id = message_id(&message, sequence);
        let queue = self.bus.topology.queue(message.subject.as_str()).to_owned();
        let stored = self
            .bus
            .payloads
            .stored(message.headers.as_ref(), &message.payload)
            .await;
        let mut ack = NatsAck {
            message,
            bus: self.bus.clone(),
            consumer: self.consumer.cached_info().name.clone(),
            queue,
            id,
            attempt,
            stored: None,
        };
        match stored {
            Ok(stored) => ack.stored = stored,
            Err(error) => {
                self.unreadable(&ack, &error).await;
                return None;
            }
        }
        let payload = ack.payload().to_vec();
        let meta = super::publish::meta_of(ack.message.headers.as_ref());
        Some(Delivery {
            queue: ack.queue.clone(),
            id: ack.id.clone(),
            payload,
            attempt,
            meta,
            ack: Box::new(ack),
        })
    }

    /// Settles a message whose stored payload could not be read: gone for
    /// good (or read for the last time) goes to the dead-letter queue, a
    /// transient failure is delivered again after a short delay.
    async fn unreadable(&self, ack: &NatsAck, error: &PayloadError) {
        let last = self.max_deliver > 0 && i64::from(ack.attempt) >= self.max_deliver;
        let settled = if error.is_permanent() || last {
            tracing::warn!(queue = %ack.queue, id = %ack.id, %error, "stored payload unreadable; dead-lettering the message");
            let reason = if error.is_permanent() {
                error.to_string()
            } else {
                format!("{error} (delivery {} of {})", ack.attempt, self.max_deliver)
            };
            ack.reject(&reason).await
        } else {
            let delay = UNREADABLE_BACKOFF.delay(ack.attempt);
            tracing::warn!(queue = %ack.queue, id = %ack.id, %error, retry_in = ?delay, "stored payload unreadable; delivering the message again later");
            ack.nak(delay).await
        };
        if let Err(error) = settled {
            tracing::warn!(queue = %ack.queue, id = %ack.id, %error, "could not settle the message; it is redelivered after the ack wait");
        }
    }
}

/// The id `message` was published with (`Nats-Msg-Id`), or one made of
/// its stream `sequence` when it has none.
pub(super) fn message_id(message: &jetstream::Message, sequence: u64) -> String {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map_or_else(|| format!("seq-{sequence}"), |v| v.as_str().to_owned())
}

/// Settles one JetStream message.
struct NatsAck {
    message: jetstream::Message,
    bus: NatsBus,
    /// The durable consumer's name, which tells its dead letters apart
    /// from those of another consumer of the same queue.
    consumer: String,
    queue: String,
    id: String,
    attempt: u32,
    /// The stored payload the message refers to, once read.
    stored: Option<Vec<u8>>,
}

impl NatsAck {
    fn failed(&self, e: impl std::fmt::Display) -> EdgeError {
        crate::metrics::ack_error();
        EdgeError::Ack {
            id: self.id.clone(),
            reason: e.to_string(),
        }
    }

    /// The payload the message stands for.
    fn payload(&self) -> &[u8] {
        self.stored.as_deref().unwrap_or(&self.message.payload)
    }

    /// Publishes the dead letter of this message: with its payload, or, when
    /// that is refused as too large, with the message body as it is on the
    /// queue (for a stored payload: its reference).
    async fn dead_letter(&self, reason: &str) -> Result<(), EdgeError> {
        let publisher = self.bus.publisher();
        let letter = |reason: &str, payload: &[u8]| {
            DeadLetter::envelope(
                &self.consumer,
                &self.queue,
                &self.id,
                self.attempt,
                reason,
                payload,
            )
        };
        let published = publisher
            .publish(queues::DEAD_LETTER, letter(reason, self.payload()))
            .await;
        match published {
            Err(error) if error.is_permanent() && self.stored.is_some() => {
                let reason = format!(
                    "{reason} (the payload is the stored payload's reference: the payload itself could not be dead-lettered: {error})"
                );
                publisher
                    .publish(queues::DEAD_LETTER, letter(&reason, &self.message.payload))
                    .await
            }
            other => other,
        }
    }
}

#[async_trait]
impl AckHandle for NatsAck {
    async fn ack(&self) -> Result<(), EdgeError> {
        // Confirmed by the server: the pool acks a job whose redelivery
        // would run the prover again (minutes of GPU on a real one), and
        // the reporter a report whose redelivery would send it again, so
        // one round trip per job is worth knowing the ack arrived, also
        // when the process stops right after it.
        self.message.double_ack().await.map_err(|e| self.failed(e))
    }

    async fn ack_unconfirmed(&self) -> Result<(), EdgeError> {
        // Sent without waiting for the server: the caller's outputs are
        // stored and deduplicated by id, so a lost ack only brings one
        // redelivery, which the caller absorbs cheaply (see the trait).
        self.message.ack().await.map_err(|e| self.failed(e))
    }

    async fn nak(&self, delay: Duration) -> Result<(), EdgeError> {
        // Wait for the server's answer: a nak sent at shutdown must reach the
        // server before the connection closes, or the job waits out the ack wait.
        self.message
            .double_ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| self.failed(e))
    }

    async fn in_progress(&self) -> Result<(), EdgeError> {
        self.message
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| self.failed(e))
    }

    async fn reject(&self, reason: &str) -> Result<(), EdgeError> {
        self.dead_letter(reason).await?;
        self.message
            .double_ack_with(AckKind::Term)
            .await
            .map_err(|e| self.failed(e))
    }
}

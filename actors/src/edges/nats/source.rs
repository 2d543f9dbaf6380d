//! Consuming from JetStream: one message per pull, settled through [`NatsAck`].

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind};
use async_trait::async_trait;
use futures_util::StreamExt;

use super::NatsBus;
use crate::backoff::Backoff;
use crate::edges::{AckHandle, Delivery, EdgeError, JobSource, Publisher};
use crate::messages::{DeadLetter, queues};

/// How long one pull waits for a message before asking again.
const PULL_EXPIRY: Duration = Duration::from_secs(10);
/// Delay between failed pulls.
const PULL_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// A durable pull consumer that fetches one message per request, so a busy
/// worker never holds messages another host could be proving.
pub struct NatsSource {
    pub(super) consumer: PullConsumer,
    pub(super) bus: NatsBus,
}

#[async_trait]
impl JobSource for NatsSource {
    async fn next(&mut self) -> Option<Delivery> {
        let mut failures = 0;
        loop {
            let started = std::time::Instant::now();
            let batch = self
                .consumer
                .batch()
                .max_messages(1)
                .expires(PULL_EXPIRY)
                .messages()
                .await;
            let mut pulled = false;
            match batch {
                Ok(mut batch) => {
                    while let Some(message) = batch.next().await {
                        match message {
                            Ok(message) => return Some(self.delivery(message)),
                            Err(error) => tracing::warn!(%error, "pull request failed"),
                        }
                    }
                    pulled = true;
                }
                Err(error) => tracing::warn!(%error, "pulling from NATS failed; retrying"),
            }
            // An expired pull that got nothing is normal; anything quicker is
            // an error, and must not become a busy loop.
            if pulled && started.elapsed() >= PULL_EXPIRY / 2 {
                failures = 0;
                continue;
            }
            failures += 1;
            tokio::time::sleep(PULL_BACKOFF.delay(failures)).await;
        }
    }
}

impl NatsSource {
    fn delivery(&self, message: jetstream::Message) -> Delivery {
        let (attempt, sequence) = message.info().map_or((1, 0), |info| {
            (info.delivered.max(1) as u32, info.stream_sequence)
        });
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map_or_else(|| format!("seq-{sequence}"), |v| v.as_str().to_owned());
        let queue = self.bus.topology.queue(message.subject.as_str()).to_owned();
        let payload = message.payload.to_vec();
        let ack = NatsAck {
            message,
            bus: self.bus.clone(),
            queue: queue.clone(),
            id: id.clone(),
            attempt,
        };
        Delivery {
            queue,
            id,
            payload,
            attempt,
            ack: Box::new(ack),
        }
    }
}

/// Settles one JetStream message.
struct NatsAck {
    message: jetstream::Message,
    bus: NatsBus,
    queue: String,
    id: String,
    attempt: u32,
}

impl NatsAck {
    fn failed(&self, e: impl std::fmt::Display) -> EdgeError {
        EdgeError::Ack {
            id: self.id.clone(),
            reason: e.to_string(),
        }
    }
}

#[async_trait]
impl AckHandle for NatsAck {
    async fn ack(&self) -> Result<(), EdgeError> {
        self.message.double_ack().await.map_err(|e| self.failed(e))
    }

    async fn nak(&self, delay: Duration) -> Result<(), EdgeError> {
        self.message
            .ack_with(AckKind::Nak(Some(delay)))
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
        let envelope = DeadLetter::envelope(
            &self.queue,
            &self.id,
            self.attempt,
            reason,
            &self.message.payload,
        );
        self.bus
            .publisher()
            .publish(queues::DEAD_LETTER, envelope)
            .await?;
        self.message
            .double_ack_with(AckKind::Term)
            .await
            .map_err(|e| self.failed(e))
    }
}

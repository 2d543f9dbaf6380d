//! Following queues without taking part in them: an ordered consumer
//! (ephemeral, server-side flow, no acks) for readers such as the dashboard
//! that only watch the pipeline. A durable acked consumer cost them a pull
//! request and an ack per message, about a third of the messages NATS
//! handled per block in role mode; this one costs one long pull per batch.

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};

use super::{NatsBus, NatsError};
use crate::edges::{AckHandle, Delivery, EdgeError, JobSource};

/// Delay before following again when the ordered consumer's stream ended
/// (it recreates itself on gaps and missed heartbeats; an end means the
/// connection is gone for now).
const RESTART_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// A [`JobSource`] over an ordered consumer of some queues, from the moment
/// it is created. Its deliveries need no settling: acks are no-ops, and a
/// message that cannot be read is skipped (it is the business of the
/// consumers that take part, which dead-letter it).
pub struct NatsFollower {
    bus: NatsBus,
    subjects: Vec<String>,
    messages: Option<Ordered>,
}

impl NatsBus {
    /// Follows `queues` from now on, without a durable consumer or acks.
    pub async fn follower(&self, queues: &[String]) -> Result<NatsFollower, NatsError> {
        let subjects = self.subjects(queues);
        let messages = Some(open(self, &subjects).await?);
        tracing::info!(queues = ?queues, "following");
        Ok(NatsFollower {
            bus: self.clone(),
            subjects,
            messages,
        })
    }
}

impl NatsFollower {
    /// The next message's delivery, waiting for one (and following again
    /// whenever the ordered consumer's stream ends).
    async fn next_message(&mut self) -> Delivery {
        loop {
            let messages = match &mut self.messages {
                Some(messages) => messages,
                None => match open(&self.bus, &self.subjects).await {
                    Ok(messages) => self.messages.insert(messages),
                    Err(error) => {
                        tracing::warn!(%error, "could not follow the queues again; retrying");
                        tokio::time::sleep(RESTART_DELAY).await;
                        continue;
                    }
                },
            };
            match messages.next().await {
                Some(Ok(message)) => {
                    if let Some(delivery) = delivery(&self.bus, message).await {
                        return delivery;
                    }
                }
                Some(Err(error)) => tracing::debug!(%error, "following: a message was lost"),
                None => {
                    tracing::warn!(subjects = ?self.subjects, "following ended; starting again");
                    self.messages = None;
                    tokio::time::sleep(RESTART_DELAY).await;
                }
            }
        }
    }
}

/// An ordered consumer of `subjects` on `bus`'s stream, from now on.
async fn open(bus: &NatsBus, subjects: &[String]) -> Result<Ordered, NatsError> {
    let config = OrderedConfig {
        filter_subjects: subjects.to_vec(),
        deliver_policy: DeliverPolicy::New,
        ..Default::default()
    };
    let failed = |e: &dyn std::fmt::Display| NatsError::JetStream {
        what: format!("following {}", subjects.join(",")),
        reason: e.to_string(),
    };
    let consumer = bus
        .stream
        .create_consumer(config)
        .await
        .map_err(|e| failed(&e))?;
    consumer.messages().await.map_err(|e| failed(&e))
}

/// The delivery of `message`, or `None` when its stored payload cannot be read.
async fn delivery(bus: &NatsBus, message: async_nats::jetstream::Message) -> Option<Delivery> {
    let sequence = message.info().map_or(0, |info| info.stream_sequence);
    let id = super::source::message_id(&message, sequence);
    let queue = bus.topology.queue(message.subject.as_str()).to_owned();
    let payload = match bus
        .payloads
        .stored(message.headers.as_ref(), &message.payload)
        .await
    {
        Ok(stored) => stored.unwrap_or_else(|| message.payload.to_vec()),
        Err(error) => {
            tracing::debug!(%queue, %id, %error, "following: skipping a message whose stored payload cannot be read");
            return None;
        }
    };
    Some(Delivery {
        queue,
        id,
        payload,
        attempt: 1,
        meta: super::publish::meta_of(message.headers.as_ref()),
        ack: Box::new(Unsettled),
    })
}

#[async_trait]
impl JobSource for NatsFollower {
    async fn next(&mut self) -> Option<Delivery> {
        Some(self.next_message().await)
    }

    async fn next_up_to(&mut self, max: usize) -> Vec<Delivery> {
        let mut deliveries = vec![self.next_message().await];
        // What else has arrived already, without waiting for more.
        while deliveries.len() < max {
            let ready = self.messages.as_mut().and_then(|m| m.next().now_or_never());
            let Some(Some(Ok(message))) = ready else {
                break;
            };
            deliveries.extend(delivery(&self.bus, message).await);
        }
        deliveries
    }
}

/// The settling of a followed message: nothing to settle.
struct Unsettled;

#[async_trait]
impl AckHandle for Unsettled {
    async fn ack(&self) -> Result<(), EdgeError> {
        Ok(())
    }

    async fn nak(&self, _delay: std::time::Duration) -> Result<(), EdgeError> {
        Ok(())
    }

    async fn in_progress(&self) -> Result<(), EdgeError> {
        Ok(())
    }

    async fn reject(&self, _reason: &str) -> Result<(), EdgeError> {
        Ok(())
    }
}

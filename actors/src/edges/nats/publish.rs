//! Publishing to JetStream: deduplicated by message id, retried with the same
//! id, and with payloads over the inline limit stored as objects and sent as
//! references (see [`super::payload`]).

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_trait::async_trait;
use backon::Retryable;
use tokio::sync::OnceCell;

use super::NatsBus;
use super::payload::{PAYLOAD_OBJECT_HEADER, PayloadRef};
use crate::backoff::Backoff;
use crate::edges::{EdgeError, Publisher};
use crate::messages::{Envelope, Meta};

/// Envelope metadata travels as headers with this prefix.
const META_HEADER_PREFIX: &str = "Orchestrator-Meta-";

/// The envelope metadata carried by `headers`.
pub(super) fn meta_of(headers: Option<&async_nats::HeaderMap>) -> Meta {
    let Some(headers) = headers else {
        return Meta::new();
    };
    headers
        .iter()
        .filter_map(|(name, values)| {
            let key = AsRef::<str>::as_ref(name).strip_prefix(META_HEADER_PREFIX)?;
            let value = values.first()?;
            Some((key.to_owned(), value.as_str().to_owned()))
        })
        .collect()
}

/// Retries of one publish before it is reported failed (same id each time).
const PUBLISH_RETRIES: usize = 5;

/// Publishes to JetStream with the envelope's id as `Nats-Msg-Id`, waiting
/// for the server's ack and retrying a failed publish with the same id. A
/// payload over the inline limit goes to the object store and a reference
/// to it is published instead; readers on this edge resolve it.
#[derive(Clone)]
pub struct NatsPublisher {
    pub(super) bus: NatsBus,
    pub(super) retry: Backoff,
}

/// Why one try failed.
enum Failure {
    /// Worth another try with the same id.
    Transient(String),
    /// Retrying the same bytes cannot succeed.
    Permanent(String),
}

#[async_trait]
impl Publisher for NatsPublisher {
    async fn publish(&self, queue: &str, message: Envelope) -> Result<(), EdgeError> {
        let subject = self.bus.topology.subject(queue);
        let queue = self.bus.topology.queue(queue).to_owned();
        let config = &self.bus.payloads.config;
        let size = message.payload.len();
        if size > config.max_bytes {
            return Err(EdgeError::Rejected {
                queue,
                id: message.id,
                reason: format!(
                    "payload of {size} bytes is over the limit of {} bytes for one message; raise --max-payload (ORCHESTRATOR_MAX_PAYLOAD) if such outputs are expected",
                    config.max_bytes
                ),
            });
        }
        // Stored once: a failed reference publish retries only the reference.
        let reference = OnceCell::new();
        let tried = (|| self.try_publish(&subject, &queue, &message, &reference))
            .retry(self.retry.retries(PUBLISH_RETRIES))
            .sleep(tokio::time::sleep)
            .when(|failure| matches!(failure, Failure::Transient(_)))
            .notify(|failure, delay| {
                crate::metrics::publish_error(&queue);
                if let Failure::Transient(reason) = failure {
                    tracing::warn!(%subject, id = %message.id, %reason, retry_in = ?delay, "publish failed; retrying with the same id");
                }
            })
            .await;
        if tried.is_err() {
            crate::metrics::publish_error(&queue);
        }
        match tried {
            Ok(()) => Ok(()),
            Err(Failure::Permanent(reason)) => Err(EdgeError::Rejected {
                queue,
                id: message.id,
                reason,
            }),
            Err(Failure::Transient(reason)) => Err(EdgeError::Publish {
                queue: subject,
                id: message.id,
                reason,
            }),
        }
    }

    async fn publish_many(&self, queue: &str, messages: Vec<Envelope>) -> Result<(), EdgeError> {
        self.pipelined(queue, messages).await
    }
}

impl NatsPublisher {
    /// [`Publisher::publish_many`]: every message sent before any ack is
    /// awaited, so the batch costs about one round trip; JetStream stores
    /// the messages of one connection in the order they were sent. A
    /// message too large to travel inline (its payload goes to the object
    /// store first) waits until those before it are stored, and goes
    /// through [`Publisher::publish`], so the order holds for it too.
    async fn pipelined(&self, queue: &str, messages: Vec<Envelope>) -> Result<(), EdgeError> {
        let subject = self.bus.topology.subject(queue);
        let inline_limit = self.bus.payloads.config.inline_limit;
        let mut sent = Vec::with_capacity(messages.len());
        for message in messages {
            if message.payload.len() > inline_limit {
                self.settle(queue, &subject, std::mem::take(&mut sent))
                    .await?;
                self.publish(queue, message).await?;
                continue;
            }
            let ack = self
                .bus
                .js
                .send_publish(subject.clone(), Self::inline(&message))
                .await
                .map_err(|e| e.to_string());
            sent.push((message, ack));
        }
        self.settle(queue, &subject, sent).await
    }

    /// Awaits the acks of pipelined publishes, in order. One whose first
    /// try failed goes through [`Publisher::publish`], with its retries and
    /// the same id, which the stream deduplicates if that try was stored
    /// after all; messages after it may be stored before it then, which the
    /// trait documents.
    async fn settle(
        &self,
        queue: &str,
        subject: &str,
        sent: Vec<(Envelope, Result<PublishAckFuture, String>)>,
    ) -> Result<(), EdgeError> {
        for (message, ack) in sent {
            let first_try = match ack {
                Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                Err(reason) => Err(reason),
            };
            if let Err(reason) = first_try {
                crate::metrics::publish_error(self.bus.topology.queue(queue));
                tracing::warn!(%subject, id = %message.id, %reason, "pipelined publish failed; retrying with the same id");
                self.publish(queue, message).await?;
            }
        }
        Ok(())
    }

    /// A message with the id and metadata of `message`, without a payload.
    fn headed(message: &Envelope) -> PublishMessage {
        let mut publish = PublishMessage::build().message_id(&message.id);
        for (key, value) in &message.meta {
            publish = publish.header(
                format!("{META_HEADER_PREFIX}{key}").as_str(),
                value.as_str(),
            );
        }
        publish
    }

    /// The message carrying `message` inline, with its id and metadata.
    fn inline(message: &Envelope) -> PublishMessage {
        Self::headed(message).payload(message.payload.clone().into())
    }

    /// One try: store the payload if it is large and not stored yet, then
    /// publish the payload or its reference.
    async fn try_publish(
        &self,
        subject: &str,
        queue: &str,
        message: &Envelope,
        reference: &OnceCell<PayloadRef>,
    ) -> Result<(), Failure> {
        let payloads = &self.bus.payloads;
        let publish = if message.payload.len() <= payloads.config.inline_limit {
            Self::inline(message)
        } else {
            let stored = reference
                .get_or_try_init(|| async {
                    payloads
                        .store(queue, &message.id, &message.payload)
                        .await
                        .map_err(Failure::Transient)
                })
                .await?;
            let body = serde_json::to_vec(stored).expect("a reference serializes");
            Self::headed(message)
                .header(PAYLOAD_OBJECT_HEADER, stored.name.as_str())
                .payload(body.into())
        };
        let ack = self
            .bus
            .js
            .send_publish(subject.to_owned(), publish)
            .await
            .map_err(|e| {
                if e.kind() == PublishErrorKind::MaxPayloadExceeded
                    || e.to_string().to_lowercase().contains("maximum payload")
                {
                    Failure::Permanent(format!(
                        "the server refused the message as too large ({e}): the payload inline limit of {} bytes is above the server's max_payload; lower --inline-payload-limit (ORCHESTRATOR_INLINE_PAYLOAD_LIMIT) below it so larger payloads go to the object store",
                        payloads.config.inline_limit
                    ))
                } else {
                    Failure::Transient(e.to_string())
                }
            })?;
        ack.await
            .map(|_| ())
            .map_err(|e| Failure::Transient(e.to_string()))
    }
}

//! The NATS JetStream edge: a pull-consumer [`JobSource`], a deduplicating
//! [`Publisher`], and a key-value [`MatchStore`]. Role mode runs the same
//! actors as standalone mode on top of these. Payloads too large for one
//! message travel through the object store ([`payload`]), unseen by actors.
//!
//! [`JobSource`]: super::JobSource
//! [`Publisher`]: super::Publisher
//! [`MatchStore`]: super::match_store::MatchStore

mod connect;
mod follow;
mod lookup;
pub mod payload;
mod publish;
mod replicas;
mod source;
pub mod status;
mod store;

use std::time::Duration;

use std::sync::Arc;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType, Stream};
use async_nats::jetstream::{self, ErrorCode, kv};
use backon::Retryable;
use thiserror::Error;

pub use connect::{NatsOptions, shown_url};
pub use follow::NatsFollower;
pub use lookup::StoredProof;
pub use payload::{
    PAYLOAD_OBJECT_HEADER, PayloadConfig, PayloadError, PayloadRef, resolve_payload,
};
pub use publish::NatsPublisher;
pub use source::NatsSource;
pub use store::KvMatchStore;

use crate::backoff::Backoff;
use payload::Payloads;

/// Why the NATS edge could not be set up.
#[derive(Debug, Error)]
pub enum NatsError {
    /// The server could not be reached or refused the credentials.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The server URL, without credentials.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server refused the credentials; retrying them cannot help.
    #[error(
        "NATS at {url} refused the credentials (authorization violation): check NATS_USER and NATS_PASSWORD, NATS_TOKEN, NATS_CREDS or the user info in NATS_URL"
    )]
    Refused {
        /// The server URL, without credentials.
        url: String,
    },
    /// A credentials or CA file could not be read.
    #[error("cannot read {what} {path}: {reason}")]
    File {
        /// Which file (credentials, CA).
        what: &'static str,
        /// Its path.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// A JetStream request (stream, consumer, bucket) failed.
    #[error(
        "JetStream {what} failed: {reason} (the server must be nats-server >= 2.10 with JetStream on, `-js`, and allow these credentials to use it)"
    )]
    JetStream {
        /// What was attempted.
        what: String,
        /// The server's answer.
        reason: String,
    },
    /// A stored payload could not be read back.
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// The stream and subject naming of a deployment. Defaults match the
/// original template: stream `modularorchestrator`, subjects
/// `modularorchestrator.<queue>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Stream name.
    pub stream: String,
    /// Subject prefix; queues live at `<prefix>.<queue>`.
    pub prefix: String,
    /// Window in which a repeated message id is dropped.
    pub duplicate_window: Duration,
    /// Copies a NATS cluster keeps of the stream, the matcher's key-value
    /// bucket and the payload object store, so losing a node loses no
    /// message; 1 on a single server.
    pub replicas: usize,
}

impl Default for Topology {
    fn default() -> Self {
        Self::new("modularorchestrator")
    }
}

impl Topology {
    /// The topology of stream `name`, with subjects under the same name.
    pub fn new(name: &str) -> Self {
        Self {
            stream: name.to_owned(),
            prefix: name.to_owned(),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
        }
    }

    /// This topology with `replicas` copies of everything it creates.
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// The logical name of `queue`, given short (`blocks`) or full
    /// (`modularorchestrator.blocks`).
    pub fn queue<'a>(&self, queue: &'a str) -> &'a str {
        queue
            .strip_prefix(&self.prefix)
            .and_then(|q| q.strip_prefix('.'))
            .unwrap_or(queue)
    }

    /// The subject of `queue`.
    pub fn subject(&self, queue: &str) -> String {
        format!("{}.{}", self.prefix, self.queue(queue))
    }
}

/// How a consumer group reads its queues.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Durable name: instances with one name split the work.
    pub name: String,
    /// Logical queues it reads.
    pub queues: Vec<String>,
    /// Time the server waits for an ack (or in-progress ack) before redelivering.
    pub ack_wait: Duration,
    /// Deliveries before the server gives up; keep above the pool's attempts
    /// so the pool dead-letters first.
    pub max_deliver: i64,
}

/// One try at setting up the stream: worth another, or not.
enum Attempt {
    Again(NatsError),
    Stop(NatsError),
}

/// A connection to JetStream with the deployment's stream ensured.
#[derive(Clone)]
pub struct NatsBus {
    js: jetstream::Context,
    stream: Stream,
    topology: Topology,
    payloads: Arc<Payloads>,
}

impl NatsBus {
    /// Connects and creates the stream if it does not exist (idempotent).
    /// Payloads follow [`PayloadConfig::default`]; see [`NatsBus::with_payloads`].
    pub async fn connect(options: &NatsOptions, topology: Topology) -> Result<Self, NatsError> {
        Self::connect_with_retry(options, topology, None).await
    }

    /// [`NatsBus::connect`], retrying with `retry` while the server is not
    /// up yet, on one client (a new client per attempt would leave sockets
    /// behind). Refused credentials and unreadable files end it at once.
    pub async fn connect_with_retry(
        options: &NatsOptions,
        topology: Topology,
        retry: Option<Backoff>,
    ) -> Result<Self, NatsError> {
        let (client, refusals) = options.connect().await?;
        let js = jetstream::new(client);
        let config = StreamConfig {
            name: topology.stream.clone(),
            subjects: vec![format!("{}.>", topology.prefix)],
            storage: StorageType::File,
            duplicate_window: topology.duplicate_window,
            num_replicas: topology.replicas,
            ..Default::default()
        };
        let create = || async {
            match js.get_or_create_stream(config.clone()).await {
                Ok(stream) => Ok(stream),
                Err(e) if refusals.refused() => {
                    tracing::debug!(error = %e, "stream request failed after a refusal");
                    Err(Attempt::Stop(NatsError::Refused {
                        url: shown_url(&options.url),
                    }))
                }
                // More replicas than a single server can hold never works:
                // retrying would only repeat it.
                Err(e) if is_code(&e, ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED) => {
                    Err(Attempt::Stop(NatsError::JetStream {
                        what: format!(
                            "creating stream {} with {} replicas (ORCHESTRATOR_REPLICAS)",
                            topology.stream, topology.replicas
                        ),
                        reason: format!(
                            "{e}; set replicas to 1 for a single server, or at most the number of servers of the cluster"
                        ),
                    }))
                }
                Err(e) => Err(Attempt::Again(NatsError::JetStream {
                    what: format!("creating stream {}", topology.stream),
                    reason: e.to_string(),
                })),
            }
        };
        let schedule = match retry {
            Some(retry) => retry.forever(),
            None => Backoff::new(Duration::ZERO, Duration::ZERO).retries(0),
        };
        let stream = create
            .retry(schedule)
            .sleep(tokio::time::sleep)
            .when(|attempt| matches!(attempt, Attempt::Again(_)))
            .notify(|attempt, delay| {
                let (Attempt::Again(error) | Attempt::Stop(error)) = attempt;
                tracing::warn!(%error, retry_in = ?delay, "NATS not ready; retrying");
            })
            .await
            .map_err(|(Attempt::Again(error) | Attempt::Stop(error))| error)?;
        let payloads = Arc::new(Payloads::new(
            js.clone(),
            &topology,
            PayloadConfig::default(),
        ));
        Ok(Self {
            js,
            stream,
            topology,
            payloads,
        })
    }

    /// This bus with `config` deciding which payloads go to the object store
    /// (bucket `<stream>_payloads`) and how long they stay there.
    pub fn with_payloads(mut self, config: PayloadConfig) -> Self {
        let max_payload = self.js.client().max_payload();
        if config.inline_limit >= max_payload {
            tracing::warn!(
                inline_limit = config.inline_limit,
                max_payload,
                "the payload inline limit is not below the server's max_payload: payloads in between will be refused; lower --inline-payload-limit (ORCHESTRATOR_INLINE_PAYLOAD_LIMIT)"
            );
        }
        self.payloads = Arc::new(Payloads::new(self.js.clone(), &self.topology, config));
        self
    }

    /// Creates the payload bucket if it does not exist, or sets its
    /// retention to this bus's (idempotent; the `init` role calls it).
    /// Objects expire after the retention; a publisher creates the bucket on
    /// its first large payload when `init` has not.
    pub async fn ensure_payload_bucket(&self) -> Result<(), NatsError> {
        self.payloads
            .ensure()
            .await
            .map_err(|reason| NatsError::JetStream {
                what: format!("creating payload bucket {}", self.payloads.bucket),
                reason,
            })
    }

    /// Whether the client is connected to a server right now (it
    /// reconnects by itself); for readiness checks.
    pub fn is_connected(&self) -> bool {
        self.js.client().connection_state() == async_nats::connection::State::Connected
    }

    /// The topology this bus uses.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The subjects of `queues`, sorted and without repeats, as a
    /// consumer's filter.
    fn subjects(&self, queues: &[String]) -> Vec<String> {
        let mut subjects: Vec<String> = queues.iter().map(|q| self.topology.subject(q)).collect();
        subjects.sort();
        subjects.dedup();
        subjects
    }

    /// A source reading `spec.queues` as consumer `spec.name` (created if missing).
    pub async fn source(&self, spec: &ConsumerSpec) -> Result<NatsSource, NatsError> {
        let subjects = self.subjects(&spec.queues);
        let mut config = pull::Config {
            ack_policy: AckPolicy::Explicit,
            ack_wait: spec.ack_wait,
            max_deliver: spec.max_deliver,
            max_ack_pending: 10_000,
            ..Default::default()
        };
        if subjects.len() == 1 {
            config.filter_subject = subjects[0].clone();
        } else {
            config.filter_subjects = subjects;
        }
        config.durable_name = Some(spec.name.clone());
        // Create or update: a restart with a new ack wait or attempt limit
        // must apply it to the existing durable consumer, not keep the old one.
        let consumer: PullConsumer =
            self.stream
                .create_consumer(config)
                .await
                .map_err(|e| NatsError::JetStream {
                    what: format!("creating or updating consumer {}", spec.name),
                    reason: e.to_string(),
                })?;
        tracing::info!(consumer = %spec.name, queues = ?spec.queues, "consuming");
        Ok(NatsSource {
            consumer,
            bus: self.clone(),
            max_deliver: spec.max_deliver,
            drained: false,
        })
    }

    /// A publisher to this bus.
    pub fn publisher(&self) -> NatsPublisher {
        NatsPublisher {
            bus: self.clone(),
            retry: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        }
    }

    /// The last message payload published to `queue`, if any (a stored
    /// payload is read back).
    pub async fn last_payload(&self, queue: &str) -> Result<Option<Vec<u8>>, NatsError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self
            .stream
            .get_last_raw_message_by_subject(&self.topology.subject(queue))
            .await
        {
            Ok(message) => Ok(Some(
                self.payloads
                    .resolve(Some(&message.headers), &message.payload)
                    .await?
                    .into_owned(),
            )),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(NatsError::JetStream {
                what: format!("reading the last message of {queue}"),
                reason: e.to_string(),
            }),
        }
    }

    /// A key-value match store in `bucket` (created if missing), keys under `prefix`.
    pub async fn match_store(&self, bucket: &str, prefix: &str) -> Result<KvMatchStore, NatsError> {
        let store = match self.js.get_key_value(bucket).await {
            Ok(store) => store,
            Err(_) => self
                .js
                .create_key_value(kv::Config {
                    bucket: bucket.to_owned(),
                    history: 1,
                    max_age: Duration::from_secs(14 * 24 * 3600),
                    storage: StorageType::File,
                    num_replicas: self.topology.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| NatsError::JetStream {
                    what: format!("creating key-value bucket {bucket}"),
                    reason: e.to_string(),
                })?,
        };
        Ok(KvMatchStore {
            store,
            prefix: prefix.to_owned(),
        })
    }
}

/// Whether `error` is the JetStream API error `code`.
fn is_code(error: &async_nats::jetstream::context::CreateStreamError, code: ErrorCode) -> bool {
    use async_nats::jetstream::context::CreateStreamErrorKind;
    matches!(error.kind(), CreateStreamErrorKind::JetStream(e) if e.error_code() == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_given_short_or_full_map_to_one_subject() {
        let t = Topology::default();
        assert_eq!(t.subject("blocks"), "modularorchestrator.blocks");
        assert_eq!(
            t.subject("modularorchestrator.blocks"),
            "modularorchestrator.blocks"
        );
        assert_eq!(t.queue("modularorchestrator.block_proofs"), "block_proofs");
        assert_eq!(t.queue("steps"), "steps");
    }
}

//! The NATS JetStream edge: a pull-consumer [`JobSource`], a deduplicating
//! [`Publisher`], and a key-value [`MatchStore`]. Role mode runs the same
//! actors as standalone mode on top of these.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType, Stream};
use async_nats::jetstream::{self, AckKind, kv};
use async_trait::async_trait;
use futures_util::StreamExt;
use thiserror::Error;

use super::{AckHandle, Delivery, EdgeError, JobSource, Publisher};
use crate::actors::{BlockRecord, MatchStore};
use crate::backoff::Backoff;
use crate::messages::{DeadLetter, Envelope, queues};

/// Attempts of one publish before it is reported failed (same id each time).
const PUBLISH_ATTEMPTS: u32 = 6;
/// How long one pull waits for a message before asking again.
const PULL_EXPIRY: Duration = Duration::from_secs(10);

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
        "JetStream {what} failed: {reason} (is the server >= 2.10 with JetStream enabled, `-js`?)"
    )]
    JetStream {
        /// What was attempted.
        what: String,
        /// The server's answer.
        reason: String,
    },
}

/// How to reach and authenticate to the NATS server. Secrets stay in here:
/// nothing of this is logged but the URL's host.
#[derive(Clone, Default)]
pub struct NatsOptions {
    /// Server URL(s), comma separated: `nats://host:4222`, `tls://host:4222`.
    pub url: String,
    /// User name, with `password`.
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<String>,
    /// Authentication token.
    pub token: Option<String>,
    /// A `.creds` file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify the server's TLS certificate; implies TLS.
    pub ca_file: Option<PathBuf>,
    /// Connection name shown in the server's monitoring.
    pub name: String,
}

impl NatsOptions {
    /// Connects, retrying while the server is not up yet.
    pub async fn connect(&self) -> Result<async_nats::Client, NatsError> {
        let shown = shown_url(&self.url);
        let mut options = async_nats::ConnectOptions::new()
            .name(&self.name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| {
                let shown = shown.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(server = %shown, "connected to NATS")
                        }
                        async_nats::Event::Closed => {
                            tracing::info!(server = %shown, "NATS connection closed")
                        }
                        other => tracing::warn!(server = %shown, event = %other, "NATS connection"),
                    }
                }
            });
        // Credentials written into the URL are taken out of it, so the
        // client library never logs them; explicit settings win.
        let servers: Vec<(String, Option<Credentials>)> =
            self.url.split(',').map(split_credentials).collect();
        let from_url = servers.iter().find_map(|(_, c)| c.clone());
        match (&self.user, &self.password, &self.token, from_url) {
            (Some(user), Some(password), _, _) => {
                options = options.user_and_password(user.clone(), password.clone())
            }
            (_, _, Some(token), _) => options = options.token(token.clone()),
            (_, _, _, Some(Credentials::UserPassword(user, password))) => {
                options = options.user_and_password(user, password)
            }
            (_, _, _, Some(Credentials::Token(token))) => options = options.token(token),
            _ => {}
        }
        if let Some(path) = &self.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| NatsError::File {
                    what: "NATS credentials file",
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
        }
        if let Some(path) = &self.ca_file {
            if !path.is_file() {
                return Err(NatsError::File {
                    what: "NATS CA file",
                    path: path.display().to_string(),
                    reason: "no such file".into(),
                });
            }
            options = options
                .add_root_certificates(path.clone())
                .require_tls(true);
        }
        let servers: Vec<&str> = servers.iter().map(|(url, _)| url.as_str()).collect();
        // With retry_on_initial_connect, connect returns at once and the
        // client keeps trying; the first request then waits for the server.
        options
            .connect(servers)
            .await
            .map_err(|e| NatsError::Connect {
                url: shown_url(&self.url),
                reason: e.to_string(),
            })
    }
}

/// Credentials found in a server URL.
#[derive(Clone)]
enum Credentials {
    UserPassword(String, String),
    Token(String),
}

/// Splits `nats://user:pass@host:4222` (or `nats://token@host`) into the URL
/// without user info and the credentials.
fn split_credentials(url: &str) -> (String, Option<Credentials>) {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(s, r)| (s, r));
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let clean = if scheme.is_empty() {
        host.to_owned()
    } else {
        format!("{scheme}://{host}")
    };
    let credentials = match userinfo.split_once(':') {
        Some((user, password)) => Credentials::UserPassword(user.to_owned(), password.to_owned()),
        None => Credentials::Token(userinfo.to_owned()),
    };
    (clean, Some(credentials))
}

/// `url` (one or more servers) with user info removed, for logs.
pub fn shown_url(url: &str) -> String {
    url.split(',')
        .map(|u| split_credentials(u).0)
        .collect::<Vec<_>>()
        .join(",")
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
        }
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
    /// Only messages published from now on (for a watcher of results), not
    /// the stream's history; such a consumer is removed when idle.
    pub only_new: bool,
}

/// A connection to JetStream with the deployment's stream ensured.
#[derive(Clone)]
pub struct NatsBus {
    js: jetstream::Context,
    stream: Stream,
    topology: Topology,
}

impl NatsBus {
    /// Connects and creates the stream if it does not exist (idempotent).
    pub async fn connect(options: &NatsOptions, topology: Topology) -> Result<Self, NatsError> {
        let client = options.connect().await?;
        let js = jetstream::new(client);
        let config = StreamConfig {
            name: topology.stream.clone(),
            subjects: vec![format!("{}.>", topology.prefix)],
            storage: StorageType::File,
            duplicate_window: topology.duplicate_window,
            ..Default::default()
        };
        let stream = js
            .get_or_create_stream(config)
            .await
            .map_err(|e| NatsError::JetStream {
                what: format!("creating stream {}", topology.stream),
                reason: e.to_string(),
            })?;
        Ok(Self {
            js,
            stream,
            topology,
        })
    }

    /// The topology this bus uses.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A source reading `spec.queues` as consumer `spec.name` (created if missing).
    pub async fn source(&self, spec: &ConsumerSpec) -> Result<NatsSource, NatsError> {
        let mut subjects: Vec<String> = spec
            .queues
            .iter()
            .map(|q| self.topology.subject(q))
            .collect();
        subjects.sort();
        subjects.dedup();
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
        if spec.only_new {
            config.name = Some(spec.name.clone());
            config.deliver_policy = DeliverPolicy::New;
            config.inactive_threshold = Duration::from_secs(60);
        } else {
            config.durable_name = Some(spec.name.clone());
        }
        let consumer: PullConsumer = self
            .stream
            .get_or_create_consumer(&spec.name, config)
            .await
            .map_err(|e| NatsError::JetStream {
                what: format!("creating consumer {}", spec.name),
                reason: e.to_string(),
            })?;
        tracing::info!(consumer = %spec.name, queues = ?spec.queues, "consuming");
        Ok(NatsSource {
            consumer,
            bus: self.clone(),
        })
    }

    /// A publisher to this bus.
    pub fn publisher(&self) -> NatsPublisher {
        NatsPublisher {
            bus: self.clone(),
            retry: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        }
    }

    /// The last message payload published to `queue`, if any.
    pub async fn last_payload(&self, queue: &str) -> Result<Option<Vec<u8>>, NatsError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self
            .stream
            .get_last_raw_message_by_subject(&self.topology.subject(queue))
            .await
        {
            Ok(message) => Ok(Some(message.payload.to_vec())),
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

    async fn publish_once(&self, subject: &str, message: &Envelope) -> Result<(), String> {
        let publish = PublishMessage::build()
            .payload(message.payload.clone().into())
            .message_id(&message.id);
        let ack = self
            .js
            .send_publish(subject.to_owned(), publish)
            .await
            .map_err(|e| e.to_string())?;
        ack.await.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// Publishes to JetStream with the envelope's id as `Nats-Msg-Id`, waiting
/// for the server's ack and retrying a failed publish with the same id.
#[derive(Clone)]
pub struct NatsPublisher {
    bus: NatsBus,
    retry: Backoff,
}

#[async_trait]
impl Publisher for NatsPublisher {
    async fn publish(&self, queue: &str, message: Envelope) -> Result<(), EdgeError> {
        let subject = self.bus.topology.subject(queue);
        let mut failures = 0;
        loop {
            let Err(reason) = self.bus.publish_once(&subject, &message).await else {
                return Ok(());
            };
            failures += 1;
            if failures >= PUBLISH_ATTEMPTS {
                return Err(EdgeError::Publish {
                    queue: subject,
                    id: message.id,
                    reason,
                });
            }
            tracing::warn!(%subject, id = %message.id, %reason, attempt = failures, "publish failed; retrying with the same id");
            tokio::time::sleep(self.retry.delay(failures)).await;
        }
    }
}

/// A durable pull consumer that fetches one message per request, so a busy
/// worker never holds messages another host could be proving.
pub struct NatsSource {
    consumer: PullConsumer,
    bus: NatsBus,
}

#[async_trait]
impl JobSource for NatsSource {
    async fn next(&mut self) -> Option<Delivery> {
        let mut failures = 0;
        loop {
            let batch = self
                .consumer
                .batch()
                .max_messages(1)
                .expires(PULL_EXPIRY)
                .messages()
                .await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, "pulling from NATS failed; retrying");
                    tokio::time::sleep(
                        Backoff::new(Duration::from_millis(500), Duration::from_secs(10))
                            .delay(failures),
                    )
                    .await;
                    continue;
                }
            };
            while let Some(message) = batch.next().await {
                match message {
                    Ok(message) => return Some(self.delivery(message)),
                    Err(error) => tracing::debug!(%error, "pull ended without a message"),
                }
            }
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
        let letter = DeadLetter {
            queue: self.queue.clone(),
            id: self.id.clone(),
            attempts: self.attempt,
            error: reason.to_owned(),
            payload: String::from_utf8_lossy(&self.message.payload).into_owned(),
        };
        let payload = serde_json::to_vec(&letter).expect("dead letter serializes");
        let envelope = Envelope::new(
            format!("dead-{}-{}-{}", self.queue, self.id, self.attempt),
            payload,
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

/// The matcher's records in a JetStream key-value bucket, one key per block,
/// so a restarted or moved matcher continues where the last one stopped.
pub struct KvMatchStore {
    store: kv::Store,
    prefix: String,
}

impl KvMatchStore {
    fn key(&self, block: u64) -> String {
        format!("{}.{block}", self.prefix)
    }

    fn failed(&self, block: u64, e: impl std::fmt::Display) -> EdgeError {
        EdgeError::Ack {
            id: self.key(block),
            reason: format!("match store: {e}"),
        }
    }
}

#[async_trait]
impl MatchStore for KvMatchStore {
    async fn load(&self, block: u64) -> Result<Option<BlockRecord>, EdgeError> {
        let Some(bytes) = self
            .store
            .get(self.key(block))
            .await
            .map_err(|e| self.failed(block, e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.failed(block, e))
    }

    async fn save(&self, block: u64, record: &BlockRecord) -> Result<(), EdgeError> {
        let bytes = serde_json::to_vec(record).expect("record serializes");
        self.store
            .put(self.key(block), bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| self.failed(block, e))
    }
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

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            shown_url("nats://user:secret@host:4222"),
            "nats://host:4222"
        );
        assert_eq!(
            shown_url("nats://a:4222, tls://t0ken@b:4222"),
            "nats://a:4222,tls://b:4222"
        );
        assert!(
            matches!(split_credentials("nats://u:p@h:1").1, Some(Credentials::UserPassword(u, p)) if u == "u" && p == "p")
        );
        assert!(
            matches!(split_credentials("t0ken@h:1"), (h, Some(Credentials::Token(t))) if h == "h:1" && t == "t0ken")
        );
    }
}

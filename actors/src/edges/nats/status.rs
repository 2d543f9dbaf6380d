//! What `orchestrator status` shows: one read-only look at a deployment's
//! JetStream state (the stream, its consumers, the last block and proof,
//! the dead letters, the buckets), as plain data the binary renders.
//!
//! Unlike [`super::NatsBus::connect`], nothing here creates anything: a
//! status that created the stream it was asked about would hide the very
//! fault (init never run) the operator is looking for.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{Client, HeaderMap};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use thiserror::Error;

use super::payload::{PayloadConfig, PayloadRef, Payloads, resolve_payload, tags};
use super::{NatsError, NatsOptions, Topology, shown_url};
use crate::messages::{DeadLetter, bounded, queues};

/// How many of the newest dead letters a status shows.
pub const NEWEST_DEAD_LETTERS: usize = 5;
/// The longest dead-letter reason a status shows, in characters: a reason
/// can quote a prover's stderr, and one screen must stay one screen.
pub const REASON_LIMIT: usize = 200;
/// How long a connection that has answered may take to say it is connected.
const STATE_GRACE: Duration = Duration::from_secs(2);
/// Messages asked for per fetch when reading the dead letters.
const SCAN_BATCH: usize = 256;

/// Why a status could not be read. Each says what to do about it.
#[derive(Debug, Error)]
pub enum StatusError {
    /// The server did not answer in time: the status is a look, not a wait.
    #[error(
        "NATS at {url} did not answer within a few seconds: is the server up and NATS_URL / --nats right?"
    )]
    Unreachable {
        /// The server URL, without credentials.
        url: String,
    },
    /// The stream does not exist: nothing has run against this server yet.
    #[error(
        "stream {stream} does not exist on NATS at {url}: run `orchestrator init` (or start any role) first, or pick the stream with --stream / INPUT_STREAM"
    )]
    NoStream {
        /// The stream asked for.
        stream: String,
        /// The server URL, without credentials.
        url: String,
    },
    /// Connecting, or a JetStream request, failed.
    #[error(transparent)]
    Nats(#[from] NatsError),
}

/// Everything `orchestrator status` shows, read at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// The server(s) asked, without credentials.
    pub server: String,
    /// The deployment's stream.
    pub stream: StreamStatus,
    /// Every durable consumer of the stream, by name. Ephemeral ones (a
    /// `proof get` scan, a test reader) come and go and are left out.
    pub consumers: Vec<ConsumerStatus>,
    /// The block of the last message on `blocks`: where a restarted watcher
    /// resumes. `None` when nothing was announced.
    pub last_block: Option<u64>,
    /// The last message on `completed_proofs`.
    pub last_completed: Option<LastCompleted>,
    /// The dead-letter queue.
    pub dead_letters: DeadLetters,
    /// The object store holding payloads over the inline limit; `None`
    /// until the first large payload or `init` created it.
    pub payloads: Option<BucketUsage>,
    /// The proof matcher's key-value bucket; `None` until a matcher ran.
    pub matcher: Option<BucketUsage>,
}

/// The stream's size and extent.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    /// Its name.
    pub name: String,
    /// The subjects it captures.
    pub subjects: Vec<String>,
    /// Messages held.
    pub messages: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Copies a NATS cluster keeps.
    pub replicas: usize,
    /// The oldest sequence still held.
    pub first_sequence: u64,
    /// The newest sequence assigned.
    pub last_sequence: u64,
}

/// One consumer group: how far behind it is and what it is stuck on.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerStatus {
    /// Its durable name (shared by the hosts that split its work).
    pub name: String,
    /// The subjects it reads.
    pub filter_subjects: Vec<String>,
    /// Messages not delivered yet: the backlog.
    pub pending: u64,
    /// Messages delivered and not acknowledged yet: jobs running now (or
    /// lost with a host, until the ack wait redelivers them).
    pub in_flight: usize,
    /// Messages delivered more than once: retries and hand-backs.
    pub redelivered: usize,
}

/// The last completed proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastCompleted {
    /// Its stream sequence.
    pub sequence: u64,
    /// The block it proves, if its payload names one.
    pub block: Option<u64>,
    /// The prover that made it, if its payload names one.
    pub prover: Option<String>,
}

/// The dead-letter queue: how many, and the newest few.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetters {
    /// The stream's subject for them.
    pub subject: String,
    /// Dead letters held by the stream.
    pub count: u64,
    /// Up to [`NEWEST_DEAD_LETTERS`], newest first.
    pub newest: Vec<DeadLetterSummary>,
}

/// One dead letter, its reason cut to [`REASON_LIMIT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterSummary {
    /// Its stream sequence.
    pub sequence: u64,
    /// The consumer that gave up (empty in letters older than the field).
    pub consumer: String,
    /// The queue the job came from.
    pub queue: String,
    /// The job's message id.
    pub id: String,
    /// Deliveries made before giving up.
    pub attempts: u32,
    /// Why the last one failed, at most [`REASON_LIMIT`] characters.
    pub error: String,
}

/// The size of a key-value or object-store bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketUsage {
    /// The bucket's name.
    pub name: String,
    /// Objects (object store) or keys (key-value), deletion markers included.
    pub entries: u64,
    /// Bytes on the server, metadata included.
    pub bytes: u64,
}

/// Reads the status of `topology`'s stream on the server of `options`; the
/// matcher's bucket is `matcher_bucket`. Gives up after the connection's
/// first-answer wait (a few seconds) when the server does not answer.
pub async fn cluster_status(
    options: &NatsOptions,
    topology: &Topology,
    matcher_bucket: &str,
) -> Result<ClusterStatus, StatusError> {
    let url = shown_url(&options.url);
    let client = connect(options).await?;
    let js = jetstream::new(client);
    let failed = |what: String| {
        move |e: &dyn std::fmt::Display| NatsError::JetStream {
            what,
            reason: e.to_string(),
        }
    };
    let mut stream = match js.get_stream(&topology.stream).await {
        Ok(stream) => stream,
        Err(e) if stream_not_found(&e) => {
            return Err(StatusError::NoStream {
                stream: topology.stream.clone(),
                url,
            });
        }
        Err(e) => return Err(failed(format!("reading stream {}", topology.stream))(&e).into()),
    };
    let info = stream
        .info()
        .await
        .map_err(|e| failed(format!("reading stream {}", topology.stream))(&e))?;
    let stream_status = StreamStatus {
        name: info.config.name.clone(),
        subjects: info.config.subjects.clone(),
        messages: info.state.messages,
        bytes: info.state.bytes,
        replicas: info.config.num_replicas,
        first_sequence: info.state.first_sequence,
        last_sequence: info.state.last_sequence,
    };
    let consumers = consumers(&stream).await?;
    let last_block = last_message(&stream, &topology.subject(queues::BLOCKS))
        .await?
        .and_then(|(_, _, body)| serde_json::from_slice::<u64>(&body).ok());
    let last_completed = last_message(&stream, &topology.subject(queues::COMPLETED_PROOFS))
        .await?
        .map(|(sequence, headers, body)| completed(sequence, &headers, &body));
    let dead_letters = dead_letters(&js, &stream, &topology.subject(queues::DEAD_LETTER)).await?;
    let payload_bucket = Payloads::new(js.clone(), topology, PayloadConfig::default()).bucket;
    let payloads = bucket_usage(
        &js,
        &payload_bucket,
        &format!("OBJ_{payload_bucket}"),
        // One metadata subject per object; the chunks have their own.
        Some(&format!("$O.{payload_bucket}.M.>")),
    )
    .await?;
    let matcher = bucket_usage(&js, matcher_bucket, &format!("KV_{matcher_bucket}"), None).await?;
    Ok(ClusterStatus {
        server: url,
        stream: stream_status,
        consumers,
        last_block,
        last_completed,
        dead_letters,
        payloads,
        matcher,
    })
}

/// A client that has answered, or [`StatusError::Unreachable`]. The
/// client's own retries are for services that wait for their server; a
/// status asked of a server that is down must say so at once.
async fn connect(options: &NatsOptions) -> Result<Client, StatusError> {
    // Waits up to its first-answer limit for the server.
    let (client, _refusals) = options.connect().await?;
    // The client sends its `Connected` event a moment before its state
    // says connected: give the state that moment, not another full wait.
    let deadline = tokio::time::Instant::now() + STATE_GRACE;
    while client.connection_state() != State::Connected {
        if tokio::time::Instant::now() >= deadline {
            return Err(StatusError::Unreachable {
                url: shown_url(&options.url),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(client)
}

/// Every durable consumer of `stream`, sorted by name.
async fn consumers(stream: &Stream) -> Result<Vec<ConsumerStatus>, NatsError> {
    let infos: Vec<_> =
        stream
            .consumers()
            .try_collect()
            .await
            .map_err(|e| NatsError::JetStream {
                what: "listing the consumers".into(),
                reason: e.to_string(),
            })?;
    let mut out: Vec<ConsumerStatus> = infos
        .into_iter()
        .filter(|info| info.config.durable_name.is_some())
        .map(|info| {
            let mut filter_subjects = info.config.filter_subjects.clone();
            if !info.config.filter_subject.is_empty() {
                filter_subjects.insert(0, info.config.filter_subject.clone());
            }
            ConsumerStatus {
                name: info.name,
                filter_subjects,
                pending: info.num_pending,
                in_flight: info.num_ack_pending,
                redelivered: info.num_redelivered,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The last message on `subject`: its sequence, headers and body.
async fn last_message(
    stream: &Stream,
    subject: &str,
) -> Result<Option<(u64, HeaderMap, Vec<u8>)>, NatsError> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => Ok(Some((m.sequence, m.headers, m.payload.to_vec()))),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(NatsError::JetStream {
            what: format!("reading the last message of {subject}"),
            reason: e.to_string(),
        }),
    }
}

/// The block and prover of a completed proof, from its reference when it
/// is stored (a large proof is not downloaded to learn two fields).
fn completed(sequence: u64, headers: &HeaderMap, body: &[u8]) -> LastCompleted {
    let (block, prover) = match PayloadRef::of(Some(headers), body) {
        Ok(Some(reference)) => (reference.block, reference.prover),
        Ok(None) => tags(body),
        Err(_) => (None, None),
    };
    LastCompleted {
        sequence,
        block,
        prover,
    }
}

/// The count and the newest [`NEWEST_DEAD_LETTERS`] of `subject`. There is
/// no "previous message on a subject" request, so the subject is read from
/// its start by an ephemeral consumer, headers only (a letter carries its
/// job's payload: thousands of them must not travel to count five), keeping
/// the newest sequences; only those few are then read whole.
async fn dead_letters(
    js: &jetstream::Context,
    stream: &Stream,
    subject: &str,
) -> Result<DeadLetters, NatsError> {
    let failed = |e: &dyn std::fmt::Display| NatsError::JetStream {
        what: format!("reading the dead letters on {subject}"),
        reason: e.to_string(),
    };
    let count = subject_count(stream, subject).await?;
    let mut newest: VecDeque<u64> = VecDeque::new();
    if count > 0 {
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                filter_subject: subject.to_owned(),
                headers_only: true,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| failed(&e))?;
        'scan: loop {
            let mut batch = consumer
                .fetch()
                .max_messages(SCAN_BATCH)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(|e| failed(&e))?;
            let mut fetched = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| failed(&e))?;
                fetched += 1;
                let info = message.info().map_err(|e| failed(&e))?;
                let (sequence, done) = (info.stream_sequence, info.pending == 0);
                if newest.len() == NEWEST_DEAD_LETTERS {
                    newest.pop_front();
                }
                newest.push_back(sequence);
                if done {
                    break 'scan;
                }
            }
            if fetched == 0 {
                break;
            }
        }
        let name = consumer.cached_info().name.clone();
        if let Err(error) = stream.delete_consumer(&name).await {
            tracing::debug!(%error, "dead-letter scan consumer left to expire");
        }
    }
    let mut summaries = Vec::with_capacity(newest.len());
    for sequence in newest.into_iter().rev() {
        // A letter removed since the scan (stream limits) is left out.
        match stream.get_raw_message(sequence).await {
            Ok(m) => summaries.push(summary(js, sequence, &m.headers, &m.payload).await),
            Err(error) => tracing::debug!(%error, sequence, "dead letter gone since the scan"),
        }
    }
    Ok(DeadLetters {
        subject: subject.to_owned(),
        count,
        newest: summaries,
    })
}

/// Messages on `subject` in `stream`.
async fn subject_count(stream: &Stream, subject: &str) -> Result<u64, NatsError> {
    let counts: Vec<(String, usize)> = stream
        .info_with_subjects(subject)
        .await
        .map_err(|e| NatsError::JetStream {
            what: format!("counting the messages on {subject}"),
            reason: e.to_string(),
        })?
        .try_collect()
        .await
        .map_err(|e| NatsError::JetStream {
            what: format!("counting the messages on {subject}"),
            reason: e.to_string(),
        })?;
    Ok(counts.iter().map(|(_, n)| *n as u64).sum())
}

/// One dead letter as shown. A letter that cannot be read is shown with
/// why, rather than failing the whole status.
async fn summary(
    js: &jetstream::Context,
    sequence: u64,
    headers: &HeaderMap,
    body: &[u8],
) -> DeadLetterSummary {
    let letter = match resolve_payload(js, Some(headers), body).await {
        Ok(payload) => serde_json::from_slice::<DeadLetter>(&payload)
            .map_err(|e| format!("not a dead letter: {e}")),
        Err(e) => Err(e.to_string()),
    };
    match letter {
        Ok(letter) => DeadLetterSummary {
            sequence,
            consumer: letter.consumer,
            queue: letter.queue,
            id: letter.id,
            attempts: letter.attempts,
            error: bounded(&letter.error, REASON_LIMIT),
        },
        Err(reason) => DeadLetterSummary {
            sequence,
            consumer: String::new(),
            queue: String::new(),
            id: headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default(),
            attempts: 0,
            error: bounded(&format!("unreadable: {reason}"), REASON_LIMIT),
        },
    }
}

/// Whether `error` says the stream does not exist.
fn stream_not_found(error: &GetStreamError) -> bool {
    matches!(error.kind(), GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// The usage of bucket `name`, backed by stream `stream_name`; entries are
/// the subjects matching `entry_subjects`, or the stream's messages.
/// `None` when the bucket does not exist.
async fn bucket_usage(
    js: &jetstream::Context,
    name: &str,
    stream_name: &str,
    entry_subjects: Option<&str>,
) -> Result<Option<BucketUsage>, NatsError> {
    let failed = |e: &dyn std::fmt::Display| NatsError::JetStream {
        what: format!("reading bucket {name}"),
        reason: e.to_string(),
    };
    let mut stream = match js.get_stream(stream_name).await {
        Ok(stream) => stream,
        Err(e) if stream_not_found(&e) => {
            return Ok(None);
        }
        Err(e) => return Err(failed(&e)),
    };
    let state = stream.info().await.map_err(|e| failed(&e))?.state.clone();
    let entries = match entry_subjects {
        Some(filter) => {
            let subjects: Vec<(String, usize)> = stream
                .info_with_subjects(filter)
                .await
                .map_err(|e| failed(&e))?
                .try_collect()
                .await
                .map_err(|e| failed(&e))?;
            subjects.len() as u64
        }
        None => state.messages,
    };
    Ok(Some(BucketUsage {
        name: name.to_owned(),
        entries,
        bytes: state.bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_on_a_character_boundary_and_marked() {
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("exactly10!", 10), "exactly10!");
        assert_eq!(bounded("ééééé", 3), "ééé…");
        assert_eq!(
            bounded(&"x".repeat(5000), REASON_LIMIT).chars().count(),
            REASON_LIMIT + 1
        );
    }

    #[test]
    fn a_completed_proof_is_named_by_its_reference_or_its_body() {
        let inline = completed(
            4,
            &HeaderMap::new(),
            br#"{"block":7,"prover":"sp1","proof":"0x"}"#,
        );
        assert_eq!(
            (inline.block, inline.prover.as_deref()),
            (Some(7), Some("sp1"))
        );
        let mut headers = HeaderMap::new();
        headers.insert(super::super::PAYLOAD_OBJECT_HEADER, "completed_proofs/x");
        let stored = completed(
            5,
            &headers,
            br#"{"bucket":"b","name":"completed_proofs/x","size":9,"block":8,"prover":"zisk"}"#,
        );
        assert_eq!(
            (stored.block, stored.prover.as_deref()),
            (Some(8), Some("zisk"))
        );
    }
}

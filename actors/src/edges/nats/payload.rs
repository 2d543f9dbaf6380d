//! Payloads too large for one NATS message: a claim check through the
//! JetStream object store. The publisher stores the bytes as an object and
//! publishes a small reference in their place; every reader on this edge
//! resolves the reference back to the bytes, so actors never see it. Small
//! payloads travel inline, byte for byte, exactly as the original template's
//! consumers expect them.
//!
//! A reference is a message with the header [`PAYLOAD_OBJECT_HEADER`] (the
//! object's name) and a JSON [`PayloadRef`] body:
//! `{"bucket":"modularorchestrator_payloads","name":"block_proofs/sp1:block-7","size":3145728,"block":7,"prover":"sp1"}`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::object_store::{self, GetErrorKind, ObjectMetadata, ObjectStore};
use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

use crate::edges::safe_name;

/// The header that marks a message as a reference; its value is the
/// object's name.
pub const PAYLOAD_OBJECT_HEADER: &str = "Orchestrator-Payload-Object";

/// The object store's own chunk size; smaller when the server's
/// `max_payload` is smaller.
const CHUNK_SIZE: usize = 128 * 1024;
/// A read of a stored payload that makes no progress for this long is given
/// up (its chunks may have expired just before its metadata).
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// When payloads leave the message for the object store, and for how long
/// they stay there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadConfig {
    /// Payloads up to this many bytes travel inside the message. Default
    /// 512 KiB: half of NATS's default `max_payload` (1 MiB), leaving room
    /// for headers, so block numbers, steps and most succinct proofs (ZisK,
    /// RISC Zero) stay inline and readable by the template's consumers. It
    /// must stay below the server's `max_payload`.
    pub inline_limit: usize,
    /// Payloads over this many bytes are refused for good. Default 64 MiB:
    /// ten times the largest proofs seen (OpenVM, collected step proofs; an
    /// execution proof is at most 4 MiB), and a bound on what a runaway
    /// prover output can write to the server's disk.
    pub max_bytes: usize,
    /// Stored payloads expire this long after they were written (the
    /// bucket's `max_age`); a reference read later is dead-lettered as gone.
    /// Default 7 days: a consumer down over a long weekend still finds its
    /// inputs, and `proof get` finds a week of proofs.
    pub retention: Duration,
}

impl Default for PayloadConfig {
    fn default() -> Self {
        Self {
            inline_limit: 512 * 1024,
            max_bytes: 64 * 1024 * 1024,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The body of a reference message: where the payload is, and enough about
/// it (`block`, `prover`) to find a block's proof without downloading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadRef {
    /// The object store bucket.
    pub bucket: String,
    /// The object's name in the bucket (`<queue>/<message id>`).
    pub name: String,
    /// The payload's size in bytes.
    pub size: usize,
    /// The payload's top-level `block`, when it is a JSON object with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// The payload's top-level `prover`, when it is a JSON object with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prover: Option<String>,
}

impl PayloadRef {
    /// The reference a message carries: `None` for an inline payload (no
    /// [`PAYLOAD_OBJECT_HEADER`]), an error when the header is there but the
    /// body is not a reference.
    pub fn of(
        headers: Option<&HeaderMap>,
        body: &[u8],
    ) -> Result<Option<PayloadRef>, PayloadError> {
        let Some(object) = headers.and_then(|h| h.get(PAYLOAD_OBJECT_HEADER)) else {
            return Ok(None);
        };
        serde_json::from_slice(body)
            .map(Some)
            .map_err(|e| PayloadError::Invalid {
                object: object.as_str().to_owned(),
                reason: e.to_string(),
            })
    }
}

/// The top-level `block` and `prover` of a JSON object payload, read without
/// building the whole document (the proof itself is skipped over).
pub(super) fn tags(payload: &[u8]) -> (Option<u64>, Option<String>) {
    let Ok(fields) = serde_json::from_slice::<BTreeMap<String, &RawValue>>(payload) else {
        return (None, None);
    };
    let block = fields
        .get("block")
        .and_then(|v| serde_json::from_str(v.get()).ok());
    let prover = fields
        .get("prover")
        .and_then(|v| serde_json::from_str(v.get()).ok());
    (block, prover)
}

/// Why a reference could not be turned back into its payload.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// The message is marked as a reference but its body is not one.
    #[error(
        "message marked {PAYLOAD_OBJECT_HEADER}: {object} has no valid reference body: {reason}"
    )]
    Invalid {
        /// The header's value.
        object: String,
        /// Why the body did not parse.
        reason: String,
    },
    /// The object (or its whole bucket) no longer exists: it expired after
    /// the bucket's retention, or was deleted.
    #[error(
        "payload object {name} in bucket {bucket} is gone ({reason}): stored payloads expire after the payload retention, or it was deleted"
    )]
    Gone {
        /// The bucket.
        bucket: String,
        /// The object's name.
        name: String,
        /// What the server said.
        reason: String,
    },
    /// The object store could not be read now; trying again later may work.
    #[error("payload object {name} in bucket {bucket} cannot be read now: {reason}")]
    Unavailable {
        /// The bucket.
        bucket: String,
        /// The object's name.
        name: String,
        /// What went wrong.
        reason: String,
    },
}

impl PayloadError {
    /// Whether reading the same reference again can never succeed.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, PayloadError::Unavailable { .. })
    }
}

/// The payload a raw JetStream message stands for: its body when it is
/// inline, the stored object's bytes when it is a reference. For readers
/// that hold no [`super::NatsBus`] (test harnesses, tools).
pub async fn resolve_payload<'a>(
    js: &jetstream::Context,
    headers: Option<&HeaderMap>,
    body: &'a [u8],
) -> Result<Cow<'a, [u8]>, PayloadError> {
    let Some(reference) = PayloadRef::of(headers, body)? else {
        return Ok(Cow::Borrowed(body));
    };
    let store = open_bucket(js, &reference).await?;
    read_object(js, &store, &reference).await.map(Cow::Owned)
}

/// The payload bucket of one stream: its name, its settings, and the handle
/// once opened, shared by every publisher and source of a bus.
pub(super) struct Payloads {
    js: jetstream::Context,
    pub(super) bucket: String,
    pub(super) config: PayloadConfig,
    /// Copies a cluster keeps of the bucket (see [`super::Topology::replicas`]).
    replicas: usize,
    store: Mutex<Option<ObjectStore>>,
}

impl Payloads {
    /// The payload bucket of `topology`'s stream: `<stream>_payloads`.
    pub(super) fn new(
        js: jetstream::Context,
        topology: &super::Topology,
        config: PayloadConfig,
    ) -> Self {
        Self {
            js,
            bucket: format!("{}_payloads", safe_name(&topology.stream)),
            config,
            replicas: topology.replicas,
            store: Mutex::new(None),
        }
    }

    /// The object name of message `id` on `queue`: the same for every retry
    /// of one publish, so a retry overwrites what an earlier try stored.
    pub(super) fn object_name(queue: &str, id: &str) -> String {
        format!("{queue}/{id}")
    }

    /// Creates the bucket, or sets an existing one's retention to ours.
    pub(super) async fn ensure(&self) -> Result<(), String> {
        let stream_name = format!("OBJ_{}", self.bucket);
        if let Ok(mut stream) = self.js.get_stream(&stream_name).await {
            let mut config = stream
                .info()
                .await
                .map_err(|e| e.to_string())?
                .config
                .clone();
            if config.max_age != self.config.retention {
                tracing::info!(bucket = %self.bucket, retention = ?self.config.retention, "changing the payload retention");
                config.max_age = self.config.retention;
                self.js
                    .update_stream(config)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        let store = self.open(true).await?;
        *self.store.lock().await = Some(store);
        Ok(())
    }

    /// The bucket, opened once; created (with our retention) when `create`
    /// and missing. A bucket that exists is used as it is: `init` sets it up.
    async fn handle(&self, create: bool) -> Result<ObjectStore, String> {
        let mut cached = self.store.lock().await;
        if let Some(store) = cached.as_ref() {
            return Ok(store.clone());
        }
        let store = self.open(create).await?;
        *cached = Some(store.clone());
        Ok(store)
    }

    async fn open(&self, create: bool) -> Result<ObjectStore, String> {
        let found = self.js.get_object_store(&self.bucket).await;
        if found.is_ok() || !create {
            return found.map_err(|e| e.to_string());
        }
        let config = object_store::Config {
            bucket: self.bucket.clone(),
            description: Some(format!(
                "payloads over {} bytes, referenced from their messages; expire after {:?}",
                self.config.inline_limit, self.config.retention
            )),
            max_age: self.config.retention,
            storage: StorageType::File,
            num_replicas: self.replicas,
            ..Default::default()
        };
        match self.js.create_object_store(config).await {
            Ok(store) => Ok(store),
            // Another process may have created it in between.
            Err(error) => self
                .js
                .get_object_store(&self.bucket)
                .await
                .map_err(|_| error.to_string()),
        }
    }

    /// Forgets the opened bucket, so the next use opens it anew (it may have
    /// been deleted and must be created again).
    async fn forget(&self) {
        *self.store.lock().await = None;
    }

    /// Stores `payload` of message `id` on `queue` and returns its reference.
    pub(super) async fn store(
        &self,
        queue: &str,
        id: &str,
        payload: &[u8],
    ) -> Result<PayloadRef, String> {
        let store = self.handle(true).await?;
        let (block, prover) = tags(payload);
        let name = Self::object_name(queue, id);
        let mut metadata = HashMap::from([
            ("queue".to_owned(), queue.to_owned()),
            ("id".to_owned(), id.to_owned()),
        ]);
        metadata.extend(block.map(|b| ("block".to_owned(), b.to_string())));
        metadata.extend(prover.clone().map(|p| ("prover".to_owned(), p)));
        let meta = ObjectMetadata {
            name: name.clone(),
            chunk_size: Some(CHUNK_SIZE.min(self.js.client().max_payload())),
            metadata,
            ..Default::default()
        };
        let mut reader = payload;
        if let Err(error) = store.put(meta, &mut reader).await {
            self.forget().await;
            return Err(format!(
                "storing payload object {name} in {}: {error}",
                self.bucket
            ));
        }
        Ok(PayloadRef {
            bucket: self.bucket.clone(),
            name,
            size: payload.len(),
            block,
            prover,
        })
    }

    /// [`resolve_payload`] with the bus's opened bucket.
    pub(super) async fn resolve<'a>(
        &self,
        headers: Option<&HeaderMap>,
        body: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, PayloadError> {
        Ok(match self.stored(headers, body).await? {
            Some(stored) => Cow::Owned(stored),
            None => Cow::Borrowed(body),
        })
    }

    /// The stored payload a message refers to; `None` when it is inline.
    pub(super) async fn stored(
        &self,
        headers: Option<&HeaderMap>,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, PayloadError> {
        match PayloadRef::of(headers, body)? {
            Some(reference) => self.fetch(&reference).await.map(Some),
            None => Ok(None),
        }
    }

    /// The bytes `reference` stands for.
    pub(super) async fn fetch(&self, reference: &PayloadRef) -> Result<Vec<u8>, PayloadError> {
        let store = if reference.bucket == self.bucket {
            match self.handle(false).await {
                Ok(store) => store,
                // Tells a missing bucket (gone) from an unreachable server.
                Err(_) => open_bucket(&self.js, reference).await?,
            }
        } else {
            open_bucket(&self.js, reference).await?
        };
        let read = read_object(&self.js, &store, reference).await;
        if matches!(read, Err(PayloadError::Unavailable { .. })) {
            self.forget().await;
        }
        read
    }
}

/// Opens the bucket `reference` points into.
async fn open_bucket(
    js: &jetstream::Context,
    reference: &PayloadRef,
) -> Result<ObjectStore, PayloadError> {
    match js.get_object_store(&reference.bucket).await {
        Ok(store) => Ok(store),
        Err(error) => Err(bucket_missing(js, reference)
            .await
            .unwrap_or_else(|| unavailable(reference, error))),
    }
}

/// [`PayloadError::Gone`] when the bucket of `reference` does not exist.
async fn bucket_missing(js: &jetstream::Context, reference: &PayloadRef) -> Option<PayloadError> {
    let error = js
        .get_stream(format!("OBJ_{}", reference.bucket))
        .await
        .err()?;
    match error.kind() {
        GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND => {
            Some(PayloadError::Gone {
                bucket: reference.bucket.clone(),
                name: reference.name.clone(),
                reason: "the bucket does not exist".into(),
            })
        }
        _ => None,
    }
}

fn unavailable(reference: &PayloadRef, error: impl std::fmt::Display) -> PayloadError {
    PayloadError::Unavailable {
        bucket: reference.bucket.clone(),
        name: reference.name.clone(),
        reason: error.to_string(),
    }
}

/// Reads the whole object; a read that stalls for [`READ_IDLE_TIMEOUT`] is
/// given up as unavailable (the next try finds the object complete or gone).
async fn read_object(
    js: &jetstream::Context,
    store: &ObjectStore,
    reference: &PayloadRef,
) -> Result<Vec<u8>, PayloadError> {
    let mut object = match store.get(&reference.name).await {
        Ok(object) => object,
        Err(error) if error.kind() == GetErrorKind::NotFound => {
            return Err(PayloadError::Gone {
                bucket: reference.bucket.clone(),
                name: reference.name.clone(),
                reason: error.to_string(),
            });
        }
        Err(error) => {
            return Err(bucket_missing(js, reference)
                .await
                .unwrap_or_else(|| unavailable(reference, error)));
        }
    };
    let mut bytes = Vec::with_capacity(object.info().size);
    loop {
        match tokio::time::timeout(READ_IDLE_TIMEOUT, object.read_buf(&mut bytes)).await {
            Ok(Ok(0)) => return Ok(bytes),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(unavailable(reference, error)),
            Err(_) => {
                return Err(unavailable(
                    reference,
                    format!(
                        "no data for {READ_IDLE_TIMEOUT:?} after {} of {} bytes",
                        bytes.len(),
                        object.info().size
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_come_from_top_level_fields_of_an_object_only() {
        assert_eq!(
            tags(br#"{"block":7,"proof":"0xff","prover":"sp1"}"#),
            (Some(7), Some("sp1".to_owned()))
        );
        assert_eq!(
            tags(br#"{"data":{"block":7},"task_id":"s0"}"#),
            (None, None)
        );
        assert_eq!(tags(br#"[7,"sp1"]"#), (None, None));
        assert_eq!(tags(b"7"), (None, None));
        assert_eq!(tags(br#"{"block":"7","prover":3}"#), (None, None));
    }

    #[test]
    fn a_reference_needs_the_header_and_a_body() {
        let reference = PayloadRef {
            bucket: "b".into(),
            name: "q/id".into(),
            size: 3,
            block: Some(7),
            prover: None,
        };
        let body = serde_json::to_vec(&reference).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"bucket":"b","name":"q/id","size":3,"block":7}"#
        );
        assert_eq!(PayloadRef::of(None, &body), Ok(None));
        let mut headers = HeaderMap::new();
        headers.insert(PAYLOAD_OBJECT_HEADER, "q/id");
        assert_eq!(PayloadRef::of(Some(&headers), &body), Ok(Some(reference)));
        assert!(matches!(
            PayloadRef::of(Some(&headers), b"7"),
            Err(PayloadError::Invalid { .. })
        ));
    }
}

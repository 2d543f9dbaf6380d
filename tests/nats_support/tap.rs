//! Reads what the roles published, straight from JetStream: an ephemeral
//! pull consumer on one subject, from the stream's first message, that
//! acknowledges nothing, so the roles' own consumers are not affected.
//! A message that refers to a payload in the object store (a large proof) is
//! read back to that payload, as the roles' own sources do.
//! Blocking on the outside, for plain `#[test]` functions.

use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures_util::StreamExt;
use orchestrator_actors::edges::nats::{PAYLOAD_OBJECT_HEADER, resolve_payload};
use serde_json::Value;
use tokio::runtime::Runtime;

/// The stream every queue lives in (the template's name).
pub const STREAM: &str = "modularorchestrator";

/// One message of the subject.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its `Nats-Msg-Id` header, if any.
    pub msg_id: Option<String>,
    /// Its payload (for a stored one, read back from the object store).
    pub payload: Vec<u8>,
    /// The object the payload was stored in, when it was too large to
    /// travel in the message.
    pub object: Option<String>,
}

impl Record {
    /// The payload as JSON; `Value::Null` if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }

    /// The payload as text, for failure messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Every message published on one subject, read so far.
pub struct Tap {
    runtime: Runtime,
    js: jetstream::Context,
    consumer: PullConsumer,
    /// `modularorchestrator.<queue>`.
    pub subject: String,
    /// The messages read so far, in stream order.
    pub records: Vec<Record>,
}

impl Tap {
    /// Opens a reader on `modularorchestrator.<queue>`, waiting up to
    /// `timeout` for a role to create the stream.
    pub fn open(nats_url: &str, queue: &str, timeout: Duration) -> Result<Tap, String> {
        let runtime = super::harness_runtime();
        let subject = format!("{STREAM}.{queue}");
        let (js, consumer) = runtime.block_on(async {
            let client = async_nats::connect(nats_url)
                .await
                .map_err(|e| format!("test reader cannot connect to {nats_url}: {e}"))?;
            let js = jetstream::new(client);
            let deadline = Instant::now() + timeout;
            let stream = loop {
                match js.get_stream(STREAM).await {
                    Ok(stream) => break stream,
                    Err(e) if Instant::now() > deadline => {
                        return Err(format!("stream {STREAM} not there after {timeout:?}: {e}"));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            let config = pull::Config {
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                filter_subject: subject.clone(),
                // The test may not read for a while (e.g. during a restart).
                inactive_threshold: Duration::from_secs(600),
                ..Default::default()
            };
            let consumer = stream
                .create_consumer(config)
                .await
                .map_err(|e| format!("cannot create a test reader on {subject}: {e}"))?;
            Ok::<_, String>((js, consumer))
        })?;
        Ok(Tap {
            runtime,
            js,
            consumer,
            subject,
            records: Vec::new(),
        })
    }

    /// One pull: waits up to `expires` for messages; returns how many came.
    fn pull(&mut self, expires: Duration) -> Result<usize, String> {
        let (js, consumer) = (&self.js, &self.consumer);
        let batch = self.runtime.block_on(async {
            let mut messages = consumer
                .batch()
                .max_messages(1000)
                .expires(expires)
                .messages()
                .await
                .map_err(|e| e.to_string())?;
            let mut batch = Vec::new();
            while let Some(message) = messages.next().await {
                let message = message.map_err(|e| e.to_string())?;
                let header = |name: &str| {
                    let headers = message.headers.as_ref();
                    headers
                        .and_then(|h| h.get(name))
                        .map(|v| v.as_str().to_owned())
                };
                let payload = resolve_payload(js, message.headers.as_ref(), &message.payload)
                    .await
                    .map_err(|e| e.to_string())?;
                batch.push(Record {
                    msg_id: header("Nats-Msg-Id"),
                    payload: payload.into_owned(),
                    object: header(PAYLOAD_OBJECT_HEADER),
                });
            }
            Ok::<_, String>(batch)
        });
        let batch = batch.map_err(|e| format!("reading {}: {e}", self.subject))?;
        let count = batch.len();
        self.records.extend(batch);
        Ok(count)
    }

    /// Reads until `done(records so far)` holds; an error after `timeout`.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Record]) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while !done(&self.records) {
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what} on {} ({} messages read)",
                    self.subject,
                    self.records.len()
                ));
            }
            self.pull(Duration::from_millis(300))?;
        }
        Ok(())
    }

    /// Keeps reading for `period`: a late duplicate of a message already
    /// seen shows up before the test checks for it. (The chain never stops,
    /// so "until quiet" would never come.)
    pub fn read_for(&mut self, period: Duration) -> Result<(), String> {
        let deadline = Instant::now() + period;
        while Instant::now() < deadline {
            self.pull(Duration::from_millis(300))?;
        }
        Ok(())
    }
}

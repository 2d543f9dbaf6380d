//! Every message sent on one subject, as core NATS delivers it: a plain
//! subscription sees each publish, also one the stream then drops as a
//! duplicate of an id it holds. The stream's duplicate window (2 minutes) is
//! longer than a test, so a [`super::Tap`], which reads what the stream kept,
//! cannot tell a role that published something twice from one that did not;
//! a `Wire` can. Blocking on the outside, for plain `#[test]` functions.

use std::time::{Duration, Instant};

use async_nats::Subscriber;
use futures_util::StreamExt;
use tokio::runtime::Runtime;

use super::tap::STREAM;

/// The `Nats-Msg-Id`s of the messages sent on one subject, in order.
pub struct Wire {
    runtime: Runtime,
    subscriber: Subscriber,
    /// `modularorchestrator.<queue>`.
    pub subject: String,
    /// The `Nats-Msg-Id` of each message received so far (`None`: no id).
    pub ids: Vec<Option<String>>,
}

impl Wire {
    /// Subscribes to `modularorchestrator.<queue>`; what is sent from the
    /// moment this returns is received.
    pub fn open(nats_url: &str, queue: &str) -> Result<Wire, String> {
        let runtime = super::harness_runtime();
        let subject = format!("{STREAM}.{queue}");
        let subscriber = runtime.block_on(async {
            let client = async_nats::connect(nats_url)
                .await
                .map_err(|e| format!("test subscriber cannot connect to {nats_url}: {e}"))?;
            let subscriber = client
                .subscribe(subject.clone())
                .await
                .map_err(|e| format!("cannot subscribe to {subject}: {e}"))?;
            // The server has the subscription once it answered a ping after it.
            client
                .flush()
                .await
                .map_err(|e| format!("subscribing to {subject}: {e}"))?;
            Ok::<_, String>(subscriber)
        })?;
        Ok(Wire {
            runtime,
            subscriber,
            subject,
            ids: Vec::new(),
        })
    }

    /// Takes in what was received, waiting at most `wait` for the first.
    fn receive(&mut self, wait: Duration) {
        let subscriber = &mut self.subscriber;
        let ids = &mut self.ids;
        self.runtime.block_on(async {
            let mut wait = wait;
            while let Ok(Some(message)) = tokio::time::timeout(wait, subscriber.next()).await {
                let id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_owned());
                ids.push(id);
                wait = Duration::ZERO;
            }
        });
    }

    /// Receives until `done(ids so far)` holds; an error after `timeout`.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Option<String>]) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.receive(Duration::ZERO);
            if done(&self.ids) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what} sent on {} ({} messages received)",
                    self.subject,
                    self.ids.len()
                ));
            }
            self.receive(Duration::from_millis(300));
        }
    }
}

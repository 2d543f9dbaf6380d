//! Finding a block's proofs on a queue, for `orchestrator proof get`: a
//! linear scan of the queue's subject that downloads only the stored
//! payloads of the block asked for.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures_util::StreamExt;

use super::payload::{PayloadError, PayloadRef, tags};
use super::{NatsBus, NatsError};

/// Messages asked for per fetch of the scan.
const SCAN_BATCH: usize = 64;

/// One proof of a block found on a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProof {
    /// The payload's top-level `prover`, if it has one.
    pub prover: Option<String>,
    /// The payload, byte for byte as it was published.
    pub payload: Vec<u8>,
}

impl NatsBus {
    /// Every message on `queue` whose payload (inline) or reference (stored)
    /// has top-level `block == block`, read back to its original bytes, in
    /// stream order. A stored payload that is gone (expired after the
    /// retention) is left out with a warning; other read errors fail the call.
    pub async fn block_proofs(
        &self,
        queue: &str,
        block: u64,
    ) -> Result<Vec<StoredProof>, NatsError> {
        let subject = self.topology.subject(queue);
        let failed = |what: &str, e: &dyn std::fmt::Display| NatsError::JetStream {
            what: format!("{what} {subject}"),
            reason: e.to_string(),
        };
        let consumer = self
            .stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                filter_subject: subject.clone(),
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .map_err(|e| failed("scanning", &e))?;
        let mut proofs = Vec::new();
        'scan: loop {
            let mut batch = consumer
                .fetch()
                .max_messages(SCAN_BATCH)
                .messages()
                .await
                .map_err(|e| failed("scanning", &e))?;
            let mut fetched = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| failed("scanning", &e))?;
                fetched += 1;
                let headers = message.headers.as_ref();
                match PayloadRef::of(headers, &message.payload) {
                    Ok(Some(reference)) if reference.block == Some(block) => {
                        match self.payloads.fetch(&reference).await {
                            Ok(payload) => proofs.push(StoredProof {
                                prover: reference.prover,
                                payload,
                            }),
                            Err(error @ PayloadError::Gone { .. }) => {
                                tracing::warn!(%error, block, "a proof of the block is no longer stored")
                            }
                            Err(error) => return Err(error.into()),
                        }
                    }
                    Ok(Some(_)) => {}
                    Err(error) => tracing::warn!(%error, "skipping a malformed reference"),
                    Ok(None) => {
                        let (found, prover) = tags(&message.payload);
                        if found == Some(block) {
                            proofs.push(StoredProof {
                                prover,
                                payload: message.payload.to_vec(),
                            });
                        }
                    }
                }
                if message.info().is_ok_and(|info| info.pending == 0) {
                    break 'scan;
                }
            }
            if fetched == 0 {
                break;
            }
        }
        let name = consumer.cached_info().name.clone();
        if let Err(error) = self.stream.delete_consumer(&name).await {
            tracing::debug!(%error, "scan consumer left to expire");
        }
        Ok(proofs)
    }
}

//! The proof matcher's state in a JetStream key-value bucket.

use async_nats::jetstream::kv;
use async_trait::async_trait;

use crate::actors::{BlockRecord, MatchStore};
use crate::edges::EdgeError;

/// The matcher's records in a JetStream key-value bucket, one key per block,
/// so a restarted or moved matcher continues where the last one stopped.
pub struct KvMatchStore {
    pub(super) store: kv::Store,
    pub(super) prefix: String,
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

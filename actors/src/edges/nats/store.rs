//! The proof matcher's state in a JetStream key-value bucket.

use async_nats::jetstream::kv;
use async_trait::async_trait;

use crate::edges::EdgeError;
use crate::edges::match_store::{BlockRecord, MatchStore};

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
        EdgeError::Store {
            key: self.key(block),
            reason: e.to_string(),
        }
    }
}

#[async_trait]
impl MatchStore for KvMatchStore {
    async fn load(&self, block: u64) -> Result<(BlockRecord, u64), EdgeError> {
        let entry = self
            .store
            .entry(self.key(block))
            .await
            .map_err(|e| self.failed(block, e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok((BlockRecord::default(), 0));
        };
        let record = serde_json::from_slice(&entry.value).map_err(|e| self.failed(block, e))?;
        Ok((record, entry.revision))
    }

    async fn save(&self, block: u64, record: &BlockRecord, revision: u64) -> Result<(), EdgeError> {
        let bytes = serde_json::to_vec(record).expect("record serializes");
        let written = if revision == 0 {
            self.store
                .create(self.key(block), bytes.into())
                .await
                .map_err(|e| self.failed(block, e))
        } else {
            self.store
                .update(self.key(block), bytes.into(), revision)
                .await
                .map_err(|e| self.failed(block, e))
        };
        written.map(|_| ())
    }
}

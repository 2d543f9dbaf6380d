//! What the block watcher reads from the chain: which head it follows, the
//! blocks it announces, and the node's pushes of new heads.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

use super::EdgeError;

/// Which head the watcher follows: how fresh the blocks are, against how
/// sure it is that they stay in the chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Follow {
    /// Blocks that can no longer change (about 13 minutes old on mainnet);
    /// the original template's choice, and the default.
    #[default]
    Finalized,
    /// Blocks justified by the beacon chain: a reorg past them is unlikely.
    Safe,
    /// The newest block, seconds old: what real-time provers prove. A reorg
    /// can replace it; the watcher then announces the new block again.
    Latest,
}

impl Follow {
    /// Its JSON-RPC block tag.
    pub fn tag(self) -> &'static str {
        match self {
            Follow::Finalized => "finalized",
            Follow::Safe => "safe",
            Follow::Latest => "latest",
        }
    }
}

impl fmt::Display for Follow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

impl FromStr for Follow {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "finalized" => Ok(Follow::Finalized),
            "safe" => Ok(Follow::Safe),
            "latest" => Ok(Follow::Latest),
            _ => Err(format!(
                "{text:?} is not a head to follow: use finalized, safe or latest"
            )),
        }
    }
}

/// One block as the watcher needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader {
    /// Its number.
    pub number: u64,
    /// Its hash, `0x`-prefixed hex.
    pub hash: String,
    /// Its parent's hash, `0x`-prefixed hex.
    pub parent_hash: String,
    /// Its timestamp, Unix seconds.
    pub timestamp: u64,
}

/// Reads the chain: the followed head and single blocks.
#[async_trait]
pub trait ChainHead: Send + Sync {
    /// The header of the head `follow` names.
    async fn head(&self, follow: Follow) -> Result<BlockHeader, EdgeError>;

    /// The header of block `number` on the node's current chain.
    async fn header(&self, number: u64) -> Result<BlockHeader, EdgeError>;

    /// A stream that yields whenever the node has a new head, if the
    /// endpoint can push (a WebSocket); `None` when it cannot (HTTP), so
    /// the watcher polls. The stream ends when the subscription is lost.
    async fn new_heads(&self) -> Option<Result<BoxStream<'static, ()>, EdgeError>> {
        None
    }
}

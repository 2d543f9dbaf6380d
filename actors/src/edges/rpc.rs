//! The Ethereum JSON-RPC edge: reads heads and blocks with alloy, over HTTP
//! or a WebSocket, and subscribes to new heads where the node can push them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_eips::BlockNumberOrTag;
use alloy_provider::{DynProvider, Provider, ProviderBuilder, WsConnect};
use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use url::Url;

use super::{BlockHeader, ChainHead, EdgeError, Follow};

/// Longest wait for one answer of the node (or for a WebSocket to open).
const RPC_TIMEOUT: Duration = Duration::from_secs(15);

/// The chain as seen through one JSON-RPC endpoint.
///
/// Only reads, so it carries no fillers or signers.
pub struct RpcChain {
    endpoint: Endpoint,
    /// The endpoint with any credentials removed, for logs and errors.
    shown_url: String,
    /// The endpoint as the HTTP client prints it in its errors, to be
    /// replaced by `shown_url` before an error is logged.
    full_url: String,
    /// Requests failed in a row; the first success after some is logged,
    /// so an operator who saw the failures also sees them end.
    failures: AtomicU32,
    /// When the node last answered; read by readiness checks.
    health: RpcHealth,
}

/// How requests reach the node.
enum Endpoint {
    /// One HTTP client; connections are made per request as needed.
    Http(DynProvider),
    /// A WebSocket, opened at the first request and again after an error:
    /// a node that is down at start must not stop the watcher, which
    /// retries on its own schedule.
    Ws {
        url: String,
        provider: tokio::sync::Mutex<Option<DynProvider>>,
    },
}

/// When an [`RpcChain`] last got an answer from its node, shared with
/// whoever reports readiness (`/readyz`): a watcher whose node stopped
/// answering is alive but not ready.
#[derive(Debug, Clone, Default)]
pub struct RpcHealth(Arc<Mutex<Option<Instant>>>);

impl RpcHealth {
    /// How long ago the node last answered; `None` if it never has.
    pub fn since_last_answer(&self) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|at| at.elapsed())
    }

    fn answered(&self) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    }
}

impl RpcChain {
    /// A reader for `url` (`http(s)://` or `ws(s)://`). Fails only on a
    /// malformed URL or another scheme; an unreachable node shows up later,
    /// as a retried [`EdgeError::Rpc`].
    pub fn new(url: &str) -> Result<Self, EdgeError> {
        let invalid = |why: String| EdgeError::Rpc {
            url: format!("{:?}", redact(url)),
            reason: format!(
                "{why}; set --rpc / L1_RPC to e.g. http://127.0.0.1:8545 or ws://127.0.0.1:8546"
            ),
        };
        let parsed = Url::parse(url).map_err(|e| invalid(format!("not a valid URL ({e})")))?;
        let full_url = parsed.to_string();
        let endpoint = match parsed.scheme() {
            "http" | "https" => Endpoint::Http(
                ProviderBuilder::new()
                    .disable_recommended_fillers()
                    .connect_http(parsed)
                    .erased(),
            ),
            "ws" | "wss" => Endpoint::Ws {
                url: full_url.clone(),
                provider: tokio::sync::Mutex::new(None),
            },
            other => return Err(invalid(format!("the scheme {other:?} is not supported"))),
        };
        Ok(Self {
            endpoint,
            shown_url: redact(url),
            full_url,
            failures: AtomicU32::new(0),
            health: RpcHealth::default(),
        })
    }

    /// When the node last answered, updated as it answers.
    pub fn health(&self) -> RpcHealth {
        self.health.clone()
    }

    /// Whether the node pushes new heads (a WebSocket endpoint).
    pub fn pushes_heads(&self) -> bool {
        matches!(self.endpoint, Endpoint::Ws { .. })
    }

    fn error(&self, reason: String) -> EdgeError {
        // HTTP client errors quote the whole URL, API key included.
        EdgeError::Rpc {
            url: self.shown_url.clone(),
            reason: reason.replace(&self.full_url, &self.shown_url),
        }
    }

    /// The provider to ask, opening the WebSocket if it is not open.
    async fn provider(&self) -> Result<DynProvider, EdgeError> {
        match &self.endpoint {
            Endpoint::Http(provider) => Ok(provider.clone()),
            Endpoint::Ws { url, provider } => {
                let mut open = provider.lock().await;
                if let Some(provider) = open.as_ref() {
                    return Ok(provider.clone());
                }
                let connect = ProviderBuilder::new()
                    .disable_recommended_fillers()
                    .connect_ws(WsConnect::new(url.clone()));
                let connected = tokio::time::timeout(RPC_TIMEOUT, connect)
                    .await
                    .map_err(|_| self.error(format!("WebSocket not open within {RPC_TIMEOUT:?}")))?
                    .map_err(|e| self.error(format!("opening the WebSocket: {}", with_causes(&e))))?
                    .erased();
                *open = Some(connected.clone());
                Ok(connected)
            }
        }
    }

    /// Forgets a WebSocket after an error, so the next request opens a new one.
    async fn reset(&self) {
        if let Endpoint::Ws { provider, .. } = &self.endpoint {
            provider.lock().await.take();
        }
    }

    /// The block `id` names, with the bookkeeping every request shares: a
    /// timeout, the failure count, health, and no secret in errors.
    async fn block(&self, id: BlockNumberOrTag) -> Result<BlockHeader, EdgeError> {
        let answer = async {
            let provider = self.provider().await?;
            // A node that accepts the connection and never answers must not
            // stall the watcher: give up and let its backoff retry.
            tokio::time::timeout(RPC_TIMEOUT, provider.get_block_by_number(id))
                .await
                .map_err(|_| self.error(format!("no answer within {RPC_TIMEOUT:?}")))?
                .map_err(|e| self.error(with_causes(&e)))?
                .ok_or_else(|| self.error(format!("the node has no {id} block yet")))
        };
        match answer.await {
            Ok(block) => {
                self.health.answered();
                let failures = self.failures.swap(0, Ordering::Relaxed);
                if failures > 0 {
                    tracing::info!(url = %self.shown_url, failures, "RPC recovered after {failures} failures");
                }
                let header = &block.header;
                Ok(BlockHeader {
                    number: header.number,
                    hash: header.hash.to_string(),
                    parent_hash: header.parent_hash.to_string(),
                    timestamp: header.timestamp,
                })
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.reset().await;
                Err(error)
            }
        }
    }
}

#[async_trait]
impl ChainHead for RpcChain {
    async fn head(&self, follow: Follow) -> Result<BlockHeader, EdgeError> {
        let tag = match follow {
            Follow::Finalized => BlockNumberOrTag::Finalized,
            Follow::Safe => BlockNumberOrTag::Safe,
            Follow::Latest => BlockNumberOrTag::Latest,
        };
        self.block(tag).await
    }

    async fn header(&self, number: u64) -> Result<BlockHeader, EdgeError> {
        self.block(BlockNumberOrTag::Number(number)).await
    }

    async fn new_heads(&self) -> Option<Result<BoxStream<'static, ()>, EdgeError>> {
        if !self.pushes_heads() {
            return None;
        }
        let subscribed = async {
            let provider = self.provider().await?;
            let subscription = tokio::time::timeout(RPC_TIMEOUT, provider.subscribe_blocks())
                .await
                .map_err(|_| {
                    self.error(format!("no newHeads subscription within {RPC_TIMEOUT:?}"))
                })?
                .map_err(|e| self.error(format!("subscribing to newHeads: {}", with_causes(&e))))?;
            Ok(subscription.into_stream().map(|_| ()).boxed())
        };
        let result = subscribed.await;
        if result.is_err() {
            self.reset().await;
        }
        Some(result)
    }
}

/// `error` followed by each of its causes, `: `-separated: the HTTP
/// client's own message ("error sending request for url (…)") hides why,
/// e.g. "Connection refused". A cause its parent already quotes is skipped.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let part = next.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = next.source();
    }
    text
}

/// Only the scheme, host and port of `url`: providers put API keys in the
/// user info, the path or the query, and logs must not show them.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) => parsed.origin().ascii_serialization(),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_credentials_and_keys() {
        assert_eq!(
            redact("https://user:secret@rpc.example/v1?key=abc"),
            "https://rpc.example"
        );
        assert!(RpcChain::new("not a url").is_err());
        let ftp = RpcChain::new("ftp://user:pw@node:21")
            .err()
            .unwrap()
            .to_string();
        assert!(
            ftp.contains("\"ftp\" is not supported") && !ftp.contains("pw"),
            "{ftp}"
        );
    }

    #[tokio::test]
    async fn errors_do_not_quote_the_api_key() {
        // Nothing listens on port 9 of loopback: the request fails at once.
        let chain = RpcChain::new("http://127.0.0.1:9/v3/SECRETKEY?apikey=SECRET2").unwrap();
        let error = chain.head(Follow::Finalized).await.unwrap_err().to_string();
        assert!(!error.contains("SECRET"), "{error}");
        assert!(error.contains("http://127.0.0.1:9"), "{error}");
        // The HTTP client's own message hides the cause; its sources say it.
        assert!(error.contains("Connection refused"), "{error}");
    }
}

//! The Ethereum JSON-RPC edge: reads the finalized head with alloy.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_eips::BlockNumberOrTag;
use alloy_provider::{DynProvider, Provider, ProviderBuilder};
use async_trait::async_trait;
use url::Url;

use super::{ChainHead, EdgeError};

/// Longest wait for one answer of the node.
const RPC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The chain as seen through one JSON-RPC endpoint.
///
/// Only reads the finalized block, so it carries no fillers or signers.
pub struct RpcChain {
    provider: DynProvider,
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
    /// A reader for `url` (http or https). Fails only on a malformed URL;
    /// an unreachable node shows up later, as a retried [`EdgeError::Rpc`].
    pub fn new(url: &str) -> Result<Self, EdgeError> {
        let parsed = Url::parse(url).map_err(|e| EdgeError::Rpc {
            url: format!("{url:?}"),
            reason: format!(
                "not a valid URL ({e}); set --rpc / L1_RPC to e.g. http://127.0.0.1:8545"
            ),
        })?;
        let full_url = parsed.to_string();
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(parsed)
            .erased();
        Ok(Self {
            provider,
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
}

#[async_trait]
impl ChainHead for RpcChain {
    async fn finalized_block(&self) -> Result<u64, EdgeError> {
        // HTTP client errors quote the whole URL, API key included.
        let rpc_error = |reason: String| EdgeError::Rpc {
            url: self.shown_url.clone(),
            reason: reason.replace(&self.full_url, &self.shown_url),
        };
        let request = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Finalized);
        // A node that accepts the connection and never answers must not
        // stall the watcher: give up and let its backoff retry.
        let answer = tokio::time::timeout(RPC_TIMEOUT, request)
            .await
            .map_err(|_| rpc_error(format!("no answer within {RPC_TIMEOUT:?}")))
            .and_then(|r| r.map_err(|e| rpc_error(with_causes(&e))))
            .and_then(|b| b.ok_or_else(|| rpc_error("the node has no finalized block yet".into())));
        match answer {
            Ok(block) => {
                self.health.answered();
                let failures = self.failures.swap(0, Ordering::Relaxed);
                if failures > 0 {
                    tracing::info!(url = %self.shown_url, failures, "RPC recovered after {failures} failures");
                }
                Ok(block.header.number)
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(error)
            }
        }
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
    }

    #[tokio::test]
    async fn errors_do_not_quote_the_api_key() {
        // Nothing listens on port 9 of loopback: the request fails at once.
        let chain = RpcChain::new("http://127.0.0.1:9/v3/SECRETKEY?apikey=SECRET2").unwrap();
        let error = chain.finalized_block().await.unwrap_err().to_string();
        assert!(!error.contains("SECRET"), "{error}");
        assert!(error.contains("http://127.0.0.1:9"), "{error}");
        // The HTTP client's own message hides the cause; its sources say it.
        assert!(error.contains("Connection refused"), "{error}");
    }
}

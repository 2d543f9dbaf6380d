//! The EthProofs API (`https://ethproofs.org/api/v0`, or staging) over HTTP:
//! one POST per report, its answer sorted into what the reporter must do.
//!
//! The API key lives in a [`SecretString`] and only ever reaches the
//! `Authorization` header: no log line or error here prints it.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// The three calls a cluster makes for each block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /proofs/queued`: a job for the block was taken.
    Queued,
    /// `POST /proofs/proving`: the prover binary started.
    Proving,
    /// `POST /proofs/proved`: the proof, with its proving time.
    Proved,
}

impl Endpoint {
    /// The path below the API's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Queued => "proofs/queued",
            Endpoint::Proving => "proofs/proving",
            Endpoint::Proved => "proofs/proved",
        }
    }
}

/// Why EthProofs refused a report for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400 (or another 4xx): this one report is malformed; others may pass.
    BadRequest,
    /// 401 or 403: the API key is wrong; no report can pass until it is fixed.
    BadKey,
    /// 404: unknown cluster (or API version); no report can pass.
    UnknownCluster,
}

impl Refusal {
    /// Whether every later report would be refused the same way, so the
    /// reporter must stop instead of trying each one.
    pub fn stops_reporting(self) -> bool {
        !matches!(self, Refusal::BadRequest)
    }

    /// What the operator should check.
    pub fn advice(self) -> &'static str {
        match self {
            Refusal::BadRequest => "the report was refused as a bad request",
            Refusal::BadKey => "the API key was refused: check ETHPROOFS_API_KEY",
            Refusal::UnknownCluster => {
                "unknown cluster or API version: check ETHPROOFS_CLUSTER_ID and ETHPROOFS_API_URL (e.g. https://ethproofs.org/api/v0)"
            }
        }
    }
}

/// What an answer means for the report that was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: recorded, with the `proof_id` EthProofs gave it, if any.
    Accepted {
        /// `proof_id` from the answer's body.
        proof_id: Option<String>,
    },
    /// 409: already recorded (the block is proved): nothing left to do.
    AlreadyDone,
    /// 429: too many requests; send again after `retry_after`, if given.
    RateLimited {
        /// The answer's `Retry-After`, in seconds.
        retry_after: Option<Duration>,
    },
    /// Refused for good; the status and the start of the answer's body.
    Refused {
        /// Why, as far as the status tells.
        refusal: Refusal,
        /// The HTTP status.
        status: u16,
        /// The start of the body, for the log and the dead letter.
        message: String,
    },
    /// 5xx, a timeout or a network error: worth sending again later.
    Unavailable {
        /// What went wrong.
        reason: String,
    },
}

/// Sends reports to EthProofs. The real one is [`HttpEthProofs`]; the
/// reporter's tests hand it a fake.
#[async_trait]
pub trait EthProofsApi: Send + Sync {
    /// POSTs `body` as JSON to `endpoint`.
    async fn post(&self, endpoint: Endpoint, body: &Value) -> Answer;
}

/// How much of an error body is kept: enough for EthProofs' message,
/// bounded so a large HTML error page does not flood the log.
const MESSAGE_LIMIT: usize = 300;

/// A longest Retry-After honoured; a larger one is taken as this.
const RETRY_AFTER_LIMIT: Duration = Duration::from_secs(600);

/// [`EthProofsApi`] over HTTPS with `Authorization: Bearer <key>`.
pub struct HttpEthProofs {
    client: reqwest::Client,
    base: String,
    key: SecretString,
}

impl HttpEthProofs {
    /// A client for the API at `base` (e.g. `https://ethproofs.org/api/v0`)
    /// with `key`. `timeout` bounds each request, upload of a large proof
    /// included.
    pub fn new(base: &str, key: SecretString, timeout: Duration) -> Result<Self, String> {
        let parsed = url::Url::parse(base).map_err(|e| {
            format!("ETHPROOFS_API_URL {base:?} is not a URL ({e}); expected e.g. https://ethproofs.org/api/v0")
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "ETHPROOFS_API_URL {base:?} is not an http(s) URL; expected e.g. https://ethproofs.org/api/v0"
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the EthProofs HTTP client: {e}"))?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    /// The URL of `endpoint`.
    pub fn url(&self, endpoint: Endpoint) -> String {
        format!("{}/{}", self.base, endpoint.path())
    }
}

#[async_trait]
impl EthProofsApi for HttpEthProofs {
    async fn post(&self, endpoint: Endpoint, body: &Value) -> Answer {
        let url = self.url(endpoint);
        let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
        let sent = self
            .client
            .post(&url)
            .bearer_auth(self.key.expose_secret())
            .header(CONTENT_TYPE, "application/json")
            .body(bytes)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                // reqwest's message names the URL, never the headers.
                return Answer::Unavailable {
                    reason: format!("POST {url}: {}", error_chain(&error)),
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(RETRY_AFTER_LIMIT));
        let text = response.text().await.unwrap_or_default();
        classify(status, retry_after, &text, &url)
    }
}

/// What `status` (with `retry_after` and the body `text`) means.
fn classify(status: StatusCode, retry_after: Option<Duration>, text: &str, url: &str) -> Answer {
    if status.is_success() {
        let proof_id = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("proof_id").cloned())
            .map(|id| match id {
                Value::String(s) => s,
                other => other.to_string(),
            });
        return Answer::Accepted { proof_id };
    }
    let message = bounded(text);
    match status {
        StatusCode::CONFLICT => Answer::AlreadyDone,
        StatusCode::TOO_MANY_REQUESTS => Answer::RateLimited { retry_after },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Answer::Refused {
            refusal: Refusal::BadKey,
            status: status.as_u16(),
            message,
        },
        StatusCode::NOT_FOUND => Answer::Refused {
            refusal: Refusal::UnknownCluster,
            status: status.as_u16(),
            message,
        },
        s if s.is_client_error() => Answer::Refused {
            refusal: Refusal::BadRequest,
            status: status.as_u16(),
            message,
        },
        _ => Answer::Unavailable {
            reason: format!("POST {url} answered {status}: {message}"),
        },
    }
}

/// The start of `text`, cut at a character boundary.
fn bounded(text: &str) -> String {
    let text = text.trim();
    if text.len() <= MESSAGE_LIMIT {
        return text.to_owned();
    }
    let mut end = MESSAGE_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes]", &text[..end], text.len())
}

/// `error` and its sources, so "connection refused" is not hidden behind
/// "error sending request".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_sorted_into_what_to_do() {
        let at =
            |code: u16, body: &str| classify(StatusCode::from_u16(code).unwrap(), None, body, "u");
        assert_eq!(
            at(200, r#"{"proof_id":7}"#),
            Answer::Accepted {
                proof_id: Some("7".into())
            }
        );
        assert_eq!(at(409, "already proved"), Answer::AlreadyDone);
        assert!(matches!(at(429, ""), Answer::RateLimited { .. }));
        for (code, refusal) in [
            (400, Refusal::BadRequest),
            (401, Refusal::BadKey),
            (404, Refusal::UnknownCluster),
            (413, Refusal::BadRequest),
        ] {
            assert!(
                matches!(at(code, "x"), Answer::Refused { refusal: r, .. } if r == refusal),
                "{code}"
            );
        }
        assert!(matches!(at(503, "down"), Answer::Unavailable { .. }));
        let long = "é".repeat(1000);
        let Answer::Refused { message, .. } = at(400, &long) else {
            panic!()
        };
        assert!(message.len() < 400, "{message}");
    }
}

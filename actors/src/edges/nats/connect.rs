//! Connecting to NATS: URLs, credentials, TLS. Secrets never reach a log.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::NatsError;

/// Longest wait at start for the server to accept or refuse the credentials.
const FIRST_ANSWER: Duration = Duration::from_secs(5);

/// How to reach and authenticate to the NATS server. Secrets stay in here:
/// nothing of this is logged but the URL's host.
#[derive(Clone, Default)]
pub struct NatsOptions {
    /// Server URL(s), comma separated: `nats://host:4222`, `tls://host:4222`.
    pub url: String,
    /// User name, with `password`.
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<String>,
    /// Authentication token.
    pub token: Option<String>,
    /// A `.creds` file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify the server's TLS certificate; implies TLS.
    pub ca_file: Option<PathBuf>,
    /// Connection name shown in the server's monitoring.
    pub name: String,
}

impl NatsOptions {
    /// Connects, retrying while the server is not up yet. The returned
    /// [`Refusals`] tells whether the server has refused the credentials.
    pub async fn connect(&self) -> Result<(async_nats::Client, Refusals), NatsError> {
        let shown = shown_url(&self.url);
        let refusals = Refusals::default();
        let seen = refusals.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name(&self.name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| {
                let shown = shown.clone();
                let seen = seen.clone();
                async move {
                    match event {
                        async_nats::Event::ServerError(
                            async_nats::ServerError::AuthorizationViolation,
                        ) => seen.note_refusal(&shown),
                        async_nats::Event::ClientError(error)
                            if error.to_string().contains("authorization violation") =>
                        {
                            seen.note_refusal(&shown)
                        }
                        async_nats::Event::Connected => {
                            seen.note_connected();
                            tracing::info!(server = %shown, "connected to NATS")
                        }
                        async_nats::Event::Closed => {
                            tracing::info!(server = %shown, "NATS connection closed")
                        }
                        other => {
                            let event = other.to_string();
                            match hint(&event) {
                                Some(hint) => {
                                    tracing::warn!(server = %shown, %event, hint, "NATS connection")
                                }
                                None => tracing::warn!(server = %shown, %event, "NATS connection"),
                            }
                        }
                    }
                }
            });
        // Credentials written into the URL are taken out of it, so the
        // client library never logs them; explicit settings win.
        let servers: Vec<(String, Option<Credentials>)> =
            self.url.split(',').map(split_credentials).collect();
        let from_url = servers.iter().find_map(|(_, c)| c.clone());
        match (&self.user, &self.password, &self.token, from_url) {
            (Some(user), Some(password), _, _) => {
                options = options.user_and_password(user.clone(), password.clone())
            }
            (_, _, Some(token), _) => options = options.token(token.clone()),
            (_, _, _, Some(Credentials::UserPassword(user, password))) => {
                options = options.user_and_password(user, password)
            }
            (_, _, _, Some(Credentials::Token(token))) => options = options.token(token),
            _ => {}
        }
        if let Some(path) = &self.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| NatsError::File {
                    what: "NATS credentials file",
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
        }
        if let Some(path) = &self.ca_file {
            if !path.is_file() {
                return Err(NatsError::File {
                    what: "NATS CA file",
                    path: path.display().to_string(),
                    reason: "no such file".into(),
                });
            }
            options = options
                .add_root_certificates(path.clone())
                .require_tls(true);
        }
        let servers: Vec<&str> = servers.iter().map(|(url, _)| url.as_str()).collect();
        // With retry_on_initial_connect, connect returns at once and the
        // client keeps trying; the first request then waits for the server.
        let client = options
            .connect(servers)
            .await
            .map_err(|e| NatsError::Connect {
                url: shown_url(&self.url),
                reason: e.to_string(),
            })?;
        // A server refuses credentials on the first attempt: waiting for
        // that answer stops the caller at once, instead of after a
        // JetStream request has timed out. A server that is down gets no
        // more than FIRST_ANSWER; the caller's retries take over.
        refusals.first_answer(FIRST_ANSWER).await;
        if refusals.refused() {
            return Err(NatsError::Refused {
                url: shown_url(&self.url),
            });
        }
        Ok((client, refusals))
    }
}

/// Whether the server refused a connection's credentials: the client keeps
/// retrying them, so this is how a caller tells "not up yet" (retry) from
/// "never going to work" (stop with a clear error).
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<RefusalState>);

#[derive(Debug, Default)]
struct RefusalState {
    refused: AtomicBool,
    /// Connected at least once: a refusal from then on (credentials
    /// revoked while running) is logged, as no caller returns it.
    connected: AtomicBool,
    /// Wakes [`NatsOptions::connect`] on the first answer, either kind.
    answered: Notify,
}

impl Refusals {
    /// Records a refusal. Before the first connection it is not logged: the
    /// caller ends with [`NatsError::Refused`], the one line the operator
    /// needs. Later it is logged once: a client retrying refused
    /// credentials would repeat it every attempt.
    fn note_refusal(&self, server: &str) {
        let first = !self.0.refused.swap(true, Ordering::Relaxed);
        if first && self.0.connected.load(Ordering::Relaxed) {
            tracing::error!(%server, "NATS refused the credentials (authorization violation)");
        }
        self.0.answered.notify_one();
    }

    fn note_connected(&self) {
        self.0.connected.store(true, Ordering::Relaxed);
        self.0.answered.notify_one();
    }

    /// Whether the server has said "authorization violation" at least once.
    pub fn refused(&self) -> bool {
        self.0.refused.load(Ordering::Relaxed)
    }

    /// Waits up to `limit` for the server's first answer: connected, or
    /// refused.
    async fn first_answer(&self, limit: Duration) {
        let answered = async {
            while !self.refused() && !self.0.connected.load(Ordering::Relaxed) {
                self.0.answered.notified().await;
            }
        };
        let _ = tokio::time::timeout(limit, answered).await;
    }
}

/// Credentials found in a server URL.
#[derive(Clone)]
enum Credentials {
    UserPassword(String, String),
    Token(String),
}

/// Splits `nats://user:pass@host:4222` (or `nats://token@host`) into the URL
/// without user info and the credentials.
fn split_credentials(url: &str) -> (String, Option<Credentials>) {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(s, r)| (s, r));
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let clean = if scheme.is_empty() {
        host.to_owned()
    } else {
        format!("{scheme}://{host}")
    };
    let credentials = match userinfo.split_once(':') {
        Some((user, password)) => Credentials::UserPassword(user.to_owned(), password.to_owned()),
        None => Credentials::Token(userinfo.to_owned()),
    };
    (clean, Some(credentials))
}

/// `url` (one or more servers) with user info removed, for logs.
pub fn shown_url(url: &str) -> String {
    url.split(',')
        .map(|u| split_credentials(u).0)
        .collect::<Vec<_>>()
        .join(",")
}

/// What an operator can do about a connection event. The client library
/// passes on only the kind of a connect error ("IO error", "TLS error"),
/// not its cause, so the log says where to look instead.
fn hint(event: &str) -> Option<&'static str> {
    if event.contains("IO error") {
        Some(
            "the server did not answer: check that nats-server runs at this URL and port, and that a TLS server is not reached with nats:// (or a plain one with tls://)",
        )
    } else if event.contains("TLS error") || event.contains("tls") {
        Some(
            "the TLS handshake failed: check that NATS_CA (--nats-ca) signed the server's certificate and that the URL's host name is in it",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            shown_url("nats://user:secret@host:4222"),
            "nats://host:4222"
        );
        assert_eq!(
            shown_url("nats://a:4222, tls://t0ken@b:4222"),
            "nats://a:4222,tls://b:4222"
        );
        assert!(
            matches!(split_credentials("nats://u:p@h:1").1, Some(Credentials::UserPassword(u, p)) if u == "u" && p == "p")
        );
        assert!(
            matches!(split_credentials("t0ken@h:1"), (h, Some(Credentials::Token(t))) if h == "h:1" && t == "t0ken")
        );
    }
}

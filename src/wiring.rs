//! The wiring both modes share: how settings become the actors' configs and
//! the NATS edge. `orchestrator run` ([`crate::standalone`]) and the roles
//! ([`crate::roles`]) build the same actors on the same edges; keeping that
//! here means neither mode borrows from the other, and a setting reaches both
//! modes by one change.

use std::time::Duration;

use anyhow::Context as _;
use orchestrator_actors::actors::{Backlog, PoolConfig, Route, WatcherConfig};
use orchestrator_actors::backoff::Backoff;
use orchestrator_actors::edges::nats::{
    ConsumerSpec, NatsBus, NatsOptions, PayloadConfig, Topology,
};
use orchestrator_actors::edges::safe_name;
use orchestrator_actors::shutdown::{Lifeline, Shutdown};

use secrecy::ExposeSecret;

use crate::config::Settings;

/// A durable consumer reading `queues`. A prover pool passes its
/// `max_attempts`: the server's limit stays above it, so the pool dead-letters
/// a job before the server could drop it. Other consumers fail only when the
/// infrastructure does, so their messages are redelivered without limit.
pub fn consumer_spec(
    name: &str,
    queues: &[String],
    max_attempts: Option<u32>,
    s: &Settings,
) -> ConsumerSpec {
    ConsumerSpec {
        name: name.to_owned(),
        queues: queues.to_vec(),
        ack_wait: s.ack_wait,
        max_deliver: max_attempts.map_or(-1, |attempts| i64::from(attempts) + 3),
    }
}

/// The NATS connection settings of `s`.
pub fn nats_options(s: &Settings, name: &str) -> anyhow::Result<NatsOptions> {
    let url = s.nats_url.clone().context(
        "NATS_URL is not set: set it (or --nats) to the server, e.g. nats://127.0.0.1:4222",
    )?;
    Ok(NatsOptions {
        url,
        user: s.nats_user.clone(),
        password: s
            .nats_password
            .as_ref()
            .map(|p| p.expose_secret().to_owned()),
        token: s.nats_token.as_ref().map(|t| t.expose_secret().to_owned()),
        creds_file: s.nats_creds.clone(),
        ca_file: s.nats_ca.clone(),
        name: format!("orchestrator-{name}"),
    })
}

/// Connects to NATS and ensures the stream, retrying until the server answers.
pub async fn connect(s: &Settings, name: &str) -> anyhow::Result<NatsBus> {
    let options = nats_options(s, name)?;
    let retry = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let bus = NatsBus::connect_with_retry(&options, topology(s), Some(retry)).await?;
    Ok(bus.with_payloads(payload_config(s)))
}

/// The stream of `s`, with the replicas anything it creates gets.
pub fn topology(s: &Settings) -> Topology {
    Topology::new(&s.input_stream).with_replicas(s.replicas)
}

/// Where payloads too large for a NATS message go, from `s`.
pub fn payload_config(s: &Settings) -> PayloadConfig {
    PayloadConfig {
        inline_limit: s.inline_payload_limit,
        max_bytes: s.max_payload,
        retention: s.payload_retention,
    }
}

/// The watcher settings of `s`, starting at `from`, announcing to `queue`.
pub fn watcher_config(s: &Settings, from: Option<u64>, queue: &str) -> WatcherConfig {
    WatcherConfig {
        from,
        to: s.to_block,
        every: s.every,
        follow: s.follow().unwrap_or_default(),
        backlog: s.backlog().unwrap_or_default(),
        poll_interval: s.poll_interval,
        backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        queue: queue.to_owned(),
    }
}

/// The pool settings of `s` for a pool named `name`. A pool that shares its
/// queue with other hosts pauses its intake after failures (see
/// [`PoolConfig::pause_after_failure`]); a lone one has nobody to leave work to.
pub fn pool_config(
    s: &Settings,
    name: String,
    routes: Vec<Route>,
    shares_queue: bool,
) -> PoolConfig {
    PoolConfig {
        name,
        workers: s.workers,
        gpus: s.gpu_list(),
        max_attempts: s.max_attempts,
        retry: Backoff::new(
            s.retry_delay,
            s.retry_delay
                .saturating_mul(32)
                .max(Duration::from_secs(60)),
        ),
        pause_after_failure: shares_queue,
        restart: Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
        progress_interval: s.progress_interval,
        routes,
        max_age: match s.backlog() {
            Ok(Backlog::Newest { max_age }) => Some(max_age),
            _ => None,
        },
    }
}

/// The key-value bucket of the proof matchers of `s`'s stream.
pub fn matcher_bucket(s: &Settings) -> String {
    let stream = safe_name(&s.input_stream);
    format!("{stream}_matcher")
}

/// Where a restarted watcher starts: after the last block it published, and
/// never before `next_block`.
pub async fn resume_point(
    bus: &NatsBus,
    queue: &str,
    next_block: Option<u64>,
) -> anyhow::Result<Option<u64>> {
    let last = bus
        .last_payload(queue)
        .await?
        .and_then(|p| serde_json::from_slice::<u64>(&p).ok());
    if let Some(last) = last {
        tracing::info!(last, "resuming after the last block published");
    }
    Ok(resume_from(next_block, last))
}

/// The first block to announce given `NEXT_BLOCK` and the last one published.
fn resume_from(next_block: Option<u64>, last_published: Option<u64>) -> Option<u64> {
    match (next_block, last_published) {
        (Some(next), Some(last)) => Some(next.max(last + 1)),
        (None, Some(last)) => Some(last + 1),
        (next, None) => next,
    }
}

/// A prover whose pool is gone holds its consumer and proves nothing. The
/// pool never stops on its own (not even at shutdown, which stops the whole
/// system), so a stopped pool died: exit 1 and let the supervisor (compose,
/// systemd, Kubernetes) restart the process.
pub fn pool_lifeline(shutdown: &Shutdown) -> Lifeline {
    shutdown.lifeline(1, "the prover pool stopped unexpectedly")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watcher_resumes_after_the_last_published_block() {
        assert_eq!(resume_from(Some(100), None), Some(100));
        assert_eq!(resume_from(Some(100), Some(140)), Some(141));
        assert_eq!(
            resume_from(Some(100), Some(40)),
            Some(100),
            "NEXT_BLOCK is a lower bound"
        );
        assert_eq!(resume_from(None, Some(7)), Some(8));
        assert_eq!(resume_from(None, None), None);
    }
}

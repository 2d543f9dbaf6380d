//! Role mode: one role per process, edges on NATS JetStream. The actors are
//! the ones standalone mode runs; only their sources and sinks differ.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::{Context as _, bail};
use orchestrator_actors::actors::{
    BlockWatcher, PoolConfig, ProofMatcher, ProverPool, Route, StepCollector, WatcherConfig, pump,
};
use orchestrator_actors::backoff::Backoff;
use orchestrator_actors::edges::nats::{
    ConsumerSpec, NatsBus, NatsOptions, PayloadConfig, Topology,
};
use orchestrator_actors::edges::process::ProcessRunner;
use orchestrator_actors::edges::rpc::RpcChain;
use orchestrator_actors::edges::safe_name;
use orchestrator_actors::messages::queues;
use orchestrator_actors::shutdown::Shutdown;

use crate::config::{Secret, Settings};

/// One process's job in a distributed deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Create the stream and bucket, then exit.
    Init,
    /// Announce finalized blocks.
    BlockWatcher,
    /// Run prover workers on jobs.
    Prover,
    /// Match block proofs to blocks.
    ProofMatcher,
    /// Group step proofs for the aggregator.
    StepCollector,
}

impl Role {
    /// The role the template's `collector` command runs for `STRATEGY`.
    pub fn from_strategy(strategy: Option<&str>) -> anyhow::Result<Self> {
        match strategy.map(str::to_ascii_lowercase).as_deref() {
            Some("block") => Ok(Role::BlockWatcher),
            Some("proof") => Ok(Role::ProofMatcher),
            Some("match") => Ok(Role::StepCollector),
            Some(_) => bail!(
                "invalid configuration: STRATEGY is {:?}; expected Block, Proof or Match",
                strategy.unwrap_or_default()
            ),
            None => bail!("the collector command needs STRATEGY=Block, Proof or Match"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Init => "init",
            Role::BlockWatcher => "block-watcher",
            Role::Prover => "prover",
            Role::ProofMatcher => "proof-matcher",
            Role::StepCollector => "step-collector",
        }
    }

    /// Queues consumed and the queue published to, unless configured.
    fn default_queues(self) -> (&'static [&'static str], &'static str) {
        match self {
            Role::Init => (&[], ""),
            Role::BlockWatcher => (&[], queues::BLOCKS),
            Role::Prover => (&[queues::BLOCKS], queues::BLOCK_PROOFS),
            Role::ProofMatcher => (
                &[queues::BLOCK_PROOFS, queues::BLOCKS],
                queues::COMPLETED_PROOFS,
            ),
            Role::StepCollector => (&[queues::STEP_PROOFS], queues::COLLECTED_STEP_PROOFS),
        }
    }
}

/// A role's resolved wiring: what it reads, where it writes, as whom.
struct Wiring {
    inputs: Vec<String>,
    output: String,
    consumer: String,
}

impl Wiring {
    fn new(role: Role, s: &Settings, topology: &Topology) -> Self {
        let (default_inputs, default_output) = role.default_queues();
        let inputs: Vec<String> = match &s.input_queue {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .map(|q| topology.queue(q).to_owned())
                .collect(),
            None => default_inputs.iter().map(|q| (*q).to_owned()).collect(),
        };
        let output = s
            .output_queue
            .as_deref()
            .map_or(default_output, |q| topology.queue(q))
            .to_owned();
        // Unnamed instances on the same queues share one derived name, so they split the work.
        let consumer = s
            .consumer_name
            .clone()
            .unwrap_or_else(|| format!("{}-{}-{output}", role.name(), inputs.join("-")));
        let consumer = safe_name(&consumer);
        Self {
            inputs,
            output,
            consumer,
        }
    }

    fn spec(&self, role: Role, s: &Settings) -> ConsumerSpec {
        let attempts = (role == Role::Prover).then_some(s.max_attempts);
        consumer_spec(&self.consumer, &self.inputs, attempts, s)
    }
}

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
        password: s.nats_password.as_ref().map(Secret::expose),
        token: s.nats_token.as_ref().map(Secret::expose),
        creds_file: s.nats_creds.clone(),
        ca_file: s.nats_ca.clone(),
        name: format!("orchestrator-{name}"),
    })
}

/// Connects to NATS and ensures the stream, retrying until the server answers.
pub async fn connect(s: &Settings, name: &str) -> anyhow::Result<NatsBus> {
    let options = nats_options(s, name)?;
    let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut failures = 0;
    loop {
        match NatsBus::connect(&options, Topology::new(&s.input_stream)).await {
            Ok(bus) => return Ok(bus.with_payloads(payload_config(s))),
            Err(error @ orchestrator_actors::edges::nats::NatsError::File { .. }) => {
                return Err(error.into());
            }
            Err(error) => {
                failures += 1;
                let delay = backoff.delay(failures);
                tracing::warn!(%error, retry_in = ?delay, "NATS not ready; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Where payloads too large for a NATS message go, from `s`.
pub fn payload_config(s: &Settings) -> PayloadConfig {
    PayloadConfig {
        inline_limit: s.inline_payload_limit,
        max_bytes: s.max_payload,
        retention: s.payload_retention,
    }
}

/// Starts `role`'s actors; call inside a running actix system. A prover
/// hands its running jobs back when `shutdown` is triggered.
pub async fn start(role: Role, s: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    // Check local inputs before waiting on the network.
    let runner = match role {
        Role::Prover => Some(ProcessRunner::new(
            &s.prover_binary()?,
            s.job_dir(),
            s.job_timeout,
        )?),
        _ => None,
    };
    let chain = match role {
        Role::BlockWatcher => Some(RpcChain::new(&s.l1_rpc)?),
        _ => None,
    };
    let bus = connect(&s, role.name()).await?;
    let wiring = Wiring::new(role, &s, bus.topology());
    let publisher = Arc::new(bus.publisher());
    tracing::info!(role = role.name(), inputs = ?wiring.inputs, output = %wiring.output, consumer = %wiring.consumer, "starting role");
    match role {
        Role::Init => {
            bus.match_store(&matcher_bucket(&s), "init").await?;
            bus.ensure_payload_bucket().await?;
            // Only a named consumer is worth creating ahead: a derived name
            // would belong to `init`, not to the role that will read it.
            if s.input_queue.is_some() && s.consumer_name.is_some() {
                bus.source(&wiring.spec(role, &s)).await?;
            }
            tracing::info!(stream = %s.input_stream, "stream and key-value bucket ready");
            System::current().stop_with_code(0);
        }
        Role::BlockWatcher => {
            let from = resume_point(&bus, &wiring.output, s.next_block).await?;
            let config = watcher_config(&s, from, &wiring.output);
            let watcher =
                BlockWatcher::new(Arc::new(chain.expect("checked above")), publisher, config)
                    .start();
            if s.to_block.is_some() {
                exit_when_stopped(watcher, "the block watcher announced its whole range", 0);
            }
        }
        Role::Prover => {
            let source = bus.source(&wiring.spec(role, &s)).await?;
            let routes = wiring
                .inputs
                .iter()
                .map(|input| Route {
                    input: input.clone(),
                    output: wiring.output.clone(),
                    multiple_output: s.multiple_output,
                })
                .collect();
            let pool = pool_config(&s, wiring.consumer.clone(), routes);
            let runner = Arc::new(runner.expect("checked above"));
            ProverPool::new(pool, runner, Box::new(source), publisher)
                .with_shutdown(shutdown)
                .start();
        }
        Role::ProofMatcher => {
            let Some(blocks) = wiring.inputs.iter().find(|q| q.as_str() == queues::BLOCKS) else {
                bail!(
                    "invalid configuration: INPUT_QUEUE {:?} has no `blocks` queue; the proof matcher needs block_proofs,blocks",
                    wiring.inputs
                );
            };
            let store = Arc::new(
                bus.match_store(&matcher_bucket(&s), &wiring.consumer)
                    .await?,
            );
            let matcher = ProofMatcher::new(store, publisher, s.expected_provers())
                .with_queues(blocks.clone(), wiring.output.clone())
                .start();
            pump(
                Box::new(bus.source(&wiring.spec(role, &s)).await?),
                matcher.recipient(),
            );
        }
        Role::StepCollector => {
            let collector = StepCollector::new(s.num_inputs.unwrap_or(s.steps), publisher)
                .with_output(wiring.output.clone())
                .with_keepalive(s.progress_interval)
                .with_group_timeout(s.group_timeout)
                .start();
            pump(
                Box::new(bus.source(&wiring.spec(role, &s)).await?),
                collector.recipient(),
            );
        }
    }
    Ok(())
}

/// The watcher settings of `s`, starting at `from`, announcing to `queue`.
pub fn watcher_config(s: &Settings, from: Option<u64>, queue: &str) -> WatcherConfig {
    WatcherConfig {
        from,
        to: s.to_block,
        every: s.every,
        poll_interval: s.poll_interval,
        backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        queue: queue.to_owned(),
    }
}

/// Stops the process with `code` once `actor` has stopped, so a role whose
/// work is over (or whose actor died) does not linger doing nothing.
fn exit_when_stopped<A: Actor>(actor: Addr<A>, why: &'static str, code: i32) {
    actix::spawn(async move {
        while actor.connected() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tracing::info!(code, "{why}; exiting");
        System::current().stop_with_code(code);
    });
}

/// The pool settings of `s` for a pool named `name`.
pub fn pool_config(s: &Settings, name: String, routes: Vec<Route>) -> PoolConfig {
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
        restart: Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
        progress_interval: s.progress_interval,
        routes,
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(env: &[(&str, &str)]) -> Settings {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(None, &env, vec![]).unwrap()
    }

    #[test]
    fn strategies_pick_roles_and_unknown_ones_are_refused() {
        assert_eq!(
            Role::from_strategy(Some("Block")).unwrap(),
            Role::BlockWatcher
        );
        assert_eq!(
            Role::from_strategy(Some("proof")).unwrap(),
            Role::ProofMatcher
        );
        assert_eq!(
            Role::from_strategy(Some("MATCH")).unwrap(),
            Role::StepCollector
        );
        let err = Role::from_strategy(Some("Nope")).unwrap_err().to_string();
        assert!(
            err.contains("STRATEGY is \"Nope\"") && err.contains("Block, Proof or Match"),
            "{err}"
        );
        assert!(Role::from_strategy(None).is_err());
    }

    #[test]
    fn wiring_follows_the_template_variables() {
        let topology = Topology::default();
        let prover = Wiring::new(Role::Prover, &settings(&[]), &topology);
        assert_eq!(
            (
                prover.inputs.as_slice(),
                prover.output.as_str(),
                prover.consumer.as_str()
            ),
            (
                &["blocks".to_owned()][..],
                "block_proofs",
                "prover-blocks-block_proofs"
            )
        );

        let env = [
            ("INPUT_QUEUE", "modularorchestrator.block_proofs, blocks"),
            ("OUTPUT_QUEUE", "modularorchestrator.completed_proofs"),
        ];
        let matcher = Wiring::new(Role::ProofMatcher, &settings(&env), &topology);
        assert_eq!(matcher.inputs, ["block_proofs", "blocks"]);
        assert_eq!(matcher.output, "completed_proofs");
        assert_eq!(
            matcher.consumer,
            "proof-matcher-block_proofs-blocks-completed_proofs"
        );

        let named = Wiring::new(
            Role::Prover,
            &settings(&[("CONSUMER_NAME", "sp1.prover")]),
            &topology,
        );
        assert_eq!(
            named.consumer, "sp1_prover",
            "dots are not allowed in consumer names"
        );
    }

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

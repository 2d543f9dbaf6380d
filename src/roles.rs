//! Role mode: one role per process, edges on NATS JetStream. The actors are
//! the ones standalone mode runs; only their sources and sinks differ.

use std::sync::Arc;

use actix::prelude::*;
use anyhow::{Context as _, bail};
use orchestrator_actors::actors::{
    BlockWatcher, ProofMatcher, ProverPool, Route, StepCollector, pump,
};
use orchestrator_actors::edges::nats::{ConsumerSpec, Topology};
use orchestrator_actors::edges::process::ProcessRunner;
use orchestrator_actors::edges::rpc::RpcChain;
use orchestrator_actors::edges::safe_name;
use orchestrator_actors::messages::queues;
use orchestrator_actors::shutdown::Shutdown;

use crate::config::Settings;
use crate::dashboard::{Dashboard, QUEUES};
use crate::ethproofs::Reporting;
use crate::http;
use crate::wiring;
use crate::wiring::{
    connect, consumer_spec, matcher_bucket, pool_config, resume_point, watcher_config,
};

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
    /// Report job events and completed proofs to EthProofs.
    EthProofsReporter,
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
            Role::EthProofsReporter => "ethproofs-reporter",
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
            Role::EthProofsReporter => (&[queues::COMPLETED_PROOFS, queues::JOB_EVENTS], ""),
        }
    }
}

/// A role's resolved queues: what it reads, where it writes, as whom.
struct RoleQueues {
    inputs: Vec<String>,
    output: String,
    consumer: String,
}

impl RoleQueues {
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
        // A role that publishes nothing (the EthProofs reporter) has no output in its name.
        let consumer = consumer.trim_end_matches('-').to_owned();
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
    let reporting = match role {
        Role::EthProofsReporter => Some(Reporting::from_settings(&s)?.context(
            "the ethproofs-reporter role needs ETHPROOFS_API_URL, ETHPROOFS_API_KEY and ETHPROOFS_CLUSTER_ID",
        )?),
        _ => None,
    };
    let readiness = http::Readiness::default();
    // The proof matcher serves the dashboard next to its metrics.
    let dashboard = (role == Role::ProofMatcher).then(Dashboard::default);
    if role != Role::Init {
        readiness.needs_nats();
        if let Some(chain) = &chain {
            readiness.needs_rpc(chain.health(), http::rpc_window(&s));
        }
        if let Some(port) = http::port(&s, true) {
            let pages = dashboard
                .as_ref()
                .map(Dashboard::router)
                .unwrap_or_default();
            http::serve(port, readiness.clone(), pages).await?;
        }
    }
    let bus = connect(&s, role.name()).await?;
    readiness.nats_connected(&bus);
    let io = RoleQueues::new(role, &s, bus.topology());
    let publisher = Arc::new(bus.publisher());
    tracing::info!(role = role.name(), inputs = ?io.inputs, output = %io.output, consumer = %io.consumer, "starting role");
    match role {
        Role::Init => {
            bus.match_store(&matcher_bucket(&s), "init").await?;
            bus.ensure_payload_bucket().await?;
            bus.ensure_replicas(&matcher_bucket(&s)).await?;
            // Only a named consumer is worth creating ahead: a derived name
            // would belong to `init`, not to the role that will read it.
            if s.input_queue.is_some() && s.consumer_name.is_some() {
                bus.source(&io.spec(role, &s)).await?;
            }
            tracing::info!(stream = %s.input_stream, replicas = s.replicas, "stream and key-value bucket ready");
            shutdown.exit(0, "init done");
        }
        Role::BlockWatcher => {
            let from = resume_point(&bus, &io.output, s.next_block).await?;
            let config = watcher_config(&s, from, &io.output);
            // A watcher stops on its own only when its range is announced.
            let lifeline = match s.to_block {
                Some(_) => shutdown.lifeline(0, "the block watcher announced its whole range"),
                None => shutdown.lifeline(1, "the block watcher stopped unexpectedly"),
            };
            BlockWatcher::new(Arc::new(chain.expect("checked above")), publisher, config)
                .with_lifeline(lifeline)
                .start();
        }
        Role::Prover => {
            let source = bus.source(&io.spec(role, &s)).await?;
            let routes = io
                .inputs
                .iter()
                .map(|input| Route {
                    input: input.clone(),
                    output: io.output.clone(),
                    multiple_output: s.multiple_output,
                })
                .collect();
            let pool = pool_config(&s, io.consumer.clone(), routes, true);
            let runner = Arc::new(runner.expect("checked above"));
            ProverPool::new(pool, runner, Box::new(source), publisher)
                .with_lifeline(wiring::pool_lifeline(&shutdown))
                .with_shutdown(shutdown)
                .start();
        }
        Role::ProofMatcher => {
            let Some(blocks) = io.inputs.iter().find(|q| q.as_str() == queues::BLOCKS) else {
                bail!(
                    "invalid configuration: INPUT_QUEUE {:?} has no `blocks` queue; the proof matcher needs block_proofs,blocks",
                    io.inputs
                );
            };
            let store = Arc::new(bus.match_store(&matcher_bucket(&s), &io.consumer).await?);
            let matcher = ProofMatcher::new(store, publisher, s.expected_provers())
                .with_queues(blocks.clone(), io.output.clone())
                .with_lifeline(shutdown.lifeline(1, "the proof matcher stopped unexpectedly"))
                .start();
            pump(
                Box::new(bus.source(&io.spec(role, &s)).await?),
                matcher.recipient(),
                &shutdown,
            );
            if let Some(dashboard) = &dashboard {
                // It watches, it takes no part: no consumer of its own to
                // ack, so it costs NATS one long pull per batch.
                let queues = QUEUES.map(str::to_owned);
                dashboard.follow(Box::new(bus.follower(&queues).await?), &shutdown);
            }
        }
        Role::EthProofsReporter => {
            let lifeline = shutdown.lifeline(
                1,
                "the EthProofs reporter stopped (EthProofs refused the key or the cluster: see the error above)",
            );
            let reporter = reporting.expect("checked above").reporter();
            let reporter = reporter.with_lifeline(lifeline).start();
            pump(
                Box::new(bus.source(&io.spec(role, &s)).await?),
                reporter.recipient(),
                &shutdown,
            );
        }
        Role::StepCollector => {
            let collector = StepCollector::new(s.num_inputs.unwrap_or(s.steps), publisher)
                .with_output(io.output.clone())
                .with_keepalive(s.progress_interval)
                .with_group_timeout(s.group_timeout)
                .with_lifeline(shutdown.lifeline(1, "the step collector stopped unexpectedly"))
                .start();
            pump(
                Box::new(bus.source(&io.spec(role, &s)).await?),
                collector.recipient(),
                &shutdown,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::future::Future;
    use std::pin::Pin;
    use std::time::Duration;

    use orchestrator_actors::edges::local::LocalBus;
    use orchestrator_actors::edges::{EdgeError, Job, JobFailure, JobRunner, Publisher};
    use orchestrator_actors::messages::Envelope;

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
    fn role_queues_follow_the_template_variables() {
        let topology = Topology::default();
        let prover = RoleQueues::new(Role::Prover, &settings(&[]), &topology);
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
        let matcher = RoleQueues::new(Role::ProofMatcher, &settings(&env), &topology);
        assert_eq!(matcher.inputs, ["block_proofs", "blocks"]);
        assert_eq!(matcher.output, "completed_proofs");
        assert_eq!(
            matcher.consumer,
            "proof-matcher-block_proofs-blocks-completed_proofs"
        );

        let named = RoleQueues::new(
            Role::Prover,
            &settings(&[("CONSUMER_NAME", "sp1.prover")]),
            &topology,
        );
        assert_eq!(
            named.consumer, "sp1_prover",
            "dots are not allowed in consumer names"
        );
    }

    /// A future as `#[async_trait]` methods return it (this crate does not
    /// depend on async-trait, so the fakes below spell it out).
    type Boxed<'f, T> = Pin<Box<dyn Future<Output = T> + Send + 'f>>;

    /// Proves every job at once.
    struct Proves;

    impl JobRunner for Proves {
        fn run<'a, 'b, 'f>(&'a self, _job: &'b Job) -> Boxed<'f, Result<Vec<u8>, JobFailure>>
        where
            'a: 'f,
            'b: 'f,
            Self: 'f,
        {
            Box::pin(async { Ok(b"{}".to_vec()) })
        }
    }

    /// Panics while the pool publishes a proof: a bug that kills the pool
    /// actor itself, not one of its workers.
    struct PanicsInPool;

    impl Publisher for PanicsInPool {
        fn publish<'a, 'b, 'f>(
            &'a self,
            _queue: &'b str,
            _message: Envelope,
        ) -> Boxed<'f, Result<(), EdgeError>>
        where
            'a: 'f,
            'b: 'f,
            Self: 'f,
        {
            Box::pin(async { panic!("deliberate panic in the pool (test)") })
        }
    }

    #[test]
    fn a_prover_role_whose_pool_dies_exits_1() {
        let system = System::new();
        let shutdown = Shutdown::new();
        system.block_on(async {
            actix::spawn(crate::stop_when_asked(shutdown.clone()));
            let bus = LocalBus::new();
            let jobs = bus.subscribe(&[queues::BLOCKS]);
            let route = Route {
                input: queues::BLOCKS.into(),
                output: "out".into(),
                multiple_output: false,
            };
            let config = pool_config(&settings(&[]), "test".into(), vec![route], true);
            ProverPool::new(
                config,
                Arc::new(Proves),
                Box::new(jobs),
                Arc::new(PanicsInPool),
            )
            .with_lifeline(wiring::pool_lifeline(&shutdown))
            .start();
            bus.publish(queues::BLOCKS, Envelope::block(1))
                .await
                .unwrap();
            actix::spawn(async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                System::current().stop_with_code(99);
            });
        });
        assert_eq!(
            system.run_with_code().unwrap(),
            1,
            "99: the process outlived its pool"
        );
    }
}

//! `orchestrator run`: every actor in this process. The edges are the
//! in-process bus, or NATS JetStream with `--nats` (the same actors either way).

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use orchestrator_actors::actors::{
    Backlog, BlockWatcher, ProofMatcher, ProverPool, Route, StepCollector, pump,
};
use orchestrator_actors::edges::local::{LocalBus, MemoryMatchStore};
use orchestrator_actors::edges::match_store::MatchStore;
use orchestrator_actors::edges::nats::NatsBus;
use orchestrator_actors::edges::process::ProcessRunner;
use orchestrator_actors::edges::rpc::{RpcChain, redact};
use orchestrator_actors::edges::{JobSource, Publisher};
use orchestrator_actors::messages::queues::*;
use orchestrator_actors::shutdown::Shutdown;

use crate::config::Settings;
use crate::dashboard::{Dashboard, QUEUES};
use crate::ethproofs::Reporting;
use crate::http;
use crate::report::{BlockRange, RangeProgress, Reporter};
use crate::wiring;

/// Everything checked before any actor starts, so a bad setting is one
/// clear error instead of a run that fails job after job.
pub struct Plan {
    settings: Settings,
    runner: ProcessRunner,
    chain: RpcChain,
    /// The blocks a range run waits for, if this is one.
    range: Option<BlockRange>,
    /// How far the range run got, for whoever stops it early.
    progress: RangeProgress,
    /// EthProofs reporting, when configured.
    reporting: Option<Reporting>,
}

/// The queues the actors talk through in this process.
enum Edges {
    Local(LocalBus),
    Nats(Box<NatsBus>),
}

impl Edges {
    /// A consumer group named `group` reading `queues`.
    async fn source(
        &self,
        group: &str,
        queues: &[&str],
        s: &Settings,
    ) -> anyhow::Result<Box<dyn JobSource>> {
        Ok(match self {
            // The watcher waits for the pool: a backlog stays on the chain,
            // not in memory. Room for two jobs per worker and some slack,
            // so a worker that is done never waits for the watcher.
            Edges::Local(bus) if group == "prover" => {
                Box::new(bus.subscribe_bounded(queues, &[BLOCKS], 2 * s.workers + 32))
            }
            Edges::Local(bus) => Box::new(bus.subscribe(queues)),
            Edges::Nats(bus) => {
                let queues: Vec<String> = queues.iter().map(|q| (*q).to_owned()).collect();
                if group == "dashboard" {
                    return Ok(Box::new(bus.follower(&queues).await?));
                }
                let name = format!("standalone-{group}");
                let attempts = (group == "prover").then_some(s.max_attempts);
                Box::new(
                    bus.source(&wiring::consumer_spec(&name, &queues, attempts, s))
                        .await?,
                )
            }
        })
    }

    fn publisher(&self) -> Arc<dyn Publisher> {
        match self {
            Edges::Local(bus) => Arc::new(bus.clone()),
            Edges::Nats(bus) => Arc::new(bus.publisher()),
        }
    }

    async fn match_store(&self, s: &Settings) -> anyhow::Result<Arc<dyn MatchStore>> {
        Ok(match self {
            Edges::Local(_) => Arc::new(MemoryMatchStore::default()),
            Edges::Nats(bus) => Arc::new(
                bus.match_store(&wiring::matcher_bucket(s), "standalone")
                    .await?,
            ),
        })
    }
}

impl Plan {
    /// Checks the prover binary and the RPC URL.
    pub fn new(settings: Settings) -> anyhow::Result<Self> {
        let mut runner = ProcessRunner::new(
            &settings.prover_binary()?,
            settings.job_dir(),
            settings.job_timeout,
        )?;
        if settings.multistep {
            // The bundled multistep mock reads its partition size from here.
            runner = runner.with_env("MOCK_STEPS", settings.steps.to_string());
        }
        let chain = RpcChain::new(&settings.l1_rpc)?;
        let range = match (settings.next_block, settings.to_block) {
            (Some(from), Some(to)) => Some(BlockRange::new(from, to, settings.every).ok_or_else(
                || {
                    anyhow::anyhow!(
                        "the range {from}..={to} holds no block with block % {} == 0: nothing to prove",
                        settings.every
                    )
                },
            )?),
            _ => None,
        };
        Ok(Self {
            reporting: Reporting::from_settings(&settings)?,
            settings,
            runner,
            chain,
            progress: RangeProgress::of(range.as_ref()),
            range,
        })
    }

    /// How far this run got through its range (nothing to tell for an
    /// open-ended run): a signal must not end an unfinished range with 0.
    pub fn progress(&self) -> RangeProgress {
        self.progress.clone()
    }

    /// Starts the actors. Call inside a running actix system. Running jobs
    /// are handed back to their queue when `shutdown` is triggered.
    pub async fn start(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let s = &self.settings;
        let readiness = http::Readiness::default();
        readiness.needs_rpc(self.chain.health(), http::rpc_window(s));
        if s.nats_url.is_some() {
            readiness.needs_nats();
        }
        // The dashboard lives on the metrics port: no port, no dashboard.
        let dashboard = http::port(s, false).map(|_| Dashboard::default());
        if let Some(port) = http::port(s, false) {
            let pages = dashboard
                .as_ref()
                .map(Dashboard::router)
                .unwrap_or_default();
            http::serve(port, readiness.clone(), pages).await?;
        }
        let edges = match &s.nats_url {
            Some(_) => {
                let bus = wiring::connect(s, "standalone").await?;
                readiness.nats_connected(&bus);
                Edges::Nats(Box::new(bus))
            }
            None => Edges::Local(LocalBus::new()),
        };
        tracing::info!(
            rpc = %redact(&s.l1_rpc),
            binary = %self.runner.binary().display(),
            workers = s.workers,
            multistep = s.multistep,
            nats = matches!(edges, Edges::Nats(_)),
            "starting standalone run"
        );
        let publisher = edges.publisher();
        let routes = if s.multistep {
            vec![
                route(BLOCKS, STEPS, true),
                route(STEPS, STEP_PROOFS, false),
                route(COLLECTED_STEP_PROOFS, BLOCK_PROOFS, false),
            ]
        } else {
            vec![route(BLOCKS, BLOCK_PROOFS, false)]
        };
        let inputs: Vec<&str> = routes.iter().map(|r| r.input.as_str()).collect();
        // Every consumer subscribes before the watcher publishes anything.
        let jobs = edges.source("prover", &inputs, s).await?;
        let matcher_input = edges
            .source("proof-matcher", &[BLOCKS, BLOCK_PROOFS], s)
            .await?;
        // Skipped blocks are reported from job events, which only a
        // newest-first run has reason to read.
        let newest = matches!(s.backlog(), Ok(Backlog::Newest { .. }));
        let reported: &[&str] = if newest {
            &[COMPLETED_PROOFS, DEAD_LETTER, JOB_EVENTS]
        } else {
            &[COMPLETED_PROOFS, DEAD_LETTER]
        };
        let report_input = edges.source("report", reported, s).await?;
        if let Some(reporting) = self.reporting {
            // Its own consumer: reporting never holds up proving.
            let input = edges
                .source("ethproofs-reporter", &[COMPLETED_PROOFS, JOB_EVENTS], s)
                .await?;
            reporting.follow(input, &shutdown);
        }
        if let Some(dashboard) = &dashboard {
            dashboard.follow(edges.source("dashboard", &QUEUES, s).await?, &shutdown);
        }
        if s.multistep {
            let collector = StepCollector::new(s.steps, publisher.clone())
                .with_keepalive(s.progress_interval)
                .with_group_timeout(s.group_timeout)
                .with_lifeline(shutdown.lifeline(1, "the step collector stopped unexpectedly"))
                .start();
            pump(
                edges.source("step-collector", &[STEP_PROOFS], s).await?,
                collector.recipient(),
                &shutdown,
            );
        }

        let reporter = Reporter::new(s.json, self.range, self.progress, shutdown.clone()).start();
        pump(report_input, reporter.recipient(), &shutdown);
        let matcher = ProofMatcher::new(
            edges.match_store(s).await?,
            publisher.clone(),
            s.expected_provers(),
        )
        .with_lifeline(shutdown.lifeline(1, "the proof matcher stopped unexpectedly"))
        .start();
        pump(matcher_input, matcher.recipient(), &shutdown);

        let pool = wiring::pool_config(s, "standalone".into(), routes, false);
        ProverPool::new(pool, Arc::new(self.runner), jobs, publisher.clone())
            .with_lifeline(wiring::pool_lifeline(&shutdown))
            .with_shutdown(shutdown.clone())
            .start();

        // With NATS at the edges an open-ended run resumes where the last
        // one stopped; a range run proves exactly its range.
        let from = match &edges {
            Edges::Nats(bus) if s.to_block.is_none() => {
                wiring::resume_point(bus, BLOCKS, s.next_block).await?
            }
            _ => s.next_block,
        };
        let watcher = wiring::watcher_config(s, from, BLOCKS);
        let mut watcher = BlockWatcher::new(Arc::new(self.chain), publisher, watcher);
        // A range run ends when the reporter has seen every block settled;
        // the watcher stopping after its range is expected.
        if s.to_block.is_none() {
            watcher = watcher
                .with_lifeline(shutdown.lifeline(1, "the block watcher stopped unexpectedly"));
        }
        watcher.start();
        Ok(())
    }
}

fn route(input: &str, output: &str, multiple_output: bool) -> Route {
    Route {
        input: input.into(),
        output: output.into(),
        multiple_output,
    }
}

/// Leaves NATS in `s` only when `--nats` was given on `run`'s command line
/// (`flag_given`): a `NATS_URL` exported for the roles (or a `nats_url` in
/// the config file) must not make a local run join a production stream as
/// its own consumer. What is ignored is logged once, as a warning.
pub fn nats_only_if_asked(s: &mut Settings, flag_given: bool, env: &HashMap<String, String>) {
    if flag_given || s.nats_url.is_none() {
        return;
    }
    s.nats_url = None;
    if env.get("NATS_URL").is_some_and(|url| !url.is_empty()) {
        tracing::warn!(
            "NATS_URL is set in the environment but `orchestrator run` ignores it and runs on in-process queues; pass --nats URL to run with NATS at its edges"
        );
    } else {
        tracing::warn!(
            "nats_url is set in the config file but `orchestrator run` ignores it and runs on in-process queues; pass --nats URL to run with NATS at its edges"
        );
    }
}

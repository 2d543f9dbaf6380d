//! `orchestrator run`: every actor in this process, wired through the
//! in-process bus. The same actors run as separate roles over NATS.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use orchestrator_actors::actors::{
    BlockWatcher, PoolConfig, ProofMatcher, ProverPool, Route, StepCollector, WatcherConfig, pump,
};
use orchestrator_actors::backoff::Backoff;
use orchestrator_actors::edges::local::{LocalBus, MemoryMatchStore};
use orchestrator_actors::edges::process::ProcessRunner;
use orchestrator_actors::edges::rpc::{RpcChain, redact};
use orchestrator_actors::messages::queues::*;

use crate::config::Settings;
use crate::report::Reporter;

/// Everything checked before any actor starts, so a bad setting is one
/// clear error instead of a run that fails job after job.
pub struct Plan {
    settings: Settings,
    runner: ProcessRunner,
    chain: RpcChain,
}

impl Plan {
    /// Checks the prover binary and the RPC URL.
    pub fn new(settings: Settings) -> anyhow::Result<Self> {
        let binary = settings.prover_binary()?;
        let work_dir = settings
            .work_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("orchestrator-jobs"));
        let mut runner = ProcessRunner::new(&binary, work_dir, settings.job_timeout)?;
        if settings.multistep {
            // The bundled multistep mock reads its partition size from here.
            runner = runner.with_env("MOCK_STEPS", settings.steps.to_string());
        }
        let chain = RpcChain::new(&settings.l1_rpc)?;
        Ok(Self {
            settings,
            runner,
            chain,
        })
    }

    /// The blocks a range run waits for, if this is one.
    fn range(&self) -> Option<BTreeSet<u64>> {
        let (from, to) = (self.settings.next_block?, self.settings.to_block?);
        Some(
            (from..=to)
                .filter(|b| b.is_multiple_of(self.settings.every))
                .collect(),
        )
    }

    /// Starts the actors. Call inside a running actix system.
    pub fn start(self) -> anyhow::Result<()> {
        let s = &self.settings;
        let range = self.range();
        if range.as_ref().is_some_and(BTreeSet::is_empty) {
            anyhow::bail!(
                "the range {:?}..={:?} holds no block with block % {} == 0: nothing to prove",
                s.next_block,
                s.to_block,
                s.every
            );
        }
        tracing::info!(rpc = %redact(&s.l1_rpc), binary = %self.runner.binary().display(), workers = s.workers, multistep = s.multistep, "starting standalone run");

        let bus = LocalBus::new();
        let publisher = Arc::new(bus.clone());
        // Subscribe every consumer before the watcher publishes anything.
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
        let jobs = bus.subscribe(&inputs);
        let matcher_input = bus.subscribe(&[BLOCKS, BLOCK_PROOFS]);
        let report_input = bus.subscribe(&[COMPLETED_PROOFS, DEAD_LETTER]);
        if s.multistep {
            let collector = StepCollector::new(s.steps, publisher.clone()).start();
            pump(
                Box::new(bus.subscribe(&[STEP_PROOFS])),
                collector.recipient(),
            );
        }

        let reporter = Reporter::new(s.json, range).start();
        pump(Box::new(report_input), reporter.recipient());
        let matcher = ProofMatcher::new(
            Arc::new(MemoryMatchStore::default()),
            publisher.clone(),
            Vec::new(),
        )
        .start();
        pump(Box::new(matcher_input), matcher.recipient());

        let pool = PoolConfig {
            name: "standalone".into(),
            workers: s.workers,
            max_attempts: s.max_attempts,
            retry: Backoff::new(
                s.retry_delay,
                s.retry_delay
                    .saturating_mul(32)
                    .max(Duration::from_secs(60)),
            ),
            restart: Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
            progress_interval: Duration::from_secs(10),
            routes,
        };
        ProverPool::new(
            pool,
            Arc::new(self.runner),
            Box::new(jobs),
            publisher.clone(),
        )
        .start();

        let watcher = WatcherConfig {
            from: s.next_block,
            to: s.to_block,
            every: s.every,
            poll_interval: s.poll_interval,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            queue: BLOCKS.into(),
        };
        BlockWatcher::new(Arc::new(self.chain), publisher, watcher).start();
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

/// Runs a standalone orchestrator until a range is done or a signal arrives.
/// Returns the process exit code.
pub fn run(settings: Settings) -> anyhow::Result<i32> {
    let plan = Plan::new(settings)?;
    let system = System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    });
    system.block_on(async {
        crate::stop_on_signal();
        plan.start()
    })?;
    let code = system.run_with_code().context("the actor system failed")?;
    Ok(code)
}

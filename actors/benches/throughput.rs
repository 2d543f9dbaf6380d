//! How much the orchestrator itself costs per job, apart from proving:
//! `cargo bench -p orchestrator-actors --bench throughput`. Results and the
//! machine they were taken on go into BENCHMARKS.md.
//!
//! 1. actors: blocks through LocalBus → ProverPool → ProofMatcher with a
//!    runner that answers at once (the actor and bus overhead per block);
//! 2. processes: jobs through the real ProcessRunner with a shell prover (the
//!    cost of one child process per job).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use async_trait::async_trait;
use orchestrator_actors::actors::{PoolConfig, ProofMatcher, ProverPool, Route, pump};
use orchestrator_actors::backoff::Backoff;
use orchestrator_actors::edges::local::{LocalBus, MemoryMatchStore};
use orchestrator_actors::edges::process::ProcessRunner;
use orchestrator_actors::edges::{Job, JobFailure, JobRunner, JobSource, Publisher};
use orchestrator_actors::messages::{Envelope, queues};
use orchestrator_actors::shutdown::Shutdown;

/// Proves a block instantly, so only the orchestration is measured.
struct InstantProver;

#[async_trait]
impl JobRunner for InstantProver {
    async fn run(&self, job: &Job) -> Result<Vec<u8>, JobFailure> {
        let block = String::from_utf8_lossy(&job.input);
        Ok(format!(r#"{{"block":{block},"proof":"0xff","prover":"bench"}}"#).into_bytes())
    }
}

fn pool_config(workers: usize) -> PoolConfig {
    let quick = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
    PoolConfig {
        name: "bench".into(),
        workers,
        gpus: Vec::new(),
        max_attempts: 3,
        retry: quick,
        pause_after_failure: false,
        restart: quick,
        progress_interval: Duration::from_secs(10),
        routes: vec![Route {
            input: queues::BLOCKS.into(),
            output: queues::BLOCK_PROOFS.into(),
            multiple_output: false,
        }],
        max_age: None,
    }
}

/// Runs `blocks` blocks through pool and matcher; returns the elapsed time.
async fn pipeline(runner: Arc<dyn JobRunner>, workers: usize, blocks: u64) -> Duration {
    let bus = LocalBus::new();
    let jobs = bus.subscribe(&[queues::BLOCKS]);
    let matcher_input = bus.subscribe(&[queues::BLOCKS, queues::BLOCK_PROOFS]);
    let mut completed = bus.subscribe(&[queues::COMPLETED_PROOFS]);
    let publisher = Arc::new(bus.clone());
    let matcher = ProofMatcher::new(
        Arc::new(MemoryMatchStore::default()),
        publisher.clone(),
        vec![],
    )
    .start();
    pump(
        Box::new(matcher_input),
        matcher.recipient(),
        &Shutdown::new(),
    );
    ProverPool::new(pool_config(workers), runner, Box::new(jobs), publisher).start();

    let started = Instant::now();
    for block in 0..blocks {
        bus.publish(queues::BLOCKS, Envelope::block(block))
            .await
            .expect("local publish");
    }
    for _ in 0..blocks {
        completed.next().await.expect("completed proof");
    }
    started.elapsed()
}

fn report(name: &str, jobs: u64, elapsed: Duration) {
    let per_job = elapsed / jobs as u32;
    let rate = jobs as f64 / elapsed.as_secs_f64();
    println!(
        "{name:<40} {jobs:>6} jobs  {:>8.0} ms  {rate:>9.0} jobs/s  {per_job:>10.1?}/job",
        elapsed.as_secs_f64() * 1000.0
    );
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: 0 kB");
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn shell_prover(dir: &Path) -> ProcessRunner {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("prover.sh");
    std::fs::write(&script, "#!/bin/sh\nprintf '{\"block\":%s,\"proof\":\"0xff\",\"prover\":\"sh\"}' \"$(cat \"$2\")\" > \"$4\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    ProcessRunner::new(&script, dir.join("jobs"), Duration::from_secs(30)).expect("shell prover")
}

fn main() {
    let system = actix::System::new();
    system.block_on(async {
        for workers in [1, 8] {
            let blocks = 20_000;
            let elapsed = pipeline(Arc::new(InstantProver), workers, blocks).await;
            report(
                &format!("actors, instant prover, {workers} workers"),
                blocks,
                elapsed,
            );
        }
        println!(
            "peak RSS after the actor runs: {} MiB",
            peak_rss_kib() / 1024
        );

        let dir = std::env::temp_dir().join(format!("orchestrator-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for workers in [1, 2] {
            let blocks = 300;
            let elapsed = pipeline(Arc::new(shell_prover(&dir)), workers, blocks).await;
            report(
                &format!("processes, sh prover, {workers} workers"),
                blocks,
                elapsed,
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

//! A backlog: 2,000 blocks are final before anything runs (anvil mines them
//! at once), and a watcher announces them all in one go to two prover roles
//! sharing their consumer, and a matcher. Every block must be completed
//! exactly once and nothing dead-lettered; the peak resident memory of each
//! role (VmHWM, read from /proc before it stops) is printed, and bounded
//! generously so that memory growing with the backlog shows.

mod nats_support;
mod support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nats_support::checks::{self, window};
use nats_support::layout::{mock_prover, proof_matcher, window_watcher};
use nats_support::{Cluster, LINGER, RoleProcess};

/// Blocks in the backlog.
const BLOCKS: u64 = 2_000;
/// Deadlock guard for the whole backlog; never a speed expectation.
const BACKLOG_TIMEOUT: Duration = Duration::from_secs(300);
/// Peak resident memory any one role may reach: about 5 times the 27 MiB
/// each role peaks at here, so a role that keeps some 50 KiB per block
/// (4,000 messages for the matcher) goes over it.
const PEAK_LIMIT_KB: u64 = 128 * 1024;

/// The peak resident set size (VmHWM) of process `pid` in KiB, while it
/// runs (a process that exited has none).
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The highest VmHWM seen so far of each role, by label.
#[derive(Default)]
struct Peaks(RefCell<BTreeMap<String, u64>>);

impl Peaks {
    /// Reads every role's VmHWM now (it only grows, so the last reading
    /// before a role stops is its peak).
    fn sample(&self, roles: &[&RoleProcess]) {
        let mut peaks = self.0.borrow_mut();
        for role in roles {
            if let Some(kb) = role.pid().and_then(peak_rss_kb) {
                let peak = peaks.entry(role.label().to_owned()).or_default();
                *peak = (*peak).max(kb);
            }
        }
    }
}

#[test]
fn a_2000_block_backlog_is_completed_once_each_by_two_provers() {
    let cluster = Cluster::start("faults-backlog");
    cluster.init();
    let first = cluster.next_block_with_backlog(BLOCKS);
    let window = window(first, BLOCKS);
    let fast = [
        ("CONSUMER_NAME", "backlog-prover"),
        ("MOCK_PROVE_TIME_MS", "0"),
        ("ORCHESTRATOR_WORKERS", "2"),
    ];
    let prover_1 = cluster.spawn(&mock_prover("prover-1").env(fast));
    let prover_2 = cluster.spawn(&mock_prover("prover-2").env(fast));
    let matcher = cluster.spawn(&proof_matcher());
    let started = Instant::now();
    let watcher = cluster.spawn(&window_watcher(&window));
    let roles = [&watcher, &prover_1, &prover_2, &matcher];
    let mut completed = cluster.tap("completed_proofs");
    let mut dead = cluster.tap("dead_letter");

    let peaks = Peaks::default();
    let what = format!("completed proofs for the {BLOCKS} blocks {window:?}");
    cluster.check(completed.wait_until(BACKLOG_TIMEOUT, &what, |records| {
        peaks.sample(&roles);
        checks::fully_proved(records, &window, 1)
    }));
    let took = started.elapsed();
    peaks.sample(&roles);
    cluster.check(completed.read_for(LINGER));
    let proofs = cluster.check(checks::completed_proofs(&completed.records));
    let proved = proofs.iter().map(|p| p.block);
    cluster.check(checks::each_block_exactly(
        "completed_proofs",
        &window,
        proved,
        1,
    ));
    cluster.check(dead.read_for(LINGER));
    if !dead.records.is_empty() {
        cluster.fail(&format!(
            "{} of the backlog dead-lettered, e.g. {}",
            dead.records.len(),
            dead.records[0].text()
        ));
    }

    let by_prover = |label: &str| {
        prover_1.jobs_done().len() * usize::from(label == "prover-1")
            + prover_2.jobs_done().len() * usize::from(label == "prover-2")
    };
    eprintln!(
        "backlog of {BLOCKS} blocks completed once each in {:.1} s (prover-1 {} jobs, prover-2 {})",
        took.as_secs_f64(),
        by_prover("prover-1"),
        by_prover("prover-2")
    );
    let peaks = peaks.0.into_inner();
    for (label, kb) in &peaks {
        eprintln!(
            "peak RSS (VmHWM) of {label}: {:.1} MiB",
            *kb as f64 / 1024.0
        );
    }
    let over: Vec<String> = peaks
        .iter()
        .filter(|&(_, &kb)| kb > PEAK_LIMIT_KB)
        .map(|(label, kb)| format!("{label}: {} MiB", kb / 1024))
        .collect();
    if !over.is_empty() || peaks.len() != roles.len() {
        cluster.fail(&format!(
            "peak RSS over {} MiB, or not read for every role: {peaks:?} {over:?}",
            PEAK_LIMIT_KB / 1024
        ));
    }
}

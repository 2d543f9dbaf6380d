//! NATS frozen mid-run: the server is stopped with SIGSTOP while a prover is
//! proving and the watcher is announcing, so it keeps every socket open and
//! answers nothing. It stays frozen until the roles' publishes have timed
//! out (the publish timeout is 5 s) and been retried, then it gets SIGCONT
//! and takes in, at once, each timed-out publish and its retry. Only the
//! message id keeps those from being stored twice. Nobody touches anything
//! else: every block must be announced once and completed once, and
//! nothing dead-lettered.

mod nats_support;
mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use nats_support::checks::{self, announced_blocks, window};
use nats_support::layout::{block_watcher, mock_prover, proof_matcher};
use nats_support::{BACKLOG, Cluster, LINGER, RoleProcess};

/// The line the NATS publisher logs when a publish failed (here: timed out)
/// and is tried again with the same message id.
const PUBLISH_RETRIED: &str = "publish failed; retrying with the same id";

/// Waits until `role` has retried a timed-out publish.
fn await_publish_retried(cluster: &Cluster, role: &RoleProcess) {
    cluster.await_log(role, "a publish retried after a timeout", |line| {
        line.contains(PUBLISH_RETRIED)
    });
}

#[test]
fn nats_frozen_past_the_publish_timeout_loses_and_doubles_nothing() {
    let cluster = Cluster::start("faults-nats-frozen");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 12);
    // One-second proofs: the job running when NATS freezes finishes and
    // publishes into the frozen server.
    let prover = cluster.spawn(&mock_prover("prover").env([("MOCK_PROVE_TIME_MS", "1000")]));
    let _matcher = cluster.spawn(&proof_matcher());
    // Follows the head, so it is announcing blocks while NATS is frozen.
    let watcher = cluster.spawn(&block_watcher(first));
    let _miner = cluster.miner();
    let mut completed = cluster.tap("completed_proofs");
    let mut blocks = cluster.tap("blocks");
    let mut dead = cluster.tap("dead_letter");

    // Frozen while the prover runs its fourth job.
    cluster.await_log(&prover, "a fourth `Running prover.`", |_| {
        let lines = prover.log_lines();
        lines
            .iter()
            .filter(|l| l.contains("Running prover."))
            .count()
            >= 4
    });
    cluster.nats.freeze();
    let frozen = Instant::now();
    await_publish_retried(&cluster, &prover);
    await_publish_retried(&cluster, &watcher);
    cluster.nats.thaw();
    eprintln!("NATS frozen for {:.1} s", frozen.elapsed().as_secs_f64());

    cluster.await_completed_once(&mut completed, &window);
    eprintln!(
        "window {window:?} completed once each, {:.1} s after the freeze",
        frozen.elapsed().as_secs_f64()
    );
    // Every block announced so far, the ones announced while frozen
    // included, is in the stream once.
    cluster.check(blocks.read_for(LINGER));
    let announced = cluster.check(announced_blocks(&blocks.records));
    let mut times: BTreeMap<u64, usize> = BTreeMap::new();
    for block in &announced {
        *times.entry(*block).or_default() += 1;
    }
    let doubled: Vec<String> = times
        .iter()
        .filter(|&(_, &n)| n > 1)
        .map(|(block, n)| format!("{block}×{n}"))
        .collect();
    if !doubled.is_empty() {
        cluster.fail(&format!("blocks announced more than once: {doubled:?}"));
    }
    cluster.check(checks::each_block_exactly("blocks", &window, announced, 1));
    cluster.check(dead.read_for(LINGER));
    if !dead.records.is_empty() {
        let letters: Vec<String> = dead.records.iter().map(|r| r.text()).collect();
        cluster.fail(&format!(
            "{} messages dead-lettered after NATS was frozen:\n{}",
            letters.len(),
            letters.join("\n")
        ));
    }
}

//! The Ethereum RPC gone mid-run: the watcher reaches anvil through a proxy
//! that cuts its connections and refuses new ones while blocks keep being
//! finalized. The outage lasts until the watcher has failed three polls in a
//! row (it backs off between them); then the RPC comes back, and nobody
//! touches anything else. Every block of the window, those finalized during
//! the outage included, must be completed exactly once, nothing
//! dead-lettered.

mod nats_support;
mod support;

use std::time::Instant;

use nats_support::checks::{self, window};
use nats_support::layout::{block_watcher, mock_prover, proof_matcher};
use nats_support::rpc_proxy::RpcProxy;
use nats_support::{BACKLOG, Cluster, FLOW_TIMEOUT, LINGER, RoleProcess};

/// How many polls `watcher` has logged as failed.
fn failed_polls(watcher: &RoleProcess) -> usize {
    let lines = watcher.log_lines();
    lines.iter().filter(|l| l.contains("poll failed")).count()
}

#[test]
fn an_rpc_outage_mid_run_loses_and_doubles_nothing() {
    let cluster = Cluster::start("faults-rpc-outage");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 25);
    let proxy = RpcProxy::start(&cluster.anvil.url());
    let _prover = cluster.spawn(&mock_prover("prover"));
    let _matcher = cluster.spawn(&proof_matcher());
    let watcher = cluster.spawn(&block_watcher(first).env([("L1_RPC", proxy.url())]));
    let _miner = cluster.miner();
    let mut completed = cluster.tap("completed_proofs");
    let mut dead = cluster.tap("dead_letter");

    let part = first..first + 5;
    let what = format!("completed proofs for {part:?} before the outage");
    cluster.check(completed.wait_until(FLOW_TIMEOUT, &what, |records| {
        checks::fully_proved(records, &part, 1)
    }));
    let before = failed_polls(&watcher);
    proxy.go_down();
    let outage = Instant::now();
    cluster.await_log(&watcher, "three failed polls in the outage", |_| {
        failed_polls(&watcher) >= before + 3
    });
    proxy.come_back();
    eprintln!(
        "RPC down for {:.1} s ({} failed polls)",
        outage.elapsed().as_secs_f64(),
        failed_polls(&watcher) - before
    );

    cluster.await_completed_once(&mut completed, &window);
    cluster.check(dead.read_for(LINGER));
    if !dead.records.is_empty() {
        let letters: Vec<String> = dead.records.iter().map(|r| r.text()).collect();
        cluster.fail(&format!(
            "{} messages dead-lettered after an RPC outage:\n{}",
            letters.len(),
            letters.join("\n")
        ));
    }
}

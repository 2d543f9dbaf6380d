//! A sick prover host on a shared queue: every job it takes fails at once
//! (a full disk, a broken GPU), so it is always idle first. It must not win
//! every redelivery and dead-letter the queue while a healthy host on the
//! same consumer could prove it.

mod nats_support;
mod support;

use nats_support::checks::window;
use nats_support::layout::{mock_prover, proof_matcher, window_watcher};
use nats_support::{Cluster, LINGER, Role};

#[test]
fn a_sick_host_does_not_swallow_the_queue() {
    let cluster = Cluster::start("sick-host");
    cluster.init();
    let first = cluster.next_block_with_backlog(12);
    let window = window(first, 12);
    let mut dead = cluster.tap("dead_letter");
    let shared = [
        ("CONSUMER_NAME", "shared-prover"),
        // A failed job comes back after 2 s: time for the healthy host.
        ("ORCHESTRATOR_RETRY_DELAY", "2s"),
    ];
    let _sick = cluster.spawn(
        &Role::new("sick", "prover")
            .env(shared)
            .env([("BINARY", "false")]),
    );
    let _healthy = cluster.spawn(&mock_prover("healthy").env(shared));
    let _matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&window_watcher(&window));

    let mut completed = cluster.tap("completed_proofs");
    cluster.await_completed_once(&mut completed, &window);
    cluster.check(dead.read_for(LINGER));
    if !dead.records.is_empty() {
        let letters: Vec<String> = dead.records.iter().map(|r| r.text()).collect();
        cluster.fail(&format!(
            "{} jobs dead-lettered although a healthy host was idle:\n{}",
            letters.len(),
            letters.join("\n")
        ));
    }
}

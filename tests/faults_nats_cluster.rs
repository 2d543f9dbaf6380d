//! One node of a 3-node NATS cluster lost mid-run. `init`, then
//! `init --replicas 3`, gives the stream, the matcher's key-value bucket and
//! the payload bucket three copies; a watcher, two provers sharing their consumer and a matcher
//! run against all three URLs. The node leading the stream (the worst one to
//! lose: the stream and its consumers must elect new leaders) is killed with
//! SIGKILL while blocks are being proved, and nobody touches anything after:
//! every block of the window must still be completed exactly once, and
//! nothing dead-lettered.

mod nats_support;
mod support;

use std::time::{Duration, Instant};

use nats_support::checks::{self, window};
use nats_support::layout::{mock_prover, proof_matcher, window_watcher};
use nats_support::nats_cluster::{node_name, stream_leader};
use nats_support::tap::STREAM;
use nats_support::{BACKLOG, Cluster, FLOW_TIMEOUT, LINGER, Role, Tap};

/// A reader of `queue` through node `url` (a survivor: a test reader's
/// consumer has one copy, on whichever node it was created).
fn tap_on(cluster: &Cluster, url: &str, queue: &str) -> Tap {
    cluster.check(Tap::open(url, queue, Duration::from_secs(30)))
}

#[test]
fn a_cluster_node_lost_mid_run_loses_and_doubles_nothing() {
    let mut cluster = Cluster::start_nats_cluster("faults-nats-cluster", 3);
    // First as a deployment started on one copy, then with three: `init`
    // must raise the replicas of what exists, not only create.
    for init in [
        Role::new("init-1", "init"),
        Role::new("init-3", "init").args(["--replicas", "3"]),
    ] {
        let (process, status) = cluster.run_to_exit(&init, Duration::from_secs(60));
        if !status.success() {
            cluster.fail(&format!("{} exited with {status}", process.label()));
        }
    }
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 30);
    let shared = [("CONSUMER_NAME", "cluster-prover")];
    let _prover_1 = cluster.spawn(&mock_prover("prover-1").env(shared));
    let _prover_2 = cluster.spawn(&mock_prover("prover-2").env(shared));
    let _matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&window_watcher(&window));
    let _miner = cluster.miner();

    let nodes = cluster.nats_nodes();
    let victim = stream_leader(&nodes, STREAM);
    let survivor = nodes[(victim + 1) % nodes.len()].url();
    let part = first..first + 10;
    {
        let mut completed = tap_on(&cluster, &survivor, "completed_proofs");
        let what = format!("completed proofs for {part:?} before the node is lost");
        cluster.check(completed.wait_until(FLOW_TIMEOUT, &what, |records| {
            checks::fully_proved(records, &part, 1)
        }));
    }
    eprintln!(
        "killing {} (nats at {}), the leader of stream {STREAM}",
        node_name(victim),
        cluster.nats_nodes()[victim].url()
    );
    cluster.nats_node_mut(victim).kill();
    let killed = Instant::now();

    let mut completed = tap_on(&cluster, &survivor, "completed_proofs");
    cluster.await_completed_once(&mut completed, &window);
    eprintln!(
        "window {window:?} completed once each, {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    let mut dead = tap_on(&cluster, &survivor, "dead_letter");
    cluster.check(dead.read_for(LINGER));
    if !dead.records.is_empty() {
        let letters: Vec<String> = dead.records.iter().map(|r| r.text()).collect();
        cluster.fail(&format!(
            "{} messages dead-lettered after losing one node of three:\n{}",
            letters.len(),
            letters.join("\n")
        ));
    }
}

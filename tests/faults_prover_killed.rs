//! A prover host killed with SIGKILL mid-proof: no hand-back, no nak, no
//! ack. Its job must come back to the other host on the same consumer once
//! the ack wait runs out, and be proved there; every block of the window is
//! completed exactly once and nothing is dead-lettered.

mod nats_support;
mod support;

use nats_support::checks::window;
use nats_support::layout::{mock_prover, proof_matcher, window_watcher};
use nats_support::role::log_field;
use nats_support::{BACKLOG, Cluster, LINGER};

#[test]
fn a_prover_killed_mid_proof_loses_and_doubles_nothing() {
    let cluster = Cluster::start("faults-prover-killed");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 8);
    // A short ack wait: the killed host's job comes back in seconds.
    let host = |label: &str| {
        mock_prover(label).env([
            ("CONSUMER_NAME", "killed-prover"),
            ("ORCHESTRATOR_ACK_WAIT", "4s"),
            ("ORCHESTRATOR_PROGRESS_INTERVAL", "1s"),
            ("MOCK_PROVE_TIME_MS", "1000"),
        ])
    };
    let mut victim = cluster.spawn(&host("prover-a"));
    let survivor = cluster.spawn(&host("prover-b"));
    let _matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&window_watcher(&window));
    let mut dead = cluster.tap("dead_letter");

    // Killed while proving its second job.
    cluster.await_log(&victim, "a second `Running prover.`", |_| {
        let lines = victim.log_lines();
        lines
            .iter()
            .filter(|l| l.contains("Running prover."))
            .count()
            >= 2
    });
    let lines = victim.log_lines();
    let job = lines
        .iter()
        .filter(|l| l.contains("Running prover."))
        .filter_map(|l| log_field(l, "job"))
        .nth(1)
        .expect("a second job")
        .to_owned();
    victim.kill_hard();
    eprintln!("killed prover-a with SIGKILL while it proved {job}");

    cluster.await_completed_once(&mut cluster.tap("completed_proofs"), &window);
    if survivor.prover_runs(&job) != 1 {
        cluster.fail(&format!(
            "{job}, whose prover was killed, was run {} times by prover-b; expected once",
            survivor.prover_runs(&job)
        ));
    }
    cluster.check(dead.read_for(LINGER));
    if !dead.records.is_empty() {
        let letters: Vec<String> = dead.records.iter().map(|r| r.text()).collect();
        cluster.fail(&format!(
            "{} messages dead-lettered after a prover was killed:\n{}",
            letters.len(),
            letters.join("\n")
        ));
    }
}

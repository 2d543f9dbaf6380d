//! Role mode when the ground moves under a long proof: NATS goes away after
//! the prover started (the proof must not be run again, only its publish),
//! and a prover host is stopped with SIGTERM mid-job (the job must go to
//! another host at once, not after the ack wait). Every role is a process of
//! the real binary, glued by a real nats-server, blocks from a real anvil.

mod nats_support;
mod support;

use nats_support::checks::window;
use nats_support::layout::{mock_prover, proof_matcher, window_watcher};
use nats_support::role::log_field;
use nats_support::{BACKLOG, Cluster, RoleProcess};
use support::STOP_TIMEOUT;

/// Waits until `prover` has started the prover binary for `job`.
fn await_started(cluster: &Cluster, prover: &RoleProcess, job: &str) {
    cluster.await_log(prover, &format!("`Running prover.` of {job}"), |line| {
        line.contains("Running prover.") && log_field(line, "job") == Some(job)
    });
}

#[test]
fn a_publish_failing_after_the_proof_is_retried_without_proving_again() {
    let mut cluster = Cluster::start("real-nats-outage");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 1);
    let job = format!("block-{first}");
    let prover = cluster.spawn(&mock_prover("prover").env([("MOCK_PROVE_TIME_MS", "3000")]));
    let _matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&window_watcher(&window));

    await_started(&cluster, &prover, &job);
    cluster.nats.kill();
    // The proof finishes while NATS is down; the pool's own publish retry
    // says so once the publisher's retries are used up.
    cluster.await_log(&prover, "a failed publish of the proved output", |line| {
        line.contains("could not publish the proved output") && log_field(line, "job") == Some(&job)
    });
    cluster.nats.restart();

    cluster.await_completed_once(&mut cluster.tap("completed_proofs"), &window);
    let runs = prover.prover_runs(&job);
    if runs != 1 {
        cluster.fail(&format!(
            "the prover binary ran {runs} times for {job}; a failed publish must not run it again"
        ));
    }
}

#[test]
fn a_prover_stopped_by_sigterm_hands_its_running_job_to_another_host_at_once() {
    let cluster = Cluster::start("real-handover");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 1);
    let job = format!("block-{first}");
    // Ten minutes of ack wait: only a nak explains a redelivery within the
    // flow timeout.
    let host = |label: &str| {
        mock_prover(label).env([
            ("CONSUMER_NAME", "handover-prover"),
            ("ORCHESTRATOR_ACK_WAIT", "10m"),
            ("MOCK_PROVE_TIME_MS", "20000"),
        ])
    };
    let mut prover_a = cluster.spawn(&host("prover-a"));
    let _matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&window_watcher(&window));
    await_started(&cluster, &prover_a, &job);
    let prover_b = cluster.spawn(&host("prover-b"));
    cluster.await_log(&prover_b, "its consumer", |line| line.contains("consuming"));

    prover_a.sigterm();
    if prover_a.wait_exit(STOP_TIMEOUT).is_none() {
        cluster.fail("prover-a still running after SIGTERM");
    }
    await_started(&cluster, &prover_b, &job);
    cluster.await_completed_once(&mut cluster.tap("completed_proofs"), &window);
    let runs = [prover_a.prover_runs(&job), prover_b.prover_runs(&job)];
    if runs != [1, 1] {
        cluster.fail(&format!(
            "{job} was started {runs:?} times by prover-a, prover-b; expected once each"
        ));
    }
}

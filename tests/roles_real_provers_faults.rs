//! Role mode when the ground moves under a long proof: NATS goes away after
//! the prover started (the proof must not be run again, only its publish),
//! NATS goes away for longer than the ack wait (the server redelivers the
//! running job; the host's idle worker must not prove it a second time),
//! and a prover host is stopped with SIGTERM mid-job (the job must go to
//! another host at once, not after the ack wait). Every role is a process of
//! the real binary, glued by a real nats-server, blocks from a real anvil.

mod nats_support;
mod support;

use std::ops::Range;
use std::time::Duration;

use nats_support::checks::window;
use nats_support::layout::{mock_prover, proof_matcher, window_watcher};
use nats_support::role::log_field;
use nats_support::{BACKLOG, Cluster, FLOW_TIMEOUT, RoleProcess};
use support::STOP_TIMEOUT;

/// A cluster, ready (`init`), whose watcher is to announce one block after
/// a backlog: the block's window and its job id.
fn one_block(name: &str) -> (Cluster, Range<u64>, String) {
    let cluster = Cluster::start(name);
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    (cluster, window(first, 1), format!("block-{first}"))
}

/// Waits until `prover` has started the prover binary for `job`.
fn await_started(cluster: &Cluster, prover: &RoleProcess, job: &str) {
    cluster.await_log(prover, &format!("`Running prover.` of {job}"), |line| {
        line.contains("Running prover.") && log_field(line, "job") == Some(job)
    });
}

#[test]
fn a_publish_failing_after_the_proof_is_retried_without_proving_again() {
    let (mut cluster, window, job) = one_block("real-nats-outage");
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
fn a_job_redelivered_while_it_runs_is_not_proved_on_a_second_worker() {
    let (mut cluster, window, job) = one_block("real-redelivered-running");
    // Two workers, so one is idle when the redelivery comes; a proof that
    // outlasts the outage.
    let prover = cluster.spawn(&mock_prover("prover").env([
        ("ORCHESTRATOR_WORKERS", "2"),
        ("ORCHESTRATOR_ACK_WAIT", "3s"),
        ("ORCHESTRATOR_PROGRESS_INTERVAL", "1s"),
        ("MOCK_PROVE_TIME_MS", "20000"),
    ]));
    let _matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&window_watcher(&window));

    await_started(&cluster, &prover, &job);
    cluster.nats.kill();
    // The outage is the scenario: no progress reaches the server for longer
    // than the ack wait, so it redelivers the job once it is back.
    std::thread::sleep(Duration::from_secs(5));
    cluster.nats.restart();
    // The redelivery came: it waits for the running job (or, on a machine
    // so slow that the proof ended first, is settled as already proved), or
    // (the defect) starts the prover a second time.
    let waited = || {
        prover.log_lines().iter().any(|line| {
            (line.contains("redelivered while it runs")
                || line.contains("redelivered after its proof was published"))
                && log_field(line, "job") == Some(&job)
        })
    };
    let came = support::eventually(FLOW_TIMEOUT, || waited() || prover.prover_runs(&job) > 1);
    if !came {
        cluster.fail("the server never redelivered the running job");
    }

    cluster.await_completed_once(&mut cluster.tap("completed_proofs"), &window);
    let runs = prover.prover_runs(&job);
    if runs != 1 || !waited() {
        cluster.fail(&format!(
            "the prover binary ran {runs} times for {job}; a redelivery of a running job must wait for it"
        ));
    }
}

#[test]
fn a_prover_stopped_by_sigterm_hands_its_running_job_to_another_host_at_once() {
    let (cluster, window, job) = one_block("real-handover");
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

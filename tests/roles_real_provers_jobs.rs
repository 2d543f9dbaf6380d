//! Role mode with provers that run like real zkVM provers, not like the
//! template's one-second mocks: jobs far longer than NATS's ack wait, one
//! prover per GPU, helper processes that must die with a job that timed out.
//! Every role is a process of the real binary, glued by a real nats-server,
//! blocks from a real anvil.

mod nats_support;
mod support;

use std::collections::BTreeSet;

use nats_support::checks::{each_block_exactly, window};
use nats_support::layout::{mock_prover, proof_matcher, window_watcher};
use nats_support::{BACKLOG, Cluster, Role, RoleProcess};
use support::{STOP_TIMEOUT, eventually, process_alive, prover_script};

#[test]
fn jobs_three_times_longer_than_the_ack_wait_are_started_once() {
    let cluster = Cluster::start("real-long-jobs");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 3);
    // Four workers for three jobs: a job NATS gave up on would find an idle
    // worker at once, on either host.
    let long_prover = |label: &str| {
        mock_prover(label).env([
            ("CONSUMER_NAME", "long-prover"),
            ("ORCHESTRATOR_WORKERS", "2"),
            ("ORCHESTRATOR_ACK_WAIT", "2s"),
            ("ORCHESTRATOR_PROGRESS_INTERVAL", "500ms"),
            ("MOCK_PROVE_TIME_MS", "6000"),
        ])
    };
    let provers: Vec<RoleProcess> = ["prover-1", "prover-2"]
        .iter()
        .map(|label| cluster.spawn(&long_prover(label)))
        .collect();
    let _matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&window_watcher(&window));

    cluster.await_completed_once(&mut cluster.tap("completed_proofs"), &window);
    for block in window.clone() {
        let job = format!("block-{block}");
        let runs: Vec<usize> = provers.iter().map(|p| p.prover_runs(&job)).collect();
        if runs.iter().sum::<usize>() != 1 {
            cluster.fail(&format!(
                "{job} was started {runs:?} times by prover-1, prover-2; expected once in all"
            ));
        }
    }
}

#[test]
fn with_two_gpus_each_job_gets_one_device_and_no_device_runs_two_jobs() {
    let cluster = Cluster::start("real-gpus");
    cluster.init();
    let first = cluster.next_block_with_backlog(6);
    let window = window(first, 6);
    let gpu_dir = cluster.dir().join("gpu");
    std::fs::create_dir_all(&gpu_dir).expect("create the gpu dir");
    let _prover = cluster.spawn(&Role::new("gpu-prover", "prover").env([
        (
            "BINARY",
            prover_script("gpu-prover.sh").display().to_string(),
        ),
        ("ORCHESTRATOR_GPUS", "0,1".to_owned()),
        ("GPU_DIR", gpu_dir.display().to_string()),
        ("GPU_HOLD_SECONDS", "1".to_owned()),
    ]));
    let _matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&window_watcher(&window));

    cluster.await_completed_once(&mut cluster.tap("completed_proofs"), &window);
    let runs = std::fs::read_to_string(gpu_dir.join("runs")).unwrap_or_default();
    let mut used = BTreeSet::new();
    let mut blocks = Vec::new();
    for run in runs.lines() {
        let (block, device) = run.split_once(' ').unwrap_or((run, ""));
        let device = device.trim_start_matches('[').trim_end_matches(']');
        if !["0", "1"].contains(&device) {
            cluster.fail(&format!(
                "a prover run had CUDA_VISIBLE_DEVICES {device:?}, expected exactly one of 0, 1; runs:\n{runs}"
            ));
        }
        used.insert(device.to_owned());
        blocks.extend(block.parse::<u64>().ok());
    }
    cluster.check(each_block_exactly("gpu prover runs", &window, blocks, 1));
    if used.len() != 2 {
        cluster.fail(&format!(
            "only devices {used:?} were used for {window:?}; runs:\n{runs}"
        ));
    }
    let overlaps = std::fs::read_to_string(gpu_dir.join("overlaps")).unwrap_or_default();
    if !overlaps.is_empty() {
        cluster.fail(&format!(
            "jobs ran on a device another job held (block [device]):\n{overlaps}runs:\n{runs}"
        ));
    }
}

/// The pids the mock prover printed as `helper started: pid N` in `role`'s log.
fn helper_pids(role: &RoleProcess) -> Vec<u32> {
    let lines = role.log_lines();
    let pids = lines
        .iter()
        .filter_map(|l| l.split("helper started: pid ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok());
    pids.collect()
}

/// Kills, when dropped, every helper `role` logged that is still a mock
/// helper, so a red test does not litter the machine.
struct KillHelpers<'a>(&'a RoleProcess);

impl Drop for KillHelpers<'_> {
    fn drop(&mut self) {
        for pid in helper_pids(self.0) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("--mock-helper") {
                // SAFETY: kill(2) of a live helper this test saw a prover start.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

#[test]
fn helpers_of_a_prover_killed_at_the_job_timeout_are_gone() {
    let cluster = Cluster::start("real-helpers");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 1);
    let prover = cluster.spawn(&mock_prover("prover").env([
        ("MOCK_HELPERS", "2"),
        ("MOCK_PROVE_TIME_MS", "120000"),
        ("ORCHESTRATOR_JOB_TIMEOUT", "2s"),
        ("ORCHESTRATOR_MAX_ATTEMPTS", "1"),
    ]));
    let _helpers = KillHelpers(&prover);
    let _watcher = cluster.spawn(&window_watcher(&window));
    let mut dead = cluster.tap("dead_letter");

    let block = first.to_string();
    cluster.check(dead.wait_until(
        nats_support::FLOW_TIMEOUT,
        "the timed-out job's dead letter",
        |records| {
            let letters = records.iter().map(|r| r.json());
            letters
                .into_iter()
                .any(|l| l["payload"].as_str() == Some(&block))
        },
    ));
    let pids = helper_pids(&prover);
    if pids.len() != 2 {
        cluster.fail(&format!(
            "expected 2 `helper started: pid N` lines in the prover's log, got pids {pids:?}"
        ));
    }
    let gone = eventually(STOP_TIMEOUT, || pids.iter().all(|&pid| !process_alive(pid)));
    if !gone {
        let alive: Vec<u32> = pids.into_iter().filter(|&p| process_alive(p)).collect();
        cluster.fail(&format!(
            "helpers {alive:?} outlived their prover, killed at the job timeout"
        ));
    }
}

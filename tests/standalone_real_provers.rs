//! `orchestrator run` with provers that behave like real zkVM provers: they
//! log on both pipes for seconds, write proofs of megabytes and start helper
//! processes. The bundled mock does all of that through its knobs
//! (`MOCK_LOG_INTERVAL_MS`, `MOCK_PROOF_BYTES`, `MOCK_HELPERS`).

mod support;

use std::collections::BTreeSet;

use support::events::{Event, sampled};
use support::{STOP_TIMEOUT, eventually, process_alive, prover_script, run_range};

#[test]
fn a_prover_logging_for_seconds_proves_every_block_and_its_lines_reach_the_log() {
    let (from, to) = (3, 4);
    let (run, status) = run_range("chatty", from, to, |run| {
        run.args(["--workers", "2"])
            .env("MOCK_PROVE_TIME_MS", "6000")
            .env("MOCK_LOG_INTERVAL_MS", "300")
    });
    run.assert_exit_code(status, 0);
    run.assert_outcome(&sampled(from, to, 1), "mock-prover", &BTreeSet::new());
    let log = run.stderr();
    for block in from..=to {
        let job = format!("job=block-{block}");
        for pipe in ["stdout", "stderr"] {
            let lines = log
                .lines()
                .filter(|l| l.contains("progress") && l.contains(&job) && l.contains(pipe))
                .count();
            // 6 s at one line per 300 ms: most of 20 lines, whatever the load.
            if lines < 10 {
                run.fail(&format!(
                    "only {lines} progress lines of {job} on {pipe} in the log"
                ));
            }
        }
    }
}

#[test]
fn a_three_megabyte_proof_is_completed_once_and_whole() {
    const BYTES: usize = 3_000_000;
    let (from, to) = (5, 6);
    let (run, status) = run_range("big-proof", from, to, |run| {
        run.env("MOCK_PROOF_BYTES", BYTES.to_string())
    });
    run.assert_exit_code(status, 0);
    run.assert_outcome(&sampled(from, to, 1), "mock-prover", &BTreeSet::new());
    for event in &run.events {
        if let Event::Proved { block, proof, .. } = event
            && proof.len() != BYTES
        {
            run.fail(&format!(
                "block {block}: proof of {} bytes, expected {BYTES}",
                proof.len()
            ));
        }
    }
}

/// The pids the mock prover printed as `helper started: pid N` in `log`.
fn helper_pids(log: &str) -> Vec<u32> {
    log.lines()
        .filter_map(|l| l.split("helper started: pid ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Kills whatever helper is left, so a red test does not litter the machine.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: kill(2) of a pid this test saw a prover start.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

#[test]
fn helpers_of_a_prover_killed_at_the_timeout_are_gone() {
    let (run, status) = run_range("helpers", 2, 2, |run| {
        run.args(["--job-timeout", "2s", "--max-attempts", "1"])
            .env("MOCK_PROVE_TIME_MS", "120000")
            .env("MOCK_HELPERS", "2")
    });
    let helpers = KillOnDrop(helper_pids(&run.stderr()));
    run.assert_exit_code(status, 1);
    run.assert_outcome(&BTreeSet::new(), "mock-prover", &BTreeSet::from([2]));
    if helpers.0.len() != 2 {
        run.fail(&format!(
            "expected 2 helper pids in the log, got {:?}",
            helpers.0
        ));
    }
    let gone = eventually(STOP_TIMEOUT, || {
        helpers.0.iter().all(|&pid| !process_alive(pid))
    });
    if !gone {
        run.fail(&format!("helpers {:?} outlived the job timeout", helpers.0));
    }
}

#[test]
fn gpus_give_each_run_one_device_and_never_two_runs_one_device() {
    let (from, to) = (1, 6);
    let prover = prover_script("gpu-prover.sh");
    let mut gpu_dir = None;
    let (run, status) = run_range("gpus", from, to, |run| {
        let dir = run.dir().join("gpus");
        std::fs::create_dir_all(&dir).unwrap();
        gpu_dir = Some(dir.clone());
        run.arg_path("--binary", &prover)
            .args(["--gpus", "0,1"])
            .env("GPU_DIR", &dir)
            .env("GPU_HOLD_SECONDS", "0.5")
    });
    run.assert_exit_code(status, 0);
    run.assert_outcome(&sampled(from, to, 1), "gpu-prover", &BTreeSet::new());
    let dir = gpu_dir.expect("configured");
    let runs = std::fs::read_to_string(dir.join("runs")).unwrap_or_default();
    let devices: Vec<&str> = runs
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, d)| d))
        .collect();
    if devices.len() != 6 || devices.iter().any(|d| !matches!(*d, "[0]" | "[1]")) {
        run.fail(&format!("expected 6 runs on device 0 or 1, got:\n{runs}"));
    }
    if !(devices.contains(&"[0]") && devices.contains(&"[1]")) {
        run.fail(&format!("both devices should have been used:\n{runs}"));
    }
    if let Ok(overlaps) = std::fs::read_to_string(dir.join("overlaps")) {
        run.fail(&format!("two runs shared a device:\n{overlaps}"));
    }
}

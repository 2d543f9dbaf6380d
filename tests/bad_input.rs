//! What `orchestrator run` does when its inputs are bad: an unreachable RPC
//! is retried rather than fatal; a missing or non-executable prover binary
//! stops the process at start with one line saying what to fix; a prover
//! that fails (exit code, invalid JSON output, hang past the job timeout) is
//! retried up to `--max-attempts`, then its block is reported failed once,
//! the other blocks are still proved, and the run exits 1.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::events::sampled;
use support::node::free_port;
use support::{RUN_TIMEOUT, RunBuilder, STOP_TIMEOUT, prover_script, run_range, temp_dir};

/// An RPC URL on a loopback port nothing listens on.
fn closed_rpc() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

#[test]
fn unreachable_rpc_is_retried() {
    let rpc = closed_rpc();
    let mut run = RunBuilder::new("unreachable-rpc", &rpc)
        .args(["--from", "1"])
        .spawn();
    // Each failed poll logs a line naming the RPC and its retry; a second
    // such line means the first failure was followed by another attempt.
    let failures = |stderr: &str| {
        stderr
            .lines()
            .filter(|line| line.contains(&rpc) && line.to_lowercase().contains("retry"))
            .count()
    };
    let mut exited = false;
    let retried = support::eventually(RUN_TIMEOUT, || {
        exited = !run.is_running();
        exited || failures(&run.stderr()) >= 2
    });
    if exited {
        run.fail(&format!(
            "exited although an unreachable RPC ({rpc}) should be retried"
        ));
    }
    if !retried {
        run.fail(&format!(
            "timed out after {RUN_TIMEOUT:?} waiting for a second failed attempt on {rpc} \
             (failure lines naming it and a retry: {})",
            failures(&run.stderr())
        ));
    }
    // The HTTP client's own message ("error sending request") hides why;
    // the logged error must say it.
    if !run.stderr().contains("Connection refused") {
        run.fail("the failed polls never named their cause (Connection refused)");
    }
    // The outage ends: a node comes up where the URL points.
    let port = rpc.rsplit(':').next().and_then(|p| p.parse().ok());
    let _anvil = support::node::Anvil::start_at(port.expect("a port in the RPC URL"));
    let recovered = |stderr: &str| {
        stderr
            .lines()
            .filter(|line| line.contains("RPC recovered after"))
            .count()
    };
    if !support::eventually(RUN_TIMEOUT, || recovered(&run.stderr()) > 0) {
        run.fail(&format!(
            "timed out after {RUN_TIMEOUT:?} waiting for `RPC recovered after` once {rpc} answers"
        ));
    }
    let status = run.stop();
    run.assert_exit_code(status, 0);
    let stderr = run.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    let last_failure = lines.iter().rposition(|l| l.contains("poll failed"));
    let recovery = lines.iter().position(|l| l.contains("RPC recovered after"));
    if recovered(&stderr) != 1 || last_failure > recovery {
        run.fail("expected one `RPC recovered after` line, after the last failed poll");
    }
}

/// Runs with `--binary binary` and asserts a quick non-zero exit, no events,
/// and a stderr line that names the path and contains one of `hints`.
fn assert_rejected_at_start(test: &str, binary: &Path, hints: &[&str]) {
    let mut run = RunBuilder::new(test, &closed_rpc())
        .arg_path("--binary", binary)
        .args(["--from", "1"])
        .spawn();
    let status = run.wait_exit(STOP_TIMEOUT);
    if status.success() {
        run.fail(&format!(
            "expected a non-zero exit for --binary {}",
            binary.display()
        ));
    }
    if !run.events.is_empty() {
        run.fail("expected no events from a run that cannot start");
    }
    let path = binary.display().to_string();
    let stderr = run.stderr();
    let clear = stderr.lines().any(|line| {
        let lower = line.to_lowercase();
        line.contains(&path) && hints.iter().any(|hint| lower.contains(hint))
    });
    if !clear {
        run.fail(&format!(
            "no stderr line names {path} and says one of {hints:?}"
        ));
    }
}

#[test]
fn missing_binary_fails_at_start() {
    let dir = temp_dir("missing-binary");
    let binary = dir.path().join("no-such-prover");
    assert_rejected_at_start("missing-binary", &binary, &["binary"]);
}

#[test]
fn non_executable_binary_fails_at_start() {
    let dir = temp_dir("non-executable");
    let binary = dir.path().join("prover.sh");
    std::fs::write(&binary, "#!/bin/sh\nexit 0\n").expect("write prover");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_rejected_at_start("non-executable", &binary, &["executable", "chmod"]);
}

/// A range run with `tests/provers/flaky-prover.sh` failing in `mode` on the
/// blocks divisible by 3: those are reported failed once each after exactly
/// `attempts` attempts (100 ms apart, the harness's `--retry-delay`), every
/// other block is proved after one, and the run exits 1.
fn failing_blocks_are_reported(mode: &str, attempts: usize) {
    let (from, to) = (2, 9);
    let failing: BTreeSet<u64> = sampled(from, to, 1)
        .into_iter()
        .filter(|b| b % 3 == 0)
        .collect();
    let proved: BTreeSet<u64> = sampled(from, to, 1).difference(&failing).copied().collect();
    let prover = prover_script("flaky-prover.sh");
    let (run, status) = run_range(&format!("flaky-{mode}"), from, to, |run| {
        let dir = run.dir().join("attempts");
        std::fs::create_dir(&dir).expect("attempts dir");
        run.arg_path("--binary", &prover)
            .args("--workers 2 --max-attempts 2 --job-timeout 1s".split(' '))
            .env("FLAKY_MODE", mode)
            .env("ATTEMPTS_DIR", dir)
    });
    run.assert_exit_code(status, 1);
    run.assert_outcome(&proved, "flaky-prover", &failing);

    let attempts_dir = run.dir().join("attempts");
    for block in from..=to {
        let recorded =
            std::fs::read_to_string(attempts_dir.join(block.to_string())).unwrap_or_default();
        let expected = if failing.contains(&block) {
            attempts
        } else {
            1
        };
        if recorded.lines().count() != expected {
            run.fail(&format!(
                "block {block}: {} attempts, expected {expected}",
                recorded.lines().count()
            ));
        }
    }
}

#[test]
fn failing_prover_is_retried_then_reported_exit_code() {
    failing_blocks_are_reported("exit", 2);
}

#[test]
fn invalid_json_output_is_reported_without_a_retry() {
    // The same prover would write the same output: a retry only burns time.
    failing_blocks_are_reported("badjson", 1);
}

#[test]
fn failing_prover_is_retried_then_reported_hang() {
    failing_blocks_are_reported("hang", 2);
}

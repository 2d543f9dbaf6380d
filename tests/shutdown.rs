//! SIGTERM and Ctrl-C (SIGINT) stop `orchestrator run` cleanly while provers are running: the
//! process takes its provers down with it, including the provers' own
//! children (the whole process group), so nothing is orphaned. An
//! open-ended run stopped so exits 0; a range run with blocks left exits
//! 128 + the signal's number (143, 130) and says how many are left.
//! Killed outright (`kill -9`), it still takes its provers down, and the
//! helpers that left their process groups too.

mod support;

use std::path::{Path, PathBuf};

use support::events::{self, Event};
use support::{
    Anvil, Orchestrator, RUN_TIMEOUT, RunBuilder, STOP_TIMEOUT, eventually, process_alive,
    prover_script,
};

/// The pids the test provers recorded in `dir`: per job, the prover's own
/// and its `sleep 300`s' (`orphan-prover.sh`: one in its group;
/// `setsid-prover.sh`: one in its group, one that left it).
fn recorded_pids(dir: &Path) -> Vec<u32> {
    let files = std::fs::read_dir(dir).expect("read pids dir");
    let pid_files = files
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "pids"));
    let contents: Vec<String> = pid_files
        .map(|path| std::fs::read_to_string(path).expect("read pids file"))
        .collect();
    let pids = contents.iter().flat_map(|text| text.split_whitespace());
    pids.map(|pid| pid.parse().expect("pid")).collect()
}

/// When the test ends, pass or fail, SIGKILLs whatever recorded process is
/// still a test prover, so a failing run does not leak `sleep 300`s.
struct KillLeftovers(PathBuf);

impl Drop for KillLeftovers {
    fn drop(&mut self) {
        if !self.0.is_dir() {
            return;
        }
        for pid in recorded_pids(&self.0) {
            // Checking the command line keeps a reused pid safe from us.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let ours = ["sleep", "orphan-prover", "setsid-prover"];
            if ours.iter().any(|name| cmdline.contains(name)) {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

#[test]
fn sigterm_leaves_no_orphans() {
    stop_leaves_no_orphans("orphans-term", libc::SIGTERM);
}

#[test]
fn ctrl_c_leaves_no_orphans() {
    stop_leaves_no_orphans("orphans-int", libc::SIGINT);
}

/// A range run with two `orphan-prover.sh` jobs running, each a prover shell
/// and its `sleep`; with the pids dir and the guard that kills leftovers.
/// The anvil node must outlive the run, so it is returned too.
fn run_with_two_orphan_provers(test: &str) -> (Anvil, Orchestrator, PathBuf, KillLeftovers) {
    run_with_two_provers(test, "orphan-prover.sh", 2)
}

/// A range run with two jobs of the test prover `script` running, each
/// having recorded `pids_per_job` pids.
fn run_with_two_provers(
    test: &str,
    script: &str,
    pids_per_job: usize,
) -> (Anvil, Orchestrator, PathBuf, KillLeftovers) {
    let anvil = Anvil::start();
    anvil.finalize_up_to(10);
    let builder = RunBuilder::new(test, &anvil.url());
    let pids_dir = builder.dir().join("pids");
    std::fs::create_dir(&pids_dir).expect("pids dir");
    let mut run = builder
        .arg_path("--binary", &prover_script(script))
        .args("--workers 2 --from 1 --to 10 --job-timeout 10m".split(' '))
        .env("PIDS_DIR", &pids_dir)
        .spawn();
    let cleanup = KillLeftovers(pids_dir.clone());
    eventually(RUN_TIMEOUT, || {
        recorded_pids(&pids_dir).len() == 2 * pids_per_job || !run.is_running()
    });
    if !run.is_running() {
        run.fail("exited before both provers were running");
    }
    (anvil, run, pids_dir, cleanup)
}

fn stop_leaves_no_orphans(test: &str, signal: i32) {
    // The cleanup guard is dropped before `run`, whose temp dir holds the pids.
    let (_anvil, mut run, pids_dir, _cleanup) = run_with_two_orphan_provers(test);
    run.signal(signal);
    let status = run.wait_exit(STOP_TIMEOUT);
    // A range run stopped before its end: 128 + the signal's number.
    run.assert_exit_code(status, 128 + signal);
    run.assert_no_duplicates();

    let pids = recorded_pids(&pids_dir);
    if pids.len() != 4 {
        run.fail(&format!(
            "expected 4 recorded pids (2 provers, 2 sleeps), got {pids:?}"
        ));
    }
    assert_all_die(&run, &pids, "alive after the orchestrator stopped");
}

/// A range run of 10 blocks stopped by `signal` once one block is proved:
/// the process exits with `expected` and its log says how many were left.
fn stop_range_after_one_proof(test: &str, signal: i32, expected: i32) {
    let anvil = Anvil::start();
    anvil.finalize_up_to(10);
    let mut run = RunBuilder::new(test, &anvil.url())
        .args("--from 1 --to 10".split(' '))
        .env("MOCK_PROVE_TIME_MS", "1500")
        .spawn();
    run.read_until(RUN_TIMEOUT, "a first proved block", |events| {
        events.iter().any(|e| matches!(e, Event::Proved { .. }))
    });
    run.signal(signal);
    let status = run.wait_exit(STOP_TIMEOUT);
    run.assert_exit_code(status, expected);
    let proved = events::proved(&run.events).len();
    if proved >= 10 {
        run.fail("the whole range was proved before the signal; the test proves nothing");
    }
    // The count is taken when the run stops, after the drain: at most as
    // many left as the events showed unproved, and at least one.
    let stderr = run.stderr();
    let left = stderr
        .split("range run stopped by a signal with ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok());
    let said = stderr.contains("of 10 blocks left unproved");
    if !said || !left.is_some_and(|n| (1..=10 - proved).contains(&n)) {
        run.fail(&format!(
            "no log line saying how many of the 10 blocks were left (read {left:?}, {proved} proved)"
        ));
    }
}

#[test]
fn sigterm_mid_range_exits_non_zero_and_says_what_is_left() {
    stop_range_after_one_proof("range-term", libc::SIGTERM, 143);
}

#[test]
fn ctrl_c_mid_range_exits_non_zero() {
    stop_range_after_one_proof("range-int", libc::SIGINT, 130);
}

#[test]
fn sigterm_ends_an_open_ended_run_with_0() {
    let anvil = Anvil::start();
    anvil.finalize_up_to(3);
    let mut run = RunBuilder::new("open-ended-term", &anvil.url())
        .args(["--from", "1"])
        .spawn();
    run.read_until(RUN_TIMEOUT, "a first proved block", |events| {
        events.iter().any(|e| matches!(e, Event::Proved { .. }))
    });
    let status = run.stop();
    run.assert_exit_code(status, 0);
}

/// `kill -9` of the orchestrator: no guard runs, so only its watchdog (a
/// shell that sees the orchestrator's end of a pipe close) can take the
/// provers down: each prover, the child in its process group and the helper
/// that left the group with `setsid`.
#[test]
fn provers_and_their_helpers_die_with_an_orchestrator_killed_outright() {
    let (_anvil, mut run, pids_dir, _cleanup) =
        run_with_two_provers("kill9", "setsid-prover.sh", 3);
    run.signal(libc::SIGKILL);
    let status = run.wait_exit(STOP_TIMEOUT);
    if status.code().is_some() {
        run.fail(&format!("expected death by SIGKILL, got {status}"));
    }
    // Each file holds "<prover pid> <its child's pid> <its helper's pid>".
    let pids = recorded_pids(&pids_dir);
    assert_all_die(
        &run,
        &pids,
        "provers or their helpers outlived an orchestrator killed with SIGKILL",
    );
}

/// Fails the run with `what` unless every one of `pids` is gone soon.
fn assert_all_die(run: &Orchestrator, pids: &[u32], what: &str) {
    let mut survivors = Vec::new();
    let all_dead = eventually(STOP_TIMEOUT, || {
        survivors = pids
            .iter()
            .copied()
            .filter(|&pid| process_alive(pid))
            .collect();
        survivors.is_empty()
    });
    if !all_dead {
        run.fail(&format!("{what}: {survivors:?} of {pids:?}"));
    }
}

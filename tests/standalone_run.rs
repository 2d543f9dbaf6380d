//! End-to-end runs of `orchestrator run` (standalone mode) against a real
//! anvil node and real prover binaries: following the finalized head with
//! several workers, sampling every Nth block, a backfill range that exits by
//! itself, multistep proving, and a shell prover that knows only the binary
//! contract. Each run must prove every expected block exactly once.

mod support;

use std::collections::BTreeSet;

use support::events::{self, proved_run_from, sampled};
use support::{Anvil, RUN_TIMEOUT, RunBuilder, prover_script, run_range};

/// Follows the chain from its current finalized block with `extra` flags,
/// mining `burst` blocks at once on top of anvil's 1 s blocks (the watcher
/// must catch up on a jump of the head without gaps), until the proved blocks
/// are an unbroken run of `count` blocks, `step` apart, from the first
/// sampled block. Then SIGTERM: a clean stop with exit code 0.
fn follow(test: &str, step: u64, count: usize, burst: u64, extra: &[&str]) {
    let anvil = Anvil::start();
    let from = anvil.finalized();
    let first = from.next_multiple_of(step);
    let mut run = RunBuilder::new(test, &anvil.url())
        .args(["--from", &from.to_string()])
        .args(extra)
        .spawn();
    anvil.mine(burst);
    run.read_until(
        RUN_TIMEOUT,
        &format!("an unbroken run of {count} proved blocks {step} apart from {first}"),
        |events| proved_run_from(events, first, step, count),
    );
    let status = run.stop();
    run.assert_exit_code(status, 0);

    // Whatever was still in flight at the stop may or may not be reported,
    // but nothing twice, nothing failed and nothing off the sampling grid.
    run.assert_no_duplicates();
    let failed = events::failed(&run.events);
    if !failed.is_empty() {
        run.fail(&format!("blocks reported failed: {failed:?}"));
    }
    let proved = events::proved(&run.events);
    if let Some(stray) = proved
        .iter()
        .find(|&&block| block < first || block % step != 0)
    {
        run.fail(&format!(
            "block {stray} proved, but the run samples every {step}th block from {first}"
        ));
    }
}

#[test]
fn follows_the_head_with_two_workers() {
    follow("follow", 1, 20, 12, &["--workers", "2"]);
}

#[test]
fn every_fifth_block() {
    // 5 proofs need ~25 blocks: mined at once rather than waited for.
    follow("every5", 5, 5, 30, &["--every", "5", "--workers", "2"]);
}

#[test]
fn range_run_exits_by_itself() {
    let (from, to) = (5, 24);
    let (run, status) = run_range("range", from, to, |run| run.args(["--workers", "2"]));
    run.assert_exit_code(status, 0);
    run.assert_outcome(&sampled(from, to, 1), "mock-prover", &BTreeSet::new());
}

#[test]
fn multistep_run() {
    let (from, to) = (3, 7);
    let (run, status) = run_range("multistep", from, to, |run| {
        run.args(["--multistep", "--steps", "4", "--workers", "2"])
    });
    run.assert_exit_code(status, 0);
    run.assert_outcome(
        &sampled(from, to, 1),
        "mock-multistep-prover",
        &BTreeSet::new(),
    );
}

#[test]
fn contract_only_shell_prover() {
    let (from, to) = (2, 11);
    let prover = prover_script("sh-prover.sh");
    let (run, status) = run_range("sh-prover", from, to, |run| {
        run.arg_path("--binary", &prover)
    });
    run.assert_exit_code(status, 0);
    run.assert_outcome(&sampled(from, to, 1), "sh-prover", &BTreeSet::new());
}

//! Real time: `--follow latest` over a WebSocket, and `--backlog newest`.
//!
//! The node is a real anvil with interval mining off, so every block is one
//! the test mined; the orchestrator polls once an hour, so only the heads
//! anvil pushes can bring a block in before the test's deadline.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use support::events::{self, Event};
use support::node::Anvil;
use support::{Orchestrator, RUN_TIMEOUT, RunBuilder, eventually};

/// Anvil without its own blocks: only what the test mines.
fn quiet_anvil() -> Anvil {
    let anvil = Anvil::start();
    anvil.stop_interval_mining();
    anvil
}

fn hash(anvil: &Anvil, number: u64) -> String {
    anvil.block(number)["hash"].as_str().unwrap().to_owned()
}

/// Waits until the run says it follows the heads anvil pushes: a block mined
/// before that would only be seen at the next poll, an hour later.
fn until_subscribed(run: &Orchestrator) {
    let subscribed = || run.stderr().contains("following the heads the node pushes");
    if !eventually(Duration::from_secs(30), subscribed) {
        run.fail("the run never subscribed to newHeads");
    }
}

fn proofs(events: &[Event]) -> Vec<(u64, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Proved {
                block, block_hash, ..
            } => Some((*block, block_hash.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn pushed_heads_are_proved_with_their_hash_and_a_reorg_orphans_the_replaced_proofs() {
    let anvil = quiet_anvil();
    let first = anvil.latest() + 1;
    let snapshot = anvil.rpc("evm_snapshot", json!([]));
    let mut run = RunBuilder::new("follow-latest", &anvil.ws_url())
        .args(["--follow", "latest", "--poll-interval", "1h"])
        .args([
            "--from",
            &first.to_string(),
            "--to",
            &(first + 2).to_string(),
        ])
        .env("MOCK_PROVE_TIME_MS", "20")
        .spawn();
    until_subscribed(&run);

    anvil.mine(2);
    let old = [hash(&anvil, first), hash(&anvil, first + 1)];
    run.read_until(RUN_TIMEOUT, "the first two blocks proved", |events| {
        events::proved(events).len() == 2
    });
    assert_eq!(
        proofs(&run.events),
        [
            (first, Some(old[0].clone())),
            (first + 1, Some(old[1].clone()))
        ]
    );

    // A reorg: back to before `first`, and three other blocks in their place.
    anvil.rpc("evm_revert", json!([snapshot]));
    anvil.rpc("evm_increaseTime", json!([60]));
    anvil.mine(3);
    let new: Vec<String> = (first..=first + 2).map(|n| hash(&anvil, n)).collect();
    assert_ne!(new[0], old[0], "anvil mined the same block again");

    let status = run.wait_exit(RUN_TIMEOUT);
    run.assert_exit_code(status, 0);
    run.assert_no_duplicates();
    let orphaned: BTreeSet<(u64, Option<String>)> = run
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Orphaned {
                block, block_hash, ..
            } => Some((*block, block_hash.clone())),
            _ => None,
        })
        .collect();
    let expected: BTreeSet<_> = [
        (first, Some(old[0].clone())),
        (first + 1, Some(old[1].clone())),
    ]
    .into();
    if orphaned != expected {
        run.fail(&format!("orphaned {orphaned:?}, expected {expected:?}"));
    }
    let proved_after: BTreeSet<(u64, Option<String>)> =
        proofs(&run.events)[2..].iter().cloned().collect();
    let replaced: BTreeSet<_> = (0..3)
        .map(|i| (first + i, Some(new[i as usize].clone())))
        .collect();
    if proved_after != replaced {
        run.fail(&format!(
            "after the reorg proved {proved_after:?}, expected {replaced:?}"
        ));
    }
    if !run.stderr().contains("reorg") {
        run.fail("the reorg was not logged");
    }
}

#[test]
fn backlog_newest_proves_the_newest_block_first_and_reports_the_stale_ones_skipped() {
    let anvil = quiet_anvil();
    // Five blocks older than --max-age (2s) when the run starts, then three
    // fresh ones.
    let (first, last) = anvil.mine_stale_then_fresh(5, 2, 3);

    let mut run = RunBuilder::new("backlog-newest", &anvil.url())
        .args([
            "--follow",
            "latest",
            "--backlog",
            "newest",
            "--max-age",
            "2s",
        ])
        .args(["--from", &first.to_string(), "--to", &last.to_string()])
        .env("MOCK_PROVE_TIME_MS", "20")
        .spawn();
    let status = run.wait_exit(RUN_TIMEOUT);
    run.assert_exit_code(status, 0);
    run.assert_no_duplicates();

    let proved: Vec<u64> = proofs(&run.events).iter().map(|(b, _)| *b).collect();
    if proved != [last, last - 1, last - 2] {
        run.fail(&format!(
            "proved {proved:?}, expected the three fresh blocks, newest first"
        ));
    }
    let skipped = events::skipped(&run.events);
    if skipped != (first..first + 5).collect() {
        run.fail(&format!(
            "skipped {skipped:?}, expected the five stale blocks"
        ));
    }
    let reason_names_max_age = run
        .events
        .iter()
        .any(|e| matches!(e, Event::Skipped { reason, .. } if reason.contains("--max-age")));
    if !reason_names_max_age {
        run.fail("a skipped block's reason does not name --max-age");
    }
}

//! `--backlog newest` across roles: the block watcher announces the newest
//! block first, and a prover host skips, and reports, blocks older than
//! `--max-age` by the block time that travels beside each announcement.
//! Real nats-server, real anvil (interval mining off, so the test makes
//! every block), every role its own process.

mod nats_support;
mod support;

use std::time::Duration;

use nats_support::checks::completed_proofs;
use nats_support::layout::{block_watcher, mock_prover, proof_matcher};
use nats_support::{Cluster, LINGER};

const NEWEST: [(&str, &str); 3] = [
    ("ORCHESTRATOR_FOLLOW", "latest"),
    ("ORCHESTRATOR_BACKLOG", "newest"),
    ("ORCHESTRATOR_MAX_AGE", "2s"),
];

#[test]
fn the_watcher_role_announces_newest_first_and_prover_roles_skip_stale_blocks() {
    let cluster = Cluster::start("roles-newest");
    let anvil = &cluster.anvil;
    anvil.stop_interval_mining();
    cluster.init();
    // Five blocks older than --max-age (2s), then three fresh ones.
    let (first, last) = anvil.mine_stale_then_fresh(5, 2, 3);

    // Every block is in the stream, in the watcher's order, before a prover
    // takes any: the order the prover sees is the watcher's alone.
    let watcher = block_watcher(first)
        .env([("ORCHESTRATOR_TO_BLOCK", last.to_string())])
        .env(NEWEST);
    let (_watcher, status) = cluster.run_to_exit(&watcher, Duration::from_secs(60));
    assert!(status.success(), "the watcher exited with {status}");
    let _matcher = cluster.spawn(&proof_matcher());
    let prover = cluster.spawn(&mock_prover("prover").env(NEWEST));

    let mut completed = cluster.tap("completed_proofs");
    let mut events = cluster.tap("job_events");
    let skipped = |records: &[nats_support::tap::Record]| -> Vec<u64> {
        let mut blocks: Vec<u64> = records
            .iter()
            .map(|r| r.json())
            .filter(|e| e["status"] == "skipped")
            .filter_map(|e| e["block"].as_u64())
            .collect();
        blocks.sort();
        blocks
    };
    cluster.check(completed.wait_until(
        Duration::from_secs(60),
        "three completed proofs",
        |records| records.len() >= 3,
    ));
    cluster.check(events.wait_until(
        Duration::from_secs(60),
        "five skipped job events",
        |records| skipped(records).len() >= 5,
    ));
    cluster.check(completed.read_for(LINGER));
    cluster.check(events.read_for(LINGER));

    let proved: Vec<u64> = cluster
        .check(completed_proofs(&completed.records))
        .iter()
        .map(|p| p.block)
        .collect();
    let mut fresh = proved.clone();
    fresh.sort();
    if fresh != [last - 2, last - 1, last] {
        cluster.fail(&format!(
            "completed {proved:?}, expected the three fresh blocks"
        ));
    }
    let started: Vec<u64> = prover
        .jobs_done()
        .iter()
        .filter_map(|job| job.strip_prefix("block-")?.split('-').next()?.parse().ok())
        .collect();
    if started != [last, last - 1, last - 2] {
        cluster.fail(&format!(
            "the prover proved {started:?}, expected newest first"
        ));
    }
    let skipped = skipped(&events.records);
    if skipped != (first..first + 5).collect::<Vec<_>>() {
        cluster.fail(&format!(
            "skipped {skipped:?}, expected the five stale blocks"
        ));
    }
}

//! Role mode survives crashes of its stateful roles: the block watcher and
//! the proof matcher are killed with SIGKILL mid-run (no chance to save or
//! acknowledge anything) and started again with the same environment. The
//! watcher resumes after the last block it published, the matcher from its
//! key-value state, so over the whole window no block is missing or doubled.

mod nats_support;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use nats_support::checks::{self, announced_blocks, each_block_exactly, window};
use nats_support::layout::{block_watcher, mock_prover, proof_matcher};
use nats_support::{BACKLOG, Cluster, FLOW_TIMEOUT};

/// How long a killed role stays down: blocks keep finalizing meanwhile.
const DOWNTIME: Duration = Duration::from_secs(2);

#[test]
fn killed_watcher_and_matcher_resume_without_gaps_or_doubles() {
    let cluster = Cluster::start("roles-restart");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 30);
    let _prover = cluster.spawn(&mock_prover("prover"));
    let mut matcher = cluster.spawn(&proof_matcher());
    let mut watcher = cluster.spawn(&block_watcher(first));
    let _miner = cluster.miner();
    let mut completed = cluster.tap("completed_proofs");
    let mut blocks = cluster.tap("blocks");

    // Crash each role once some of the window is done, the other one running.
    for (role, done_before) in [(&mut watcher, 8), (&mut matcher, 16)] {
        let part = first..first + done_before;
        let what = format!(
            "completed proofs for {part:?} before killing {}",
            role.label()
        );
        cluster.check(completed.wait_until(FLOW_TIMEOUT, &what, |records| {
            checks::fully_proved(records, &part, 1)
        }));
        role.kill_hard();
        std::thread::sleep(DOWNTIME);
        role.restart();
    }

    // A watcher starting again at NEXT_BLOCK would republish blocks that the
    // stream's 2-minute duplicate window hides here, so check it resumed.
    if !watcher
        .stderr()
        .contains("resuming after the last block published")
    {
        cluster.fail("the restarted block watcher did not resume from the stream");
    }

    let proofs = cluster.await_completed(&mut completed, &window, 1);
    let proved = proofs.iter().map(|p| p.block);
    cluster.check(each_block_exactly("completed_proofs", &window, proved, 1));
    let announced_window = |records: &[nats_support::tap::Record]| {
        let announced = records.iter().filter_map(|r| r.json().as_u64());
        let distinct: BTreeSet<u64> = announced.filter(|b| window.contains(b)).collect();
        distinct.len() == window.clone().count()
    };
    cluster.check(blocks.wait_until(FLOW_TIMEOUT, "blocks of the window", announced_window));
    let announced = cluster.check(announced_blocks(&blocks.records));
    cluster.check(each_block_exactly("blocks", &window, announced, 1));
}

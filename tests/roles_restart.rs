//! Role mode survives crashes of its stateful roles: the block watcher and
//! the proof matcher are killed with SIGKILL mid-run (no chance to save or
//! acknowledge anything) and started again with the same environment. The
//! watcher resumes after the last block it published, the matcher from its
//! key-value state, so over the whole window no block is missing or doubled:
//! neither in the stream, nor in what the matcher sent (the stream's 2-minute
//! duplicate window would hide a matcher that completed blocks again).

mod nats_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nats_support::checks::{self, announced_blocks, each_block_exactly, window};
use nats_support::layout::{block_watcher, mock_prover, proof_matcher};
use nats_support::wire::Wire;
use nats_support::{BACKLOG, Cluster, FLOW_TIMEOUT};

/// How long a killed role stays down: blocks keep finalizing meanwhile.
const DOWNTIME: Duration = Duration::from_secs(2);

#[test]
fn killed_watcher_and_matcher_resume_without_gaps_or_doubles() {
    let cluster = Cluster::start("roles-restart");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 30);
    // Every completed proof the matchers send, also those the stream drops.
    let mut sent = cluster.check(Wire::open(&cluster.nats.url(), "completed_proofs"));
    let _prover = cluster.spawn(&mock_prover("prover"));
    let mut matcher = cluster.spawn(&proof_matcher());
    let mut watcher = cluster.spawn(&block_watcher(first));
    let _miner = cluster.miner();
    let mut completed = cluster.tap("completed_proofs");
    let mut blocks = cluster.tap("blocks");

    // Crash each role once some of the window is done, the other one running.
    let mut sent_before_matcher_kill = 0;
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
        // Down: all that was received so far was sent before the kill.
        cluster.check(sent.wait_until(FLOW_TIMEOUT, "nothing", |_| true));
        sent_before_matcher_kill = sent.ids.len();
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

    // What the matchers sent, counted by id. The one message a matcher is
    // handling when it is killed may have been sent and not yet saved, and
    // is sent again when redelivered (the id makes that harmless): at most
    // one completed proof, one sent before the kill, may be sent twice. A
    // restarted matcher that lost its state sends a block again for each
    // block it is given again.
    let all_sent = |ids: &[Option<String>]| {
        let ids: BTreeSet<&str> = ids.iter().flatten().map(String::as_str).collect();
        proofs
            .iter()
            .all(|p| ids.contains(format!("completed-{}-{}", p.block, p.prover).as_str()))
    };
    cluster.check(sent.wait_until(FLOW_TIMEOUT, "every completed proof", all_sent));
    let mut times_sent: BTreeMap<&str, usize> = BTreeMap::new();
    for id in sent.ids.iter().flatten() {
        *times_sent.entry(id.as_str()).or_default() += 1;
    }
    let sent_again: Vec<(&str, usize)> = times_sent
        .iter()
        .filter(|&(_, &times)| times > 1)
        .map(|(&id, &times)| (id, times))
        .collect();
    let before_kill: BTreeSet<&str> = sent.ids[..sent_before_matcher_kill]
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let harmless = match sent_again[..] {
        [] => true,
        [(id, 2)] => before_kill.contains(id),
        _ => false,
    };
    if !harmless {
        cluster.fail(&format!(
            "completed proofs sent more than once (id, times): {sent_again:?}"
        ));
    }
    let announced_window = |records: &[nats_support::tap::Record]| {
        let announced = records.iter().filter_map(|r| r.json().as_u64());
        let distinct: BTreeSet<u64> = announced.filter(|b| window.contains(b)).collect();
        distinct.len() == window.clone().count()
    };
    cluster.check(blocks.wait_until(FLOW_TIMEOUT, "blocks of the window", announced_window));
    let announced = cluster.check(announced_blocks(&blocks.records));
    cluster.check(each_block_exactly("blocks", &window, announced, 1));
}

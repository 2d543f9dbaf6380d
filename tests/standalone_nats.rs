//! `orchestrator run --nats URL`: the standalone pipeline with NATS JetStream
//! at its edges instead of in-process queues. A range run exits by itself,
//! prints each block once, and the stream holds every block, proof and
//! completed proof exactly once. An open-ended run on the same stream then
//! resumes after the last block announced.

mod nats_support;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use nats_support::{Tap, checks};
use support::events::sampled;
use support::{Anvil, RUN_TIMEOUT, RunBuilder};

#[test]
fn range_run_with_nats_edges() {
    let (from, to) = (6, 20);
    let anvil = Anvil::start();
    anvil.finalize_up_to(to);
    let nats = nats_support::NatsServer::start();
    let mut run = RunBuilder::new("standalone-nats", &anvil.url())
        .args(["--nats", &nats.url(), "--workers", "2"])
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .spawn();
    let status = run.wait_exit(RUN_TIMEOUT);
    run.assert_exit_code(status, 0);
    run.assert_outcome(&sampled(from, to, 1), "mock-prover", &BTreeSet::new());

    let window = from..to + 1;
    let read = |queue: &str| {
        let mut tap = Tap::open(&nats.url(), queue, Duration::from_secs(10)).expect("open tap");
        tap.read_for(Duration::from_secs(1)).expect("read tap");
        tap.records
    };
    let blocks = checks::announced_blocks(&read("blocks")).expect("blocks");
    checks::each_block_exactly("blocks", &window, blocks, 1).unwrap();
    let completed = checks::completed_proofs(&read("completed_proofs")).expect("completed proofs");
    checks::each_block_exactly(
        "completed_proofs",
        &window,
        completed.iter().map(|c| c.block),
        1,
    )
    .unwrap();
    assert_eq!(
        read("block_proofs").len(),
        window.count(),
        "one block proof per block"
    );

    // Open-ended, no --from: it picks up after the last announced block.
    let mut next = RunBuilder::new("standalone-nats-resume", &anvil.url())
        .args(["--nats", &nats.url()])
        .spawn();
    let resumed = support::eventually(RUN_TIMEOUT, || {
        next.stderr().contains(&format!(
            "resuming after the last block published last={to}"
        ))
    });
    if !resumed {
        next.fail("the open-ended run did not resume after the range");
    }
    let status = next.stop();
    next.assert_exit_code(status, 0);
}

/// `NATS_URL` exported in the shell (as for the roles) is not `--nats`:
/// `run` warns that it ignores it and proves its range on in-process queues.
/// Here it points at a port nothing listens on, so a run that used it would
/// never get to a proof.
#[test]
fn nats_url_in_the_environment_does_not_make_run_use_nats() {
    let (from, to) = (1, 4);
    let closed = format!("nats://127.0.0.1:{}", support::node::free_port());
    let (run, status) = support::run_range("run-ignores-nats-url", from, to, |run| {
        run.env("NATS_URL", &closed)
    });
    run.assert_exit_code(status, 0);
    run.assert_outcome(&sampled(from, to, 1), "mock-prover", &BTreeSet::new());
    let stderr = run.stderr();
    let warned = stderr
        .lines()
        .filter(|line| {
            line.contains("NATS_URL is set in the environment but `orchestrator run` ignores it")
        })
        .count();
    if warned != 1 {
        run.fail(&format!(
            "expected one warning that NATS_URL is ignored, got {warned}"
        ));
    }
    if stderr.contains("nats=true") {
        run.fail("the run started with NATS at its edges");
    }
}

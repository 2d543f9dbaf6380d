//! Containers end to end: the image, the template's compose setups and the
//! Makefile targets, on a real Docker engine, against an anvil node on the
//! Docker host. Each setup is started with its `make start-*` target, proves
//! a window of blocks while one prover container is killed with SIGKILL,
//! and is stopped with `make stop-services`; the checks read what reached
//! `completed_proofs` on the setup's NATS (published on the host) and the
//! prover containers' logs.
//!
//! Needs a Docker engine: `scripts/containers/engine.sh` installs and starts
//! one where it can (root, Debian); where it cannot, each test prints one
//! `containers: skipped: ...` line and passes. Ignored by a plain
//! `cargo test`; `make test` runs it (`make container-test`).

mod container_support;
mod nats_support;
mod support;

use std::collections::BTreeSet;
use std::ops::Range;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use container_support::{Deployment, HostAnvil, WAIT, blocks_done_by, check, engine};
use nats_support::checks::{
    completed_proofs, each_block_exactly, fully_proved, job_block, step_groups, window,
};
use nats_support::{LINGER, Tap};

/// Whether the engine is there; when it is not, the first test to ask
/// prints the one skip line for all of them.
fn engine_or_skip() -> bool {
    static SAID: AtomicBool = AtomicBool::new(false);
    match engine() {
        Ok(()) => true,
        Err(reason) => {
            if !SAID.swap(true, Ordering::Relaxed) {
                println!("containers: skipped, {reason}");
            }
            false
        }
    }
}

/// Reads `queue` of the deployment's NATS from the first message.
fn tap(deployment: &Deployment, queue: &str) -> Tap {
    Tap::open(&deployment.nats_url, queue, WAIT).unwrap_or_else(|e| deployment.fail(&e))
}

/// Waits until every block of `window` has completed proofs from `provers`
/// provers, reads a little longer, then checks that each block was
/// completed exactly once per prover in `names`.
fn await_window(deployment: &Deployment, completed: &mut Tap, window: &Range<u64>, names: &[&str]) {
    completed
        .wait_until(WAIT, "the window's completed proofs", |records| {
            fully_proved(records, window, names.len())
        })
        .unwrap_or_else(|e| deployment.fail(&e));
    completed
        .read_for(LINGER)
        .unwrap_or_else(|e| deployment.fail(&e));
    let proofs = completed_proofs(&completed.records).unwrap_or_else(|e| deployment.fail(&e));
    for name in names {
        let blocks = proofs.iter().filter(|p| p.prover == *name).map(|p| p.block);
        each_block_exactly(&format!("completed proofs of {name}"), window, blocks, 1)
            .unwrap_or_else(|e| deployment.fail(&e));
    }
    let others: BTreeSet<&str> = proofs
        .iter()
        .map(|p| p.prover.as_str())
        .filter(|p| !names.contains(p))
        .collect();
    if !others.is_empty() {
        deployment.fail(&format!(
            "completed proofs from unexpected provers {others:?}"
        ));
    }
}

/// `make config` validates the core file alone and with every setup file
/// in compose/.
#[test]
#[ignore = "needs a Docker engine; `make test` runs it"]
fn every_compose_file_validates() {
    if !engine_or_skip() {
        return;
    }
    let output = container_support::compose_config();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "make config failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in container_support::setup_files() {
        assert!(
            stdout.lines().any(|line| line == format!("{file}: valid")),
            "{file} was not validated by `make config`:\n{stdout}"
        );
    }
}

/// `make start-split-work`: two prover containers with one consumer name
/// prove every block of the window exactly once between them; one of them
/// is killed mid-job and its job is proved by the other; `make
/// stop-services` leaves nothing behind.
#[test]
#[ignore = "needs a Docker engine; `make test` runs it"]
fn split_work_proves_each_block_once_across_two_containers() {
    if !engine_or_skip() {
        return;
    }
    let anvil = HostAnvil::start();
    let window = window(3, 12);
    let mut deployment = Deployment::start("start-split-work", &anvil, Some(window.start), &[]);
    let provers = [
        ("mock-prover", deployment.container("mock-prover")),
        ("mock-prover-2", deployment.container("mock-prover-2")),
    ];
    let mut completed = tap(&deployment, "completed_proofs");
    completed
        .wait_until(WAIT, "three completed proofs", |records| records.len() >= 3)
        .unwrap_or_else(|e| deployment.fail(&e));
    let killed_job = deployment.kill_mid_job(&provers[1].1);

    await_window(&deployment, &mut completed, &window, &["mock-prover"]);

    // Split, not fanned out: each block's job finished in exactly one
    // container (the killed one may have finished its last job without
    // acking it), and both containers did some of the window.
    let killed_last = container_support::jobs_done(&deployment.logs(&provers[1].1)).pop();
    let done = blocks_done_by(&deployment, &provers);
    for block in window.clone() {
        let by = done.get(&block).cloned().unwrap_or_default();
        let redone = by.len() == 2 && killed_last.as_deref() == Some(&format!("block-{block}"));
        if by.len() != 1 && !redone {
            deployment.fail(&format!(
                "block {block} proved by {by:?}, expected one container"
            ));
        }
    }
    for (name, _) in &provers {
        if !window.clone().any(|b| {
            done.get(&b)
                .is_some_and(|by| by.contains(&name.to_string()))
        }) {
            deployment.fail(&format!(
                "{name} proved no block of {window:?}: the work was not split"
            ));
        }
    }
    if let Some(block) = job_block(&killed_job).filter(|b| window.contains(b)) {
        let by = done.get(&block).cloned().unwrap_or_default();
        if !by.iter().any(|name| name == "mock-prover") {
            deployment.fail(&format!(
                "{killed_job}, killed mid-job, was not proved by mock-prover: {by:?}"
            ));
        }
    }
    println!(
        "containers: split work: {window:?} proved once; {killed_job} killed mid-job and proved by the other container"
    );
    deployment.stop();
}

/// `make start-multistep-mock-proving`: partitioner, three step provers (one
/// killed mid-job), step collector and aggregator complete each block of
/// the window exactly once, from exactly one group of 10 step proofs.
#[test]
#[ignore = "needs a Docker engine; `make test` runs it"]
fn multistep_completes_each_block_once_with_a_step_prover_killed() {
    if !engine_or_skip() {
        return;
    }
    let anvil = HostAnvil::start();
    let window = window(3, 6);
    let mut deployment = Deployment::start(
        "start-multistep-mock-proving",
        &anvil,
        Some(window.start),
        &[],
    );
    for service in [
        "mock-block-partitioner",
        "mock-step-prover-1",
        "mock-step-prover-2",
        "mock-step-prover-3",
        "mock-step-collector",
        "mock-prover",
    ] {
        deployment.container(service);
    }
    let mut completed = tap(&deployment, "completed_proofs");
    completed
        .wait_until(WAIT, "a completed proof", |records| !records.is_empty())
        .unwrap_or_else(|e| deployment.fail(&e));
    let step_prover = deployment.container("mock-step-prover-2");
    let killed_job = deployment.kill_mid_job(&step_prover);

    await_window(
        &deployment,
        &mut completed,
        &window,
        &["mock-multistep-prover"],
    );
    let mut groups = tap(&deployment, "collected_step_proofs");
    groups
        .read_for(LINGER)
        .unwrap_or_else(|e| deployment.fail(&e));
    let groups = step_groups(&groups.records, 10).unwrap_or_else(|e| deployment.fail(&e));
    each_block_exactly("collected step groups", &window, groups, 1)
        .unwrap_or_else(|e| deployment.fail(&e));
    println!("containers: multistep: {window:?} proved once; step job {killed_job} killed mid-run");
    deployment.stop();
}

/// `make start-services` with NEXT_BLOCK unset: the block collector starts
/// at the chain's finalized head; SP1, RISC Zero and ZisK stand-ins each
/// prove every block (fan-out); the ZisK container killed mid-job and
/// started again (as its supervisor would) loses none of its blocks.
#[test]
#[ignore = "needs a Docker engine; `make test` runs it"]
fn multi_prover_starts_at_the_head_and_fans_out() {
    if !engine_or_skip() {
        return;
    }
    let anvil = HostAnvil::start();
    anvil.mine(30);
    let head_before = anvil.finalized();
    let mut deployment = Deployment::start("start-services", &anvil, None, &[]);
    let mut blocks = tap(&deployment, "blocks");
    blocks
        .wait_until(WAIT, "the first announced block", |records| {
            !records.is_empty()
        })
        .unwrap_or_else(|e| deployment.fail(&e));
    let first = blocks.records[0].json().as_u64().unwrap_or(0);
    let head_after = anvil.finalized();
    if !(head_before..=head_after).contains(&first) {
        deployment.fail(&format!(
            "NEXT_BLOCK unset: first block {first}, expected the finalized head at start ({head_before}..={head_after})"
        ));
    }
    let window = window(first, 4);
    let zisk = deployment.container("zisk-prover");
    let mut completed = tap(&deployment, "completed_proofs");
    completed
        .wait_until(WAIT, "a completed proof", |records| !records.is_empty())
        .unwrap_or_else(|e| deployment.fail(&e));
    let killed_job = deployment.kill_mid_job(&zisk);
    check(Command::new("docker").args(["start", &zisk]));

    await_window(
        &deployment,
        &mut completed,
        &window,
        &["sp1", "risc0", "zisk"],
    );
    println!(
        "containers: multi-prover: started at the head ({first}), {window:?} proved once by each of 3 provers; zisk killed during {killed_job} and restarted"
    );
    deployment.stop();
}

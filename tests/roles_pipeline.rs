//! Role mode end to end: every role its own process of the real binary, glued
//! by a real nats-server, blocks from a real anvil. One test per layout of
//! the original template's compose files: provers splitting the work, provers
//! fanning out (one proof per zkVM), and multistep proving (partition, prove
//! steps, collect, aggregate). Each checks that every block of a window is
//! completed exactly as often as it should be.

mod nats_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nats_support::checks::{each_block_exactly, job_block, step_groups, window};
use nats_support::layout::{self, block_watcher, mock_prover, proof_matcher, template_service};
use nats_support::{BACKLOG, Cluster, LINGER, RoleProcess, mock_bin};
use support::eventually;

/// The `job done` lines of `provers` for blocks of `window`, once every
/// block of the window has one (a log line may trail the proof it logs).
fn blocks_proved_by(
    cluster: &Cluster,
    provers: &[RoleProcess],
    window: &std::ops::Range<u64>,
) -> Vec<Vec<u64>> {
    let per_prover = || -> Vec<Vec<u64>> {
        provers
            .iter()
            .map(|p| {
                let blocks = p.jobs_done().into_iter().filter_map(|job| job_block(&job));
                blocks.filter(|b| window.contains(b)).collect()
            })
            .collect()
    };
    let all_logged = || {
        let logged: BTreeSet<u64> = per_prover().into_iter().flatten().collect();
        logged.len() == window.clone().count()
    };
    if !eventually(Duration::from_secs(10), all_logged) {
        cluster.fail(&format!(
            "the provers' `job done ... job=block-N` lines do not cover {window:?}: {:?}",
            per_prover()
        ));
    }
    per_prover()
}

#[test]
fn provers_with_one_consumer_name_split_the_blocks() {
    let cluster = Cluster::start("roles-split");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 30);
    let provers: Vec<RoleProcess> = ["prover-1", "prover-2"]
        .iter()
        .map(|label| cluster.spawn(&mock_prover(label).env([("CONSUMER_NAME", "mock-prover")])))
        .collect();
    let _matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&block_watcher(first));
    let _miner = cluster.miner();
    let mut completed = cluster.tap("completed_proofs");

    cluster.await_completed_once(&mut completed, &window);
    let per_prover = blocks_proved_by(&cluster, &provers, &window);
    let all = per_prover.iter().flatten().copied();
    cluster.check(each_block_exactly(
        "job done lines of both provers",
        &window,
        all,
        1,
    ));
    for (prover, blocks) in provers.iter().zip(&per_prover) {
        if blocks.is_empty() {
            cluster.fail(&format!(
                "{} proved no block of {window:?}: the work was not split",
                prover.label()
            ));
        }
    }
}

#[test]
fn provers_with_distinct_consumer_names_each_prove_every_block() {
    let cluster = Cluster::start("roles-fanout");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 10);
    let zkvms = ["sp1", "risc0", "zisk"];
    let _provers: Vec<RoleProcess> = zkvms
        .iter()
        .map(|zkvm| {
            let consumer = format!("{zkvm}-prover");
            let role = mock_prover(&consumer).env([
                ("CONSUMER_NAME", consumer.as_str()),
                ("MOCK_PROVER_NAME", zkvm),
            ]);
            // The template also spells queues with the stream prefix: accept both.
            let role = if *zkvm == "zisk" {
                role.env([
                    ("INPUT_QUEUE", "modularorchestrator.blocks"),
                    ("OUTPUT_QUEUE", "modularorchestrator.block_proofs"),
                ])
            } else {
                role
            };
            cluster.spawn(&role)
        })
        .collect();
    let _matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&block_watcher(first));
    let _miner = cluster.miner();
    let mut completed = cluster.tap("completed_proofs");

    let proofs = cluster.await_completed(&mut completed, &window, zkvms.len());
    for zkvm in zkvms {
        let blocks = proofs.iter().filter(|p| p.prover == zkvm).map(|p| p.block);
        cluster.check(each_block_exactly(
            &format!("completed proofs by {zkvm}"),
            &window,
            blocks,
            1,
        ));
    }
    let strangers: Vec<_> = proofs
        .iter()
        .filter(|p| window.contains(&p.block) && !zkvms.contains(&p.prover.as_str()))
        .collect();
    if !strangers.is_empty() {
        cluster.fail(&format!(
            "completed proofs by unknown provers: {strangers:?}"
        ));
    }
}

#[test]
fn multistep_template_layout_completes_each_block_once() {
    let cluster = Cluster::start("roles-multistep");
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 5);
    let multistep = mock_bin("mock-multistep-prover");
    let mocks = [("BINARY", multistep.as_str()), ("MOCK_PROVE_TIME_MS", "50")];
    let service = |label: &str, command: &str, env: &[(&str, &str)], extra: &[(&str, &str)]| {
        let role = template_service(label, command, env).env(extra.iter().copied());
        cluster.spawn(&role)
    };
    let step_provers: Vec<RoleProcess> = (1..=3)
        .map(|i| {
            let label = format!("step-prover-{i}");
            service(&label, "dispatcher", layout::STEP_PROVER, &mocks)
        })
        .collect();
    let next_block = first.to_string();
    // MOCK_STEPS makes the aggregating mock reject a group of the wrong size.
    let aggregator_mocks = [mocks[0], mocks[1], ("MOCK_STEPS", "10")];
    let _roles = [
        service("partitioner", "dispatcher", layout::PARTITIONER, &mocks),
        service("step-collector", "collector", layout::STEP_COLLECTOR, &[]),
        service(
            "aggregator",
            "dispatcher",
            layout::AGGREGATOR,
            &aggregator_mocks,
        ),
        service("proof-collector", "collector", layout::PROOF_COLLECTOR, &[]),
        service(
            "block-collector",
            "collector",
            layout::BLOCK_COLLECTOR,
            &[("NEXT_BLOCK", &next_block)],
        ),
    ];
    let mut completed = cluster.tap("completed_proofs");
    let mut collected = cluster.tap("collected_step_proofs");

    cluster.await_completed_once(&mut completed, &window);

    cluster.check(collected.read_for(LINGER));
    let groups = cluster.check(step_groups(&collected.records, 10));
    cluster.check(each_block_exactly(
        "collected_step_proofs groups",
        &window,
        groups,
        1,
    ));

    // Unnamed step provers on one queue share a consumer: no step proved twice.
    let mut done: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for prover in &step_provers {
        for job in prover.jobs_done() {
            done.entry(job).or_default().push(prover.label());
        }
    }
    let twice: Vec<_> = done.iter().filter(|(_, by)| by.len() > 1).collect();
    if !twice.is_empty() {
        cluster.fail(&format!("steps proved more than once: {twice:?}"));
    }
}

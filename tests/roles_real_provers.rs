//! Role mode with provers that behave like real zkVM provers, not like the
//! template's silent one-second mocks: they log on both pipes for seconds and
//! write proofs of megabytes.
//! Every role is a process of the real binary, glued by a real nats-server,
//! blocks from a real anvil; the bundled mock does the rest through its knobs
//! (`MOCK_LOG_INTERVAL_MS`, `MOCK_PROOF_BYTES`, `MOCK_STEPS`). A shell
//! wrapper (`tests/provers/keep-output.sh`) keeps a copy of each output, so
//! `orchestrator proof get` can be checked byte for byte against it.
//! Long jobs, GPUs and helpers: `roles_real_provers_jobs.rs`; NATS outages
//! and SIGTERM: `roles_real_provers_faults.rs`.

mod nats_support;
mod support;

use std::ops::Range;
use std::path::{Path, PathBuf};

use nats_support::checks::{each_block_exactly, step_groups, window};
use nats_support::layout::{self, mock_prover, proof_matcher, template_service, window_watcher};
use nats_support::role::log_field;
use nats_support::{BACKLOG, Cluster, LINGER, Role, RoleProcess, mock_bin};
use support::prover_script;

#[test]
fn a_prover_logging_for_seconds_proves_each_block_once_and_its_lines_reach_the_log() {
    let cluster = Cluster::start("real-chatty");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 2);
    let prover = cluster.spawn(&mock_prover("prover").env([
        ("ORCHESTRATOR_WORKERS", "2"),
        ("MOCK_PROVE_TIME_MS", "6000"),
        ("MOCK_LOG_INTERVAL_MS", "300"),
    ]));
    let _matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&window_watcher(&window));

    cluster.await_completed_once(&mut cluster.tap("completed_proofs"), &window);
    let lines = prover.log_lines();
    for block in window.clone() {
        let job = format!("block-{block}");
        for (pipe, text) in [
            ("stdout", format!("progress: block {block} ")),
            ("stderr", format!("stderr progress: block {block} ")),
        ] {
            let tagged = |line: &&String| {
                log_field(line, "job") == Some(job.as_str())
                    && log_field(line, "pipe") == Some(pipe)
            };
            let count = lines
                .iter()
                .filter(|line| line.contains(&text))
                .filter(tagged)
                .count();
            // 6 s at one line per 300 ms: most of 20 lines, whatever the load.
            if count < 10 {
                cluster.fail(&format!(
                    "only {count} lines `{text}…` tagged job={job} pipe={pipe} in the prover's log"
                ));
            }
        }
    }
    // Each progress line is tagged with the job it belongs to, not another.
    let mistagged: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("progress: block "))
        .filter(|line| {
            let said = line.split("progress: block ").nth(1);
            let said = said.and_then(|rest| rest.split_whitespace().next());
            log_field(line, "job") != said.map(|b| format!("block-{b}")).as_deref()
        })
        .collect();
    if !mistagged.is_empty() {
        cluster.fail(&format!(
            "progress lines tagged with the wrong job: {:?}",
            &mistagged[..mistagged.len().min(5)]
        ));
    }
}

/// `keep-output.sh` around the mock `wrapped`, keeping each output in `kept`.
fn kept_outputs(role: Role, wrapped: &str, kept: &Path) -> Role {
    let script = prover_script("keep-output.sh");
    role.env([
        ("BINARY", script.display().to_string()),
        ("WRAPPED_BINARY", mock_bin(wrapped)),
        ("KEEP_DIR", kept.display().to_string()),
    ])
}

/// A fresh directory for the outputs `keep-output.sh` keeps.
fn kept_dir(cluster: &Cluster) -> PathBuf {
    let kept = cluster.dir().join("kept");
    std::fs::create_dir_all(&kept).expect("create the kept-outputs dir");
    kept
}

/// Checks that `proof get --block N` prints exactly the output the prover
/// wrote for block N (kept by `keep-output.sh`), for every block of `window`,
/// and that each is `bytes` long at least.
fn proof_get_returns_what_was_written(
    cluster: &Cluster,
    window: &Range<u64>,
    kept: &Path,
    bytes: usize,
) {
    for block in window.clone() {
        let path = kept.join(format!("{block}.json"));
        let written = std::fs::read(&path)
            .unwrap_or_else(|e| cluster.fail(&format!("{}: {e}", path.display())));
        if written.len() < bytes {
            cluster.fail(&format!(
                "the prover wrote {} bytes for block {block}, expected over {bytes}: is the proof size knob ignored?",
                written.len()
            ));
        }
        let got = cluster.proof_get(block, None);
        if got != written {
            let at = got.iter().zip(&written).position(|(a, b)| a != b);
            cluster.fail(&format!(
                "proof get --block {block} printed {} bytes, the prover wrote {}; first difference at byte {:?}",
                got.len(),
                written.len(),
                at.unwrap_or(got.len().min(written.len()))
            ));
        }
    }
}

#[test]
fn a_three_megabyte_proof_is_completed_once_and_read_back_byte_for_byte() {
    const BYTES: usize = 3_000_000;
    let cluster = Cluster::start("real-big-proof");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 2);
    let kept = kept_dir(&cluster);
    let prover = Role::new("prover", "prover").env([("MOCK_PROOF_BYTES", BYTES.to_string())]);
    let _prover = cluster.spawn(&kept_outputs(prover, "mock-prover", &kept));
    let _matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&window_watcher(&window));

    cluster.await_completed_once(&mut cluster.tap("completed_proofs"), &window);
    proof_get_returns_what_was_written(&cluster, &window, &kept, BYTES);
    // Over NATS's 1 MiB max_payload: it can only have travelled as an object.
    let mut block_proofs = cluster.tap("block_proofs");
    cluster.check(block_proofs.read_for(LINGER));
    let inline: Vec<String> = block_proofs
        .records
        .iter()
        .filter(|r| r.object.is_none())
        .map(|r| format!("{:?} ({} bytes)", r.msg_id, r.payload.len()))
        .collect();
    if !inline.is_empty() || block_proofs.records.len() != window.clone().count() {
        cluster.fail(&format!(
            "expected {} block proofs, all through the object store; inline: {inline:?}, total {}",
            window.clone().count(),
            block_proofs.records.len()
        ));
    }
}

#[test]
fn a_multistep_group_over_a_megabyte_is_collected_and_its_aggregate_read_back() {
    const STEP_BYTES: usize = 150_000;
    let cluster = Cluster::start("real-big-multistep");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    let window = window(first, 2);
    let kept = kept_dir(&cluster);
    let multistep = mock_bin("mock-multistep-prover");
    let bytes = STEP_BYTES.to_string();
    let mocks = [
        ("BINARY", multistep.as_str()),
        ("MOCK_PROVE_TIME_MS", "50"),
        ("MOCK_STEPS", "10"),
        ("MOCK_PROOF_BYTES", bytes.as_str()),
    ];
    let service = |label: &str, command: &str, env: &[(&str, &str)], extra: &[(&str, &str)]| {
        template_service(label, command, env).env(extra.iter().copied())
    };
    let aggregator = service("aggregator", "dispatcher", layout::AGGREGATOR, &mocks);
    let last = (window.end - 1).to_string();
    let watcher = [
        ("NEXT_BLOCK", first.to_string()),
        ("ORCHESTRATOR_TO_BLOCK", last),
    ];
    let _roles: Vec<RoleProcess> = [
        service("partitioner", "dispatcher", layout::PARTITIONER, &mocks),
        service("step-prover", "dispatcher", layout::STEP_PROVER, &mocks)
            .env([("ORCHESTRATOR_WORKERS", "2")]),
        service("step-collector", "collector", layout::STEP_COLLECTOR, &[]),
        kept_outputs(aggregator, "mock-multistep-prover", &kept),
        service("proof-collector", "collector", layout::PROOF_COLLECTOR, &[]),
        service("block-collector", "collector", layout::BLOCK_COLLECTOR, &[]).env(watcher),
    ]
    .iter()
    .map(|role| cluster.spawn(role))
    .collect();

    cluster.await_completed_once(&mut cluster.tap("completed_proofs"), &window);
    let mut collected = cluster.tap("collected_step_proofs");
    cluster.check(collected.read_for(LINGER));
    let groups = cluster.check(step_groups(&collected.records, 10));
    cluster.check(each_block_exactly(
        "collected_step_proofs groups",
        &window,
        groups,
        1,
    ));
    for record in &collected.records {
        if record.payload.len() <= 1 << 20 || record.object.is_none() {
            cluster.fail(&format!(
                "a collected group of {} bytes (object {:?}): expected over 1 MiB, through the object store",
                record.payload.len(),
                record.object
            ));
        }
    }
    proof_get_returns_what_was_written(&cluster, &window, &kept, STEP_BYTES);
}

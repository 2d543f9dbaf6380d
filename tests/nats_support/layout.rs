//! The roles the tests start, in two spellings: our own role names
//! (`block-watcher`, `prover`, `proof-matcher`), and the original template's
//! services exactly as its compose files configure them (the commands
//! `collector`/`dispatcher`, the shared `.env` and each service's
//! environment block). Only what is host-specific differs: `NATS_URL` and
//! `L1_RPC` point at the test's servers, `NEXT_BLOCK` at the test's chain,
//! `BINARY` at the mocks built next to the orchestrator, and each process
//! gets its own `METRICS_PORT` (see [`super::role`]).

use super::{Role, mock_bin};

/// `block-watcher` from `next_block`, publishing to `blocks`.
pub fn block_watcher(next_block: u64) -> Role {
    Role::new("block-watcher", "block-watcher").env([("NEXT_BLOCK", next_block.to_string())])
}

/// `block-watcher` announcing exactly the blocks of `window` (which must be
/// final already), then exiting: no later block competes for the provers.
pub fn window_watcher(window: &std::ops::Range<u64>) -> Role {
    let last = window.end - 1;
    block_watcher(window.start).env([("ORCHESTRATOR_TO_BLOCK", last.to_string())])
}

/// `proof-matcher` on `block_proofs` and `blocks`, publishing `completed_proofs`.
pub fn proof_matcher() -> Role {
    Role::new("proof-matcher", "proof-matcher").env([
        ("INPUT_QUEUE", "block_proofs,blocks"),
        ("OUTPUT_QUEUE", "completed_proofs"),
    ])
}

/// `prover` running `mock-prover` on `blocks`, publishing `block_proofs`.
pub fn mock_prover(label: &str) -> Role {
    Role::new(label, "prover").env([("BINARY", mock_bin("mock-prover"))])
}

/// The template's shared `.env`, without `NATS_URL` and `L1_RPC`.
pub const TEMPLATE_SHARED_ENV: &[(&str, &str)] = &[
    ("MESSAGE_BUS_TYPE", "NatsBasic"),
    ("STORAGE_TYPE", "Nats"),
    ("INPUT_STREAM", "modularorchestrator"),
    ("OUTPUT_STREAM", "modularorchestrator"),
    ("METRICS_PORT", "8888"),
];

/// `block-collector` (plus `NEXT_BLOCK`).
pub const BLOCK_COLLECTOR: &[(&str, &str)] = &[
    ("STRATEGY", "Block"),
    ("INPUT_QUEUE", "unused"),
    ("OUTPUT_QUEUE", "blocks"),
    ("NUM_INPUTS", "1"),
    ("SINGLE_OUTPUT", "true"),
    ("COLLECT_TIMEOUT_PERIOD_MILLIS", "500"),
];

/// `proof-collector`.
pub const PROOF_COLLECTOR: &[(&str, &str)] = &[
    ("STRATEGY", "Proof"),
    ("INPUT_QUEUE", "block_proofs,blocks"),
    ("OUTPUT_QUEUE", "completed_proofs"),
    ("NUM_INPUTS", "1"),
    ("SINGLE_OUTPUT", "true"),
    ("COLLECT_TIMEOUT_PERIOD_MILLIS", "500"),
];

/// `mock-prover` (single; plus `BINARY`).
pub const BLOCK_PROVER: &[(&str, &str)] = &[
    ("INPUT_QUEUE", "blocks"),
    ("OUTPUT_QUEUE", "block_proofs"),
    ("EXECUTOR_TYPE", "JsonExecutor"),
];

/// `mock-block-partitioner` (plus `BINARY`).
pub const PARTITIONER: &[(&str, &str)] = &[
    ("INPUT_QUEUE", "blocks"),
    ("OUTPUT_QUEUE", "steps"),
    ("MULTIPLE_OUTPUT", "1"),
];

/// `mock-step-prover-1..3` (plus `BINARY`).
pub const STEP_PROVER: &[(&str, &str)] =
    &[("INPUT_QUEUE", "steps"), ("OUTPUT_QUEUE", "step_proofs")];

/// `mock-step-collector`.
pub const STEP_COLLECTOR: &[(&str, &str)] = &[
    ("STRATEGY", "Match"),
    ("INPUT_QUEUE", "step_proofs"),
    ("OUTPUT_QUEUE", "collected_step_proofs"),
    ("NUM_INPUTS", "10"),
    ("SINGLE_OUTPUT", "false"),
];

/// `mock-prover` as the aggregator (plus `BINARY`).
pub const AGGREGATOR: &[(&str, &str)] = &[
    ("INPUT_QUEUE", "collected_step_proofs"),
    ("OUTPUT_QUEUE", "block_proofs"),
];

/// A template service: `command` with the shared `.env`, then `env`.
pub fn template_service(label: &str, command: &str, env: &[(&str, &str)]) -> Role {
    Role::new(label, command)
        .env(TEMPLATE_SHARED_ENV.iter().copied())
        .env(env.iter().copied())
}

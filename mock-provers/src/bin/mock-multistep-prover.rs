//! Mock of a multistep prover, one binary for all three steps, told apart by
//! the input's shape: a block number is partitioned into step tasks, a step
//! task is proven, an array of step proofs is aggregated into a block proof.
//! Settings: `--name`/`MOCK_PROVER_NAME` (default `mock-multistep-prover`),
//! `--prove-time-ms`/`MOCK_PROVE_TIME_MS` (default 0),
//! `--failure-rate`/`MOCK_FAILURE_RATE` (default 0),
//! `--steps` or `--expect-steps`/`MOCK_STEPS` (partition size, default 10;
//! when set, aggregation also requires exactly that many step proofs).
//! Realism (all off by default, shared with the other mock):
//! `--log-interval-ms`/`MOCK_LOG_INTERVAL_MS` (progress lines on stdout and
//! stderr every interval while proving; 0 = none),
//! `--proof-bytes`/`MOCK_PROOF_BYTES` (length of each step proof's and the
//! aggregate's proof string, `0x` included; default and minimum 18),
//! `--helpers`/`MOCK_HELPERS` (helper child processes started while proving,
//! 0 to 64, killed when proving ends but left running if the prover is killed;
//! each exits by itself after 10 minutes).

use std::collections::HashSet;
use std::process::ExitCode;

use mock_provers::{BlockProof, Knobs, Spec};
use prover_sdk::{BoxError, Prover};
use serde::{Deserialize, Serialize};

const SPEC: Spec = Spec {
    default_name: "mock-multistep-prover",
    default_prove_time_ms: 0,
    accepts_steps: true,
};
const DEFAULT_STEPS: usize = 10;

// Variant order matters for untagged enums: arrays must reach `Aggregate`
// before `Step`, because serde also accepts a struct written as an array.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "expected a block number (partition), a step task {\"block\",\"step_id\",\"payload\"} (prove a step) or an array of step proofs (aggregate)"
)]
enum Input {
    Block(u64),
    Aggregate(Vec<StepProof>),
    Step(StepTask),
}

#[derive(Serialize)]
#[serde(untagged)]
enum Output {
    Partition(Vec<StepTask>),
    Step(StepProof),
    Block(BlockProof),
}

/// One element of a partition, and the input of the "prove a step" step.
#[derive(Serialize, Deserialize)]
struct StepTask {
    block: u64,
    step_id: String,
    // Opaque to the orchestrator, so accept whatever a real partitioner might emit.
    payload: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct StepProof {
    data: BlockProof,
    task_id: String,
    group_id: u64,
}

struct MultistepProver(Knobs);

impl Prover for MultistepProver {
    type Input = Input;
    type Output = Output;

    fn prove(&mut self, input: Input) -> Result<Output, BoxError> {
        let name = &self.0.name;
        Ok(match input {
            Input::Block(block) => {
                self.0.simulate_work(block)?;
                let steps = self.0.steps.unwrap_or(DEFAULT_STEPS);
                Output::Partition(
                    (0..steps)
                        .map(|i| StepTask {
                            block,
                            step_id: format!("example_step_{i}"),
                            payload: format!("tx_{i}_data").into(),
                        })
                        .collect(),
                )
            }
            Input::Step(task) => {
                self.0.simulate_work(task.block)?;
                let proof = self.0.proof(&[
                    &task.block.to_le_bytes(),
                    task.step_id.as_bytes(),
                    name.as_bytes(),
                ]);
                Output::Step(StepProof {
                    data: BlockProof {
                        block: task.block,
                        proof,
                        prover: name.clone(),
                    },
                    task_id: task.step_id,
                    group_id: task.block,
                })
            }
            Input::Aggregate(proofs) => {
                let block = check_group(&proofs, self.0.steps)?;
                self.0.simulate_work(block)?;
                Output::Block(self.0.block_proof(block))
            }
        })
    }
}

/// The block the step proofs belong to, if they make a complete group: the
/// errors are exactly the orchestrator bugs this mock is meant to expose.
fn check_group(proofs: &[StepProof], expected_steps: Option<usize>) -> Result<u64, BoxError> {
    let first = proofs
        .first()
        .ok_or("cannot aggregate an empty array of step proofs")?;
    if let Some(odd) = proofs.iter().find(|p| p.group_id != first.group_id) {
        return Err(format!(
            "step proofs from different groups: '{}' has group_id {} but '{}' has group_id {}",
            first.task_id, first.group_id, odd.task_id, odd.group_id
        )
        .into());
    }
    if let Some(expected) = expected_steps
        && proofs.len() != expected
    {
        return Err(format!(
            "expected {expected} step proofs (set by --steps/--expect-steps/MOCK_STEPS) for group {}, got {}",
            first.group_id,
            proofs.len()
        )
        .into());
    }
    let mut seen = HashSet::new();
    if let Some(dup) = proofs.iter().find(|p| !seen.insert(&p.task_id)) {
        return Err(format!(
            "step proof '{}' appears more than once in group {}",
            dup.task_id, first.group_id
        )
        .into());
    }
    Ok(first.group_id)
}

fn main() -> ExitCode {
    mock_provers::main_with(&SPEC, MultistepProver)
}

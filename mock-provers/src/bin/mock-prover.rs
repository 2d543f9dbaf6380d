//! Mock of a single-step prover: proves a block given as a bare JSON number.
//! Settings: `--name`/`MOCK_PROVER_NAME` (default `mock-prover`),
//! `--prove-time-ms`/`MOCK_PROVE_TIME_MS` (default 1000),
//! `--failure-rate`/`MOCK_FAILURE_RATE` (default 0); flags win over env.
//! Realism (all off by default, shared with the other mock):
//! `--log-interval-ms`/`MOCK_LOG_INTERVAL_MS` (progress lines on stdout and
//! stderr every interval while proving; 0 = none),
//! `--proof-bytes`/`MOCK_PROOF_BYTES` (length of each proof string, `0x`
//! included; default and minimum 18),
//! `--helpers`/`MOCK_HELPERS` (helper child processes started while proving,
//! 0 to 64, killed when proving ends but left running if the prover is killed;
//! each exits by itself after 10 minutes).

use std::process::ExitCode;

use mock_provers::{BlockProof, Knobs, Spec};
use prover_sdk::{BoxError, Prover};

const SPEC: Spec = Spec {
    default_name: "mock-prover",
    default_prove_time_ms: 1000,
    accepts_steps: false,
};

struct MockProver(Knobs);

impl Prover for MockProver {
    type Input = u64;
    type Output = BlockProof;

    fn prove(&mut self, block: u64) -> Result<BlockProof, BoxError> {
        self.0.simulate_work(block)?;
        Ok(self.0.block_proof(block))
    }
}

fn main() -> ExitCode {
    mock_provers::main_with(&SPEC, MockProver)
}

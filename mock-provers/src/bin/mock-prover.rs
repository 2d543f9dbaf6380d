//! Mock of a single-step prover: proves a block given as a bare JSON number.
//! Settings: `--name`/`MOCK_PROVER_NAME` (default `mock-prover`),
//! `--prove-time-ms`/`MOCK_PROVE_TIME_MS` (default 1000),
//! `--failure-rate`/`MOCK_FAILURE_RATE` (default 0); flags win over env.

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
        Ok(BlockProof::new(block, &self.0.name))
    }
}

fn main() -> ExitCode {
    mock_provers::main_with(&SPEC, MockProver)
}

//! What the mock prover binaries share: their settings ([`Knobs`]), the
//! simulated proving work, the block proof shape and the `main` plumbing, so
//! that `mock-prover` and `mock-multistep-prover` differ only in what they prove.

mod knobs;
mod work;

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use prover_sdk::{Args, BoxError, Prover};
use serde::{Deserialize, Serialize};

pub use knobs::{DEFAULT_PROOF_LEN, Knobs, MAX_HELPERS, Spec};

/// A proof of a whole block, the output of the "prove a block" and
/// "aggregate" steps: `{"block":N,"proof":"0x…","prover":NAME}`, in that
/// field order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockProof {
    /// The proven block number.
    pub block: u64,
    /// The (fake) proof bytes as `0x`-prefixed hex.
    pub proof: String,
    /// The name of the prover that produced it.
    pub prover: String,
}

impl BlockProof {
    /// The mock proof of `block` by `prover`: deterministic, so repeated runs
    /// and different steps agree on it.
    pub fn new(block: u64, prover: &str) -> BlockProof {
        BlockProof {
            block,
            proof: fake_proof(&[&block.to_le_bytes(), prover.as_bytes()]),
            prover: prover.to_owned(),
        }
    }
}

/// A short deterministic stand-in for proof bytes: `0x` and 16 hex digits
/// hashed from `parts`. Distinct inputs give distinct-looking proofs, which
/// makes mixed-up proofs visible when debugging the orchestrator.
pub fn fake_proof(parts: &[&[u8]]) -> String {
    fake_proof_of_len(parts, DEFAULT_PROOF_LEN)
}

/// [`fake_proof`] stretched to `len` characters, `0x` included (never shorter
/// than `0x`), to look as big as a real proof: the hex digits are a splitmix64
/// stream seeded from the hash of `parts`, so the default-length proof is a
/// prefix of every longer one, and megabytes take milliseconds.
pub fn fake_proof_of_len(parts: &[&[u8]], len: usize) -> String {
    // FNV-1a; each part is followed by a separator so ("ab","c") != ("a","bc").
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|part| part.iter().chain(&[0xff])) {
        state = (state ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = Vec::with_capacity(len.max(2));
    hex.extend_from_slice(b"0x");
    while hex.len() < len {
        // `mix` adds splitmix64's increment itself, so this is its next output.
        let word = mix(state);
        state = state.wrapping_add(SPLITMIX_GAMMA);
        let chunk: [u8; 16] =
            std::array::from_fn(|i| DIGITS[(word >> (60 - 4 * i)) as usize & 0xf]);
        hex.extend_from_slice(&chunk[..(len - hex.len()).min(16)]);
    }
    String::from_utf8(hex).expect("hex digits are ASCII")
}

/// Runs a mock prover binary: parses the command line and its settings
/// (bad settings exit 2), builds the prover from them and proves the input.
/// Run as `BINARY --mock-helper` (how [`Knobs::simulate_work`] starts its
/// helpers), it is a helper process instead; see `work::helper_main`.
pub fn main_with<P: Prover>(spec: &Spec, make: impl FnOnce(Knobs) -> P) -> ExitCode {
    // Before the SDK's parsing, which would reject the helper's argument.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == work::HELPER_ARG)
    {
        return work::helper_main();
    }
    prover_sdk::report(Args::from_env().and_then(|args| {
        let knobs = Knobs::from_args(spec, &args.extra)?;
        prover_sdk::prove_files(make(knobs), &args.input_path, &args.output_path)
    }))
}

impl Knobs {
    /// Pretends to prove: announces itself like the original template's mocks,
    /// starts the configured helper processes, sleeps for the configured prove
    /// time printing progress if asked, stops the helpers, then fails with the
    /// configured probability. `block` also decorrelates concurrent runs' rolls.
    pub fn simulate_work(&self, block: u64) -> Result<(), BoxError> {
        println!("Running prover.");
        let helpers = work::Helpers::start(self.helpers)?;
        work::sleep_with_progress(block, self.prove_time, self.log_interval)?;
        drop(helpers);
        if self.failure_rate > 0.0 && roll(block) < self.failure_rate {
            return Err(format!(
                "simulated failure of '{}' on block {block} (failure rate {}, set by --failure-rate or MOCK_FAILURE_RATE)",
                self.name, self.failure_rate
            )
            .into());
        }
        Ok(())
    }

    /// [`fake_proof_of_len`] with the configured proof length.
    pub fn proof(&self, parts: &[&[u8]]) -> String {
        fake_proof_of_len(parts, self.proof_len)
    }

    /// [`BlockProof::new`] by this prover, with the configured proof length.
    pub fn block_proof(&self, block: u64) -> BlockProof {
        BlockProof {
            block,
            proof: self.proof(&[&block.to_le_bytes(), self.name.as_bytes()]),
            prover: self.name.clone(),
        }
    }
}

/// A number in `[0, 1)` that differs between runs; no `rand` crate needed for
/// a mock. The pid and seed keep simultaneous runs from sharing a roll.
fn roll(seed: u64) -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    let bits = mix(nanos ^ (u64::from(std::process::id()) << 32) ^ mix(seed));
    // The top 53 bits fill an f64 mantissa exactly.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// splitmix64's increment (the golden ratio in 64 bits).
const SPLITMIX_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's step from `x` to its output: spreads every input bit over the
/// whole output.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(SPLITMIX_GAMMA);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_proof_is_deterministic_and_short_hex() {
        let proof = BlockProof::new(23839700, "mock-prover").proof;
        assert_eq!(proof, BlockProof::new(23839700, "mock-prover").proof);
        assert_ne!(proof, BlockProof::new(23839701, "mock-prover").proof);
        assert_ne!(proof, BlockProof::new(23839700, "other").proof);
        assert_eq!(proof.len(), 18);
        assert!(proof.starts_with("0x") && proof[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(fake_proof(&[b"ab", b"c"]), fake_proof(&[b"a", b"bc"]));
    }

    #[test]
    fn long_proofs_are_deterministic_hex_of_exact_length() {
        let short = BlockProof::new(7, "p").proof;
        for len in [18, 19, 33, 34, 1000, 4 << 20] {
            let proof = fake_proof_of_len(&[&7u64.to_le_bytes(), b"p"], len);
            assert_eq!(proof.len(), len);
            assert!(proof.starts_with(&short), "{}", &proof[..40.min(len)]);
            assert!(proof[2..].bytes().all(|b| b"0123456789abcdef".contains(&b)));
            assert_eq!(proof, fake_proof_of_len(&[&7u64.to_le_bytes(), b"p"], len));
        }
        let a = fake_proof_of_len(&[b"a"], 1000);
        let b = fake_proof_of_len(&[b"b"], 1000);
        assert_ne!(a[18..], b[18..]);
        // Not one hash repeated: the stream moves on after each 16 digits.
        assert_ne!(a[2..18], a[18..34]);
        assert_eq!(fake_proof_of_len(&[b"a"], 0), "0x");
    }

    #[test]
    fn rolls_spread_over_the_unit_interval() {
        // 1000 rolls in tenths of [0, 1): about 100 each (a standard
        // deviation of about 9.5), so fewer than 50 in any is no bad luck.
        let mut tenths = [0usize; 10];
        for seed in 0..1000 {
            let r = roll(seed);
            assert!((0.0..1.0).contains(&r), "{r}");
            tenths[(r * 10.0) as usize] += 1;
        }
        assert!(
            tenths.iter().all(|&n| n >= 50),
            "rolls by tenth: {tenths:?}"
        );
    }

    fn knobs(failure_rate: f64) -> Knobs {
        Knobs {
            name: "m".into(),
            prove_time: std::time::Duration::ZERO,
            failure_rate,
            steps: None,
            log_interval: std::time::Duration::ZERO,
            proof_len: DEFAULT_PROOF_LEN,
            helpers: 0,
        }
    }

    #[test]
    fn failure_rate_extremes_are_certain() {
        for seed in 0..100 {
            assert!(knobs(0.0).simulate_work(seed).is_ok());
            let err = knobs(1.0).simulate_work(seed).unwrap_err().to_string();
            assert!(err.contains("simulated failure"), "{err}");
        }
    }

    #[test]
    fn failure_rate_one_half_gives_both_outcomes() {
        let failed = (0..200)
            .filter(|&seed| knobs(0.5).simulate_work(seed).is_err())
            .count();
        // About 100 of 200 (a standard deviation of about 7).
        assert!((50..=150).contains(&failed), "{failed} of 200 runs failed");
    }
}

//! `orchestrator proof get`: prints one prover's output for one block, byte
//! for byte, wherever the NATS edge put it (inline, or in the object store).

use std::io::Write;

use anyhow::{Context, bail};
use orchestrator_actors::edges::nats::NatsBus;
use orchestrator_actors::edges::nats::{StoredProof, Topology};
use orchestrator_actors::messages::queues;

use crate::cli::ProofGet;
use crate::config::Settings;
use crate::wiring;

/// Finds the proof of `get.block` on the block-proof queue (or `INPUT_QUEUE`)
/// and writes it to stdout.
pub fn run(get: &ProofGet, s: &Settings) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let queue = s.input_queue.as_deref().unwrap_or(queues::BLOCK_PROOFS);
    let proofs = runtime.block_on(async {
        let options = wiring::nats_options(s, "proof-get")?;
        let bus = NatsBus::connect(&options, Topology::new(&s.input_stream))
            .await
            .context("is NATS_URL / --nats right and the server up?")?
            .with_payloads(wiring::payload_config(s));
        bus.block_proofs(queue, get.block)
            .await
            .with_context(|| format!("reading {queue} of stream {}", s.input_stream))
    })?;
    let proof = pick(proofs, get.block, get.prover.as_deref(), queue)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&proof)
        .and_then(|()| stdout.flush())
        .context("writing the proof to stdout")
}

/// The proof to print: the latest by `prover`, or the only prover's.
fn pick(
    proofs: Vec<StoredProof>,
    block: u64,
    prover: Option<&str>,
    queue: &str,
) -> anyhow::Result<Vec<u8>> {
    let mut provers: Vec<String> = proofs
        .iter()
        .map(|p| p.prover.clone().unwrap_or_else(|| "(unnamed)".into()))
        .collect();
    provers.sort();
    provers.dedup();
    let chosen: Vec<StoredProof> = match prover {
        Some(name) => proofs
            .into_iter()
            .filter(|p| p.prover.as_deref() == Some(name))
            .collect(),
        None if provers.len() > 1 => bail!(
            "block {block} was proved by {} provers ({}); pick one with --prover NAME",
            provers.len(),
            provers.join(", ")
        ),
        None => proofs,
    };
    match chosen.into_iter().last() {
        Some(proof) => Ok(proof.payload),
        None if provers.is_empty() => bail!(
            "no proof of block {block} on queue {queue}: not proved yet, or older than the stream keeps"
        ),
        None => bail!(
            "no proof of block {block} by {} on queue {queue}; it was proved by {}",
            prover.unwrap_or_default(),
            provers.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof(prover: &str, payload: &str) -> StoredProof {
        StoredProof {
            prover: Some(prover.into()),
            payload: payload.into(),
        }
    }

    #[test]
    fn one_prover_needs_no_name_and_several_need_one() {
        let one = vec![proof("sp1", "a")];
        assert_eq!(pick(one, 5, None, "block_proofs").unwrap(), b"a");
        let two = vec![proof("sp1", "a"), proof("zisk", "b"), proof("sp1", "c")];
        let err = pick(two.clone(), 5, None, "block_proofs")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sp1, zisk") && err.contains("--prover"),
            "{err}"
        );
        assert_eq!(
            pick(two.clone(), 5, Some("sp1"), "block_proofs").unwrap(),
            b"c"
        );
        let err = pick(two, 5, Some("risc0"), "block_proofs")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("by risc0") && err.contains("sp1, zisk"),
            "{err}"
        );
        let err = pick(vec![], 5, None, "block_proofs")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no proof of block 5"), "{err}");
    }
}

//! What the role tests check on the queues: the shape of each message, and
//! that every block of a window shows up exactly once (per prover).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::tap::Record;

/// One message of `completed_proofs`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedProof {
    /// The proved block.
    pub block: u64,
    /// Who proved it.
    pub prover: String,
}

/// Parses `{"block":N,"prover":"..","proof":..,"latency_ms":..}` with
/// `Nats-Msg-Id: completed-N-PROVER`, followed by `-` and the first 16 hex
/// digits of `block_hash` when the proof has one; an error names the first
/// bad message.
pub fn completed_proofs(records: &[Record]) -> Result<Vec<CompletedProof>, String> {
    records
        .iter()
        .map(|record| {
            let value = record.json();
            let block = value["block"].as_u64();
            let prover = value["prover"].as_str();
            let well_formed = value.get("proof").is_some() && value["latency_ms"].is_u64();
            let (Some(block), Some(prover), true) = (block, prover, well_formed) else {
                return Err(format!(
                    "completed proof without block, prover, proof or latency_ms: {}",
                    record.text()
                ));
            };
            let mut expected_id = format!("completed-{block}-{prover}");
            if let Some(hash) = value["block_hash"].as_str() {
                let hex = hash.trim_start_matches("0x");
                expected_id = format!("{expected_id}-{}", &hex[..hex.len().min(16)]);
            }
            if record.msg_id.as_deref() != Some(expected_id.as_str()) {
                return Err(format!(
                    "completed proof {} has Nats-Msg-Id {:?}, expected {expected_id:?}",
                    record.text(),
                    record.msg_id
                ));
            }
            Ok(CompletedProof {
                block,
                prover: prover.to_owned(),
            })
        })
        .collect()
}

/// Parses the `blocks` queue: bare numbers with `Nats-Msg-Id: block-N`.
pub fn announced_blocks(records: &[Record]) -> Result<Vec<u64>, String> {
    records
        .iter()
        .map(|record| {
            let block = record.json().as_u64().ok_or_else(|| {
                format!("blocks message is not a bare number: {:?}", record.text())
            })?;
            let expected_id = format!("block-{block}");
            if record.msg_id.as_deref() != Some(expected_id.as_str()) {
                return Err(format!(
                    "block {block} has Nats-Msg-Id {:?}, expected {expected_id:?}",
                    record.msg_id
                ));
            }
            Ok(block)
        })
        .collect()
}

/// Whether every block of `window` has completed proofs from at least
/// `provers` distinct provers; unparsable messages count as none (the final
/// check reports them).
pub fn fully_proved(records: &[Record], window: &Range<u64>, provers: usize) -> bool {
    let mut by_block: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for value in records.iter().map(Record::json) {
        if let (Some(block), Some(prover)) = (value["block"].as_u64(), value["prover"].as_str()) {
            by_block.entry(block).or_default().insert(prover.to_owned());
        }
    }
    window
        .clone()
        .all(|block| by_block.get(&block).is_some_and(|p| p.len() >= provers))
}

/// Checks that each block of `window` occurs exactly `times` in `blocks`
/// (blocks outside the window are ignored); `what` names the source.
pub fn each_block_exactly(
    what: &str,
    window: &Range<u64>,
    blocks: impl IntoIterator<Item = u64>,
    times: usize,
) -> Result<(), String> {
    let mut counts: BTreeMap<u64, usize> = window.clone().map(|block| (block, 0)).collect();
    for block in blocks {
        if let Some(count) = counts.get_mut(&block) {
            *count += 1;
        }
    }
    let wrong: Vec<String> = counts
        .iter()
        .filter(|&(_, &count)| count != times)
        .map(|(block, count)| format!("{block}×{count}"))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected each block of {window:?} exactly {times}×, got {}",
            wrong.join(", ")
        ))
    }
}

/// Parses `collected_step_proofs`: each message must be an array of
/// `num_inputs` step proofs with distinct `task_id`s and one `group_id`;
/// returns the group ids, in order.
pub fn step_groups(records: &[Record], num_inputs: usize) -> Result<Vec<u64>, String> {
    records
        .iter()
        .map(|record| {
            let value = record.json();
            let steps = value.as_array().map(Vec::as_slice).unwrap_or_default();
            let group_ids: BTreeSet<_> = steps.iter().map(|s| s["group_id"].as_u64()).collect();
            let task_ids: BTreeSet<_> = steps.iter().filter_map(|s| s["task_id"].as_str()).collect();
            match group_ids.into_iter().collect::<Vec<_>>()[..] {
                [Some(group)] if steps.len() == num_inputs && task_ids.len() == num_inputs => {
                    Ok(group)
                }
                _ => Err(format!(
                    "collected_step_proofs message is not {num_inputs} distinct step proofs of one group: {}",
                    record.text()
                )),
            }
        })
        .collect()
}

/// The block of a job id `block-N`, if it is one.
pub fn job_block(job: &str) -> Option<u64> {
    job.strip_prefix("block-")?.parse().ok()
}

/// `count` blocks from `first`.
pub fn window(first: u64, count: u64) -> Range<u64> {
    first..first + count
}

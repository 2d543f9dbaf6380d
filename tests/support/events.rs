//! The orchestrator's `--json` stdout events, and the properties the tests
//! check on a stream of them: which blocks were proved or failed, duplicates,
//! and whether the proved blocks form an unbroken run.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// One stdout line of `orchestrator run --json`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `{"event":"proved","block":N,"prover":"..","proof":"..","latency_ms":..}`,
    /// with `"block_hash"` when the watcher knew it.
    Proved {
        block: u64,
        prover: String,
        proof: String,
        block_hash: Option<String>,
    },
    /// `{"event":"orphaned","block":N,"prover":"..","block_hash":".."}`: a
    /// proof of a block that a reorg replaced.
    Orphaned {
        block: u64,
        prover: String,
        block_hash: Option<String>,
    },
    /// `{"event":"skipped","block":N,"reason":".."}` (`--backlog newest`).
    Skipped { block: u64, reason: String },
    /// `{"event":"failed","block":N,"queue":"..","error":".."}`
    Failed {
        block: u64,
        queue: String,
        error: String,
    },
}

impl Event {
    /// Parses one line; `None` if it is not a well-formed event.
    pub fn parse(line: &str) -> Option<Event> {
        let value: Value = serde_json::from_str(line).ok()?;
        let block = value["block"].as_u64()?;
        let text = |key: &str| value[key].as_str().map(str::to_owned);
        match value["event"].as_str()? {
            "proved" => {
                value["latency_ms"].as_u64()?;
                Some(Event::Proved {
                    block,
                    prover: text("prover")?,
                    proof: text("proof")?,
                    block_hash: text("block_hash"),
                })
            }
            "orphaned" => Some(Event::Orphaned {
                block,
                prover: text("prover")?,
                block_hash: text("block_hash"),
            }),
            "skipped" => Some(Event::Skipped {
                block,
                reason: text("reason")?,
            }),
            "failed" => Some(Event::Failed {
                block,
                queue: text("queue")?,
                error: text("error")?,
            }),
            _ => None,
        }
    }

    /// The block this event is about.
    pub fn block(&self) -> u64 {
        match self {
            Event::Proved { block, .. }
            | Event::Failed { block, .. }
            | Event::Orphaned { block, .. }
            | Event::Skipped { block, .. } => *block,
        }
    }
}

/// The blocks of all `proved` events, as a set.
pub fn proved(events: &[Event]) -> BTreeSet<u64> {
    events
        .iter()
        .filter(|e| matches!(e, Event::Proved { .. }))
        .map(Event::block)
        .collect()
}

/// The blocks of all `skipped` events, as a set.
pub fn skipped(events: &[Event]) -> BTreeSet<u64> {
    events
        .iter()
        .filter(|e| matches!(e, Event::Skipped { .. }))
        .map(Event::block)
        .collect()
}

/// The blocks of all `failed` events, as a set.
pub fn failed(events: &[Event]) -> BTreeSet<u64> {
    events
        .iter()
        .filter(|e| matches!(e, Event::Failed { .. }))
        .map(Event::block)
        .collect()
}

/// Blocks reported more than once (proved, failed or skipped, in any
/// combination). A block a reorg replaced may be proved again under its
/// new hash, once its first proof was reported orphaned.
pub fn duplicates(events: &[Event]) -> Vec<u64> {
    let mut counts = BTreeMap::<u64, usize>::new();
    for event in events {
        let count = counts.entry(event.block()).or_default();
        match event {
            Event::Orphaned { .. } => *count = count.saturating_sub(1),
            _ => *count += 1,
        }
    }
    counts
        .into_iter()
        .filter(|&(_, n)| n > 1)
        .map(|(block, _)| block)
        .collect()
}

/// `first, first+step, …` while `<= last`.
pub fn sampled(first: u64, last: u64, step: u64) -> BTreeSet<u64> {
    (first..=last).step_by(step as usize).collect()
}

/// Whether the proved blocks are exactly `first, first+step, …` with at
/// least `count` of them: an unbroken run from the start, no stray block.
pub fn proved_run_from(events: &[Event], first: u64, step: u64, count: usize) -> bool {
    let blocks = proved(events);
    blocks.len() >= count
        && blocks
            .iter()
            .enumerate()
            .all(|(i, &block)| block == first + i as u64 * step)
}

/// One compact line per event, for failure messages.
pub fn summary(events: &[Event]) -> String {
    let lines: Vec<String> = events
        .iter()
        .map(|event| match event {
            Event::Proved {
                block,
                prover,
                proof,
                block_hash,
            } => format!("proved {block} {block_hash:?} by {prover} ({proof})"),
            Event::Orphaned {
                block,
                prover,
                block_hash,
            } => format!("orphaned {block} {block_hash:?} by {prover}"),
            Event::Skipped { block, reason } => format!("skipped {block}: {reason}"),
            Event::Failed {
                block,
                queue,
                error,
            } => format!("failed {block} on {queue}: {error}"),
        })
        .collect();
    lines.join("\n")
}

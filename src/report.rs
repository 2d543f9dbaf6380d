//! Standalone mode's output: one line per completed proof or failed job on
//! stdout, and the end of a range run.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use orchestrator_actors::actors::Inbound;
use orchestrator_actors::messages::{
    CompletedProof, DeadLetter, JobEvent, JobStatus, block_of_payload, queues,
};
use orchestrator_actors::shutdown::Shutdown;
use serde_json::json;

/// The blocks a range run proves: `from..=to` with `block % every == 0`.
/// Three numbers, whatever the range's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    /// The first block of the range.
    first: u64,
    /// Distance between two blocks of the range.
    every: u64,
    /// Blocks in the range, at least 1.
    len: usize,
}

impl BlockRange {
    /// The blocks of `from..=to` with `block % every == 0` (`every` 0 counts
    /// as 1); `None` when there is none.
    pub fn new(from: u64, to: u64, every: u64) -> Option<Self> {
        let every = every.max(1);
        let first = from.checked_next_multiple_of(every)?;
        if first > to {
            return None;
        }
        let len = usize::try_from((to - first) / every).ok()?.checked_add(1)?;
        Some(Self { first, every, len })
    }

    /// Blocks in the range.
    pub fn blocks(&self) -> usize {
        self.len
    }

    /// The position of `block` in the range, if it is one of its blocks.
    fn index(&self, block: u64) -> Option<usize> {
        let offset = block.checked_sub(self.first)?;
        if !offset.is_multiple_of(self.every) {
            return None;
        }
        usize::try_from(offset / self.every)
            .ok()
            .filter(|&i| i < self.len)
    }
}

/// The blocks of a range not settled yet: one bit per block (12 KiB for a
/// 100,000-block backfill, where a set of block numbers took over 1 MiB).
#[derive(Debug)]
struct Pending {
    range: BlockRange,
    /// Bit `i` set: the range's `i`th block is settled.
    settled: Vec<u64>,
    left: usize,
}

impl Pending {
    fn new(range: BlockRange) -> Self {
        Self {
            range,
            settled: vec![0; range.len.div_ceil(64)],
            left: range.len,
        }
    }

    /// Settles `block`: true if it is in the range and was not settled yet.
    fn remove(&mut self, block: u64) -> bool {
        let Some(i) = self.range.index(block) else {
            return false;
        };
        let (word, bit) = (&mut self.settled[i / 64], 1u64 << (i % 64));
        if *word & bit != 0 {
            return false;
        }
        *word |= bit;
        self.left -= 1;
        true
    }
}

/// How far a range run got, as of the last message the reporter took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Blocks in the range.
    pub total: usize,
    /// Blocks neither proved nor failed yet.
    pub left: usize,
    /// Blocks proved.
    pub proved: usize,
    /// Blocks failed.
    pub failed: usize,
}

/// A range run's [`Progress`], shared between the [`Reporter`] that updates
/// it and whoever stops the run early (the signal handler), which must not
/// exit 0 while blocks are left. `None` inside: not a range run.
#[derive(Debug, Clone, Default)]
pub struct RangeProgress(Arc<Mutex<Option<Progress>>>);

impl RangeProgress {
    /// Progress of a run over `range`: nothing settled yet.
    pub fn of(range: Option<&BlockRange>) -> Self {
        let progress = range.map(|range| Progress {
            total: range.blocks(),
            left: range.blocks(),
            proved: 0,
            failed: 0,
        });
        Self(Arc::new(Mutex::new(progress)))
    }

    /// The progress so far; `None` for a run without a range.
    pub fn get(&self) -> Option<Progress> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, progress: Progress) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(progress);
    }
}

/// Prints results and, for a range run, stops the system once every block of
/// the range is proved or failed (exit code 0 if all proved, else 1).
pub struct Reporter {
    json: bool,
    /// Blocks still to be settled, for a range run.
    pending: Option<Pending>,
    proved: usize,
    failed: BTreeSet<u64>,
    /// Blocks skipped as too old (`--backlog newest`): settled, not proved.
    skipped: BTreeSet<u64>,
    progress: RangeProgress,
    shutdown: Shutdown,
    /// How a range run shows its progress on stderr; `None` otherwise.
    shown: Option<Shown>,
}

/// A range run's progress on stderr: a bar on a terminal, else a log line
/// every [`PROGRESS_LINE_EVERY`], at each tenth of the range, and at the end.
enum Shown {
    Bar(indicatif::ProgressBar),
    Lines {
        started: Instant,
        /// Tenths of the range settled when the last line was written.
        tenths: usize,
    },
}

/// Time between two plain progress lines of a range run.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(10);

impl Shown {
    fn new(total: usize) -> Self {
        if !std::io::stderr().is_terminal() {
            return Shown::Lines {
                started: Instant::now(),
                tenths: 0,
            };
        }
        let bar = indicatif::ProgressBar::new(total as u64);
        let style = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} blocks, {per_sec}, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Shown::Bar(bar)
    }

    /// Shows `p`; a plain line only when `force`d, or when a new tenth of
    /// the range is settled.
    fn update(&mut self, p: Progress, force: bool) {
        let done = p.total - p.left;
        match self {
            Shown::Bar(bar) => {
                bar.set_position(done as u64);
                if p.failed > 0 {
                    bar.set_message(format!("({} failed)", p.failed));
                }
                if p.left == 0 {
                    bar.finish();
                }
            }
            Shown::Lines { started, tenths } => {
                let now_tenths = done * 10 / p.total.max(1);
                if !force && now_tenths == *tenths && p.left > 0 {
                    return;
                }
                *tenths = now_tenths;
                let seconds = started.elapsed().as_secs_f64();
                let rate = if seconds > 0.0 {
                    done as f64 / seconds
                } else {
                    0.0
                };
                let eta = if rate > 0.0 {
                    format!("{}s", (p.left as f64 / rate).ceil())
                } else {
                    "unknown".to_owned()
                };
                tracing::info!(
                    done,
                    total = p.total,
                    proved = p.proved,
                    failed = p.failed,
                    "range progress: {done}/{} blocks ({} proved, {} failed), {rate:.2} blocks/s, ETA {eta}",
                    p.total,
                    p.proved,
                    p.failed
                );
            }
        }
    }
}

impl Reporter {
    /// A reporter; `range` lists the blocks a range run waits for, and
    /// `progress` is kept up to date with how many are left, and the run
    /// ends through `shutdown`.
    pub fn new(
        json: bool,
        range: Option<BlockRange>,
        progress: RangeProgress,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            json,
            pending: range.map(Pending::new),
            proved: 0,
            failed: BTreeSet::new(),
            skipped: BTreeSet::new(),
            progress,
            shutdown,
            shown: None,
        }
    }

    /// Ends the run: code 0 when nothing failed, else 1.
    fn finish(&self, why: &str) {
        let code = if self.failed.is_empty() { 0 } else { 1 };
        self.shutdown.exit(code, why);
    }

    /// Writes one line to stdout. A closed stdout (`run | head`) ends the
    /// run cleanly instead of panicking.
    fn print(&self, line: std::fmt::Arguments<'_>) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if out
            .write_fmt(line)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .is_err()
        {
            tracing::warn!("stdout is closed; stopping");
            self.finish("stdout is closed");
        }
    }

    fn print_proof(&self, proof: &CompletedProof) {
        if self.json {
            let mut line = json!({"event": "proved", "block": proof.block, "prover": proof.prover, "proof": proof.proof, "latency_ms": proof.latency_ms});
            if let Some(hash) = &proof.block_hash {
                line["block_hash"] = json!(hash);
            }
            self.print(format_args!("{line}"));
        } else {
            let shown = proof
                .proof
                .as_str()
                .map_or_else(|| proof.proof.to_string(), str::to_owned);
            let hash = proof
                .block_hash
                .as_ref()
                .map_or_else(String::new, |h| format!(" hash={h}"));
            self.print(format_args!(
                "proved block={}{hash} prover={} latency_ms={} proof={}",
                proof.block, proof.prover, proof.latency_ms, shown
            ));
        }
    }

    /// A proof of a block that a reorg replaced (following `latest`).
    fn print_orphaned(&self, proof: &CompletedProof) {
        if self.json {
            let line = json!({"event": "orphaned", "block": proof.block, "prover": proof.prover, "block_hash": proof.block_hash});
            self.print(format_args!("{line}"));
        } else {
            self.print(format_args!(
                "orphaned block={} hash={} prover={} (a reorg replaced the block)",
                proof.block,
                proof.block_hash.as_deref().unwrap_or("?"),
                proof.prover
            ));
        }
    }

    /// A block not proved because it was too old (`--backlog newest`).
    fn print_skipped(&self, block: u64, reason: &str) {
        if self.json {
            let line = json!({"event": "skipped", "block": block, "reason": reason});
            self.print(format_args!("{line}"));
        } else {
            self.print(format_args!("skipped block={block} reason={reason}"));
        }
    }

    fn print_failure(&self, block: Option<u64>, letter: &DeadLetter) {
        if self.json {
            self.print(format_args!(
                "{}",
                json!({"event": "failed", "block": block, "queue": letter.queue, "error": letter.error})
            ));
        } else {
            let block = block.map_or_else(|| "?".to_owned(), |b| b.to_string());
            self.print(format_args!(
                "failed block={block} queue={} error={}",
                letter.queue,
                letter.error.replace('\n', " ")
            ));
        }
    }

    fn settle(&mut self, block: u64) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        if pending.remove(block)
            && let Some(mut progress) = self.progress.get()
        {
            progress.left = pending.left;
            if self.failed.contains(&block) {
                progress.failed += 1;
            } else if self.skipped.contains(&block) {
                // Settled, neither proved nor failed: `left` says it.
            } else {
                progress.proved += 1;
            }
            self.progress.set(progress);
            if let Some(shown) = &mut self.shown {
                shown.update(progress, false);
            }
        }
        if pending.left == 0 {
            tracing::info!(
                proved = self.proved,
                failed = self.failed.len(),
                "range done"
            );
            self.finish("range done");
        }
    }
}

impl Actor for Reporter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(progress) = self.progress.get() else {
            return;
        };
        let shown = Shown::new(progress.total);
        if matches!(shown, Shown::Lines { .. }) {
            ctx.run_interval(PROGRESS_LINE_EVERY, |reporter, _ctx| {
                if let (Some(shown), Some(p)) = (&mut reporter.shown, reporter.progress.get())
                    && p.left > 0
                {
                    shown.update(p, true);
                }
            });
        }
        self.shown = Some(shown);
    }
}

impl Handler<Inbound> for Reporter {
    type Result = ();

    fn handle(&mut self, Inbound(delivery): Inbound, ctx: &mut Self::Context) {
        self.take(&delivery);
        ctx.spawn(fut::wrap_future(async move {
            if let Err(error) = delivery.ack.ack().await {
                tracing::debug!(%error, "could not ack a reported message");
            }
        }));
    }
}

impl Reporter {
    fn take(&mut self, delivery: &orchestrator_actors::edges::Delivery) {
        if delivery.queue == queues::DEAD_LETTER {
            match serde_json::from_slice::<DeadLetter>(&delivery.payload) {
                // A report EthProofs refused is not a failed proof: the
                // EthProofs reporter logged it.
                Ok(letter)
                    if [queues::COMPLETED_PROOFS, queues::JOB_EVENTS]
                        .contains(&letter.queue.as_str()) => {}
                Ok(letter) => {
                    let block = block_of_payload(letter.payload.as_bytes());
                    self.print_failure(block, &letter);
                    if let Some(block) = block {
                        self.failed.insert(block);
                        self.settle(block);
                    }
                }
                Err(e) => tracing::error!(error = %e, "unreadable dead letter"),
            }
            return;
        }
        if delivery.queue == queues::JOB_EVENTS {
            match serde_json::from_slice::<JobEvent>(&delivery.payload) {
                Ok(event)
                    if event.status == JobStatus::Skipped && event.queue == queues::BLOCKS =>
                {
                    let Some(block) = event.block else { return };
                    self.print_skipped(block, event.error.as_deref().unwrap_or("skipped"));
                    if self.skipped.insert(block) {
                        self.settle(block);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "unreadable job event"),
            }
            return;
        }
        match serde_json::from_slice::<CompletedProof>(&delivery.payload) {
            Ok(proof) if proof.orphaned => self.print_orphaned(&proof),
            Ok(proof) => {
                self.print_proof(&proof);
                self.proved += 1;
                if !self.failed.contains(&proof.block) {
                    self.settle(proof.block);
                }
            }
            Err(e) => tracing::error!(error = %e, "unreadable completed proof"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_holds_its_sampled_blocks_only() {
        let range = BlockRange::new(5, 24, 5).unwrap();
        assert_eq!(range.blocks(), 4, "5, 10, 15, 20");
        let inside: Vec<u64> = (0..30).filter(|&b| range.index(b).is_some()).collect();
        assert_eq!(inside, [5, 10, 15, 20]);
        assert_eq!(BlockRange::new(6, 9, 5), None, "no multiple of 5 in 6..=9");
        assert_eq!(BlockRange::new(3, 3, 1).map(|r| r.blocks()), Some(1));
        assert_eq!(
            BlockRange::new(u64::MAX - 1, u64::MAX, 1000),
            None,
            "past u64"
        );
    }

    #[test]
    fn pending_settles_each_block_once() {
        let mut pending = Pending::new(BlockRange::new(100, 299, 1).unwrap());
        assert!(!pending.remove(99), "before the range");
        assert!(!pending.remove(300), "after the range");
        assert!(pending.remove(163));
        assert!(!pending.remove(163), "settled twice");
        for block in 100..300 {
            pending.remove(block);
        }
        assert_eq!(pending.left, 0);
        assert_eq!(pending.settled.len(), 4, "200 blocks in four words");
    }
}

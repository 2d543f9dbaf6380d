//! What the dashboard knows: the most recent blocks, each prover's job on
//! each of them, and the rules that turn that grid into per-prover numbers
//! (success rate, real-time share, liveness). Plain data, fed by
//! [`super::Dashboard`] and tested without a bus or a clock.

use std::collections::{BTreeMap, VecDeque};

use orchestrator_actors::messages::{
    CompletedProof, DeadLetter, JobEvent, JobStatus, block_of_payload, queues,
};
use serde::Serialize;

/// Blocks kept by default: about 40 minutes of mainnet blocks, enough to
/// judge liveness over its 20-minute window, and a few hundred rows of
/// memory whatever the run's length.
pub const DEFAULT_BLOCKS: usize = 200;
/// EthProofs' real-time mark: a block proved in under this is real time.
pub const REAL_TIME_MS: u64 = 10_000;
/// EthProofs' liveness window: a block not proved within this long after it
/// was seen counts against its prover ("paralyzed").
pub const LIVENESS_WINDOW_MS: u64 = 20 * 60 * 1000;
/// Dead letters listed: the newest ones, to say why things fail.
const DEAD_LETTERS_KEPT: usize = 20;

/// One prover's job on one block, as its latest event left it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// Where the job is.
    pub status: JobStatus,
    /// Which delivery of the job this is, from 1.
    pub attempt: u32,
    /// True once the job was dead-lettered: no retry follows.
    pub gave_up: bool,
    /// Milliseconds the binary ran, once proved.
    pub proving_ms: Option<u64>,
    /// Bytes of proof, once proved.
    pub output_bytes: Option<u64>,
    /// When the proof was published (ms since the epoch), once proved.
    pub proved_at_ms: Option<u64>,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

impl Cell {
    /// Events arrive in any order (they are published in the background):
    /// a later attempt wins, and within an attempt a later stage does.
    fn rank(&self) -> (u32, u8) {
        (self.attempt, stage(self.status))
    }
}

fn stage(status: JobStatus) -> u8 {
    match status {
        JobStatus::Queued => 0,
        JobStatus::Proving => 1,
        JobStatus::Proved | JobStatus::Failed | JobStatus::Skipped => 2,
    }
}

/// One block's row of the grid.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    /// When the block was first seen (announced, or first taken by a
    /// prover), in ms since the epoch: liveness counts from here.
    pub seen_ms: Option<u64>,
    /// Prover (pool) name → its job on this block.
    pub cells: BTreeMap<String, Cell>,
    /// Prover name → milliseconds from announcement to match, for every
    /// proof the matcher completed for this block.
    pub completed: BTreeMap<String, u64>,
}

/// A dead letter as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// The consumer that gave up.
    pub consumer: String,
    /// The queue the job came from.
    pub queue: String,
    /// The block, when the payload names one.
    pub block: Option<u64>,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last one failed.
    pub error: String,
}

/// A prover's numbers over the blocks kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProverStats {
    /// The prover's pool (consumer) name.
    pub name: String,
    /// Blocks proved.
    pub proved: usize,
    /// Blocks given up on (dead-lettered).
    pub failed: usize,
    /// Jobs queued or proving now.
    pub running: usize,
    /// proved / (proved + failed); `None` before anything settled.
    pub success_rate: Option<f64>,
    /// Share of proved blocks whose proving took under [`REAL_TIME_MS`].
    pub under_10s: Option<f64>,
    /// Blocks proved within [`LIVENESS_WINDOW_MS`] of being seen.
    pub on_time: usize,
    /// Blocks past that window without a proof in it ("paralyzed").
    pub missed: usize,
    /// on_time / (on_time + missed); blocks still inside their window are
    /// not judged yet.
    pub liveness: Option<f64>,
}

/// Everything the page shows, as served at `/api/dashboard`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// The server's clock when this was taken (ms since the epoch).
    pub now_ms: u64,
    /// How many blocks the dashboard keeps.
    pub capacity: usize,
    /// Prover columns, in name order, with their numbers.
    pub provers: Vec<ProverStats>,
    /// Rows, newest block first.
    pub blocks: Vec<BlockView>,
    /// The newest dead letters, newest first.
    pub dead_letters: Vec<Failure>,
}

/// A row of [`Snapshot::blocks`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockView {
    /// The block number.
    pub block: u64,
    /// Its row.
    #[serde(flatten)]
    pub row: Row,
}

/// The dashboard's state: a bounded window of recent blocks.
#[derive(Debug, Clone)]
pub struct Board {
    capacity: usize,
    rows: BTreeMap<u64, Row>,
    /// Prover name → when its first event was seen: a prover is expected to
    /// prove the blocks seen since it started, not those before.
    joined_ms: BTreeMap<String, u64>,
    dead_letters: VecDeque<Failure>,
}

impl Default for Board {
    fn default() -> Self {
        Self::new(DEFAULT_BLOCKS)
    }
}

impl Board {
    /// A board keeping the `capacity` most recent blocks (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            rows: BTreeMap::new(),
            joined_ms: BTreeMap::new(),
            dead_letters: VecDeque::new(),
        }
    }

    /// The row of `block`, created if it is recent enough to keep; `None`
    /// for a block older than every kept one when the board is full (it
    /// would be dropped again at once, and evict a newer one).
    fn row(&mut self, block: u64) -> Option<&mut Row> {
        if !self.rows.contains_key(&block) {
            if self.rows.len() >= self.capacity {
                let oldest = *self.rows.keys().next().expect("a full board has rows");
                if block < oldest {
                    return None;
                }
                self.rows.remove(&oldest);
                self.forget_idle_provers();
            }
            self.rows.insert(block, Row::default());
        }
        self.rows.get_mut(&block)
    }

    /// Drops provers with no job left on the board, so columns (and the
    /// map) stay bounded when provers come and go.
    fn forget_idle_provers(&mut self) {
        let rows = &self.rows;
        self.joined_ms
            .retain(|name, _| rows.values().any(|row| row.cells.contains_key(name)));
    }

    /// A block announced on `blocks`, seen at `now_ms`.
    pub fn block_seen(&mut self, block: u64, now_ms: u64) {
        if let Some(row) = self.row(block) {
            seen_at(row, now_ms);
        }
    }

    /// A prover's job event. Only block jobs (from `blocks`) have a cell:
    /// step jobs of multistep proving are not a block's proof.
    pub fn job_event(&mut self, event: &JobEvent) {
        if event.queue != queues::BLOCKS {
            return;
        }
        let Some(block) = event.block else { return };
        let Some(row) = self.row(block) else { return };
        // A job taken is a block seen, even if its announcement was missed.
        seen_at(row, event.at_ms);
        let next = Cell {
            status: event.status,
            attempt: event.attempt,
            gave_up: false,
            proving_ms: event.proving_ms,
            output_bytes: event.output_bytes,
            proved_at_ms: (event.status == JobStatus::Proved).then_some(event.at_ms),
            error: event.error.clone(),
        };
        match row.cells.get_mut(&event.pool) {
            Some(cell) if cell.rank() > next.rank() => {}
            Some(cell) => {
                let gave_up = cell.gave_up && next.status == JobStatus::Failed;
                *cell = Cell { gave_up, ..next };
            }
            None => {
                row.cells.insert(event.pool.clone(), next);
            }
        }
        let joined = self
            .joined_ms
            .entry(event.pool.clone())
            .or_insert(event.at_ms);
        *joined = (*joined).min(event.at_ms);
    }

    /// A proof the matcher completed.
    pub fn completed(&mut self, proof: &CompletedProof) {
        if let Some(row) = self.row(proof.block) {
            row.completed.insert(proof.prover.clone(), proof.latency_ms);
        }
    }

    /// A dead letter: listed, and the prover's cell marked as given up.
    pub fn dead_letter(&mut self, letter: &DeadLetter) {
        let block = block_of_payload(letter.payload.as_bytes());
        self.dead_letters.push_front(Failure {
            consumer: letter.consumer.clone(),
            queue: letter.queue.clone(),
            block,
            attempts: letter.attempts,
            error: letter.error.clone(),
        });
        self.dead_letters.truncate(DEAD_LETTERS_KEPT);
        // Only a known prover's block job gets a cell: the matcher also
        // reads `blocks` and dead-letters what it cannot read.
        if letter.queue != queues::BLOCKS || !self.joined_ms.contains_key(&letter.consumer) {
            return;
        }
        let Some(block) = block else { return };
        let Some(row) = self.row(block) else { return };
        let cell = row.cells.entry(letter.consumer.clone()).or_insert(Cell {
            status: JobStatus::Failed,
            attempt: letter.attempts,
            gave_up: true,
            proving_ms: None,
            output_bytes: None,
            proved_at_ms: None,
            error: Some(letter.error.clone()),
        });
        // A proof already published stays proved: the letter is about a
        // later redelivery of a job that was done.
        if cell.status != JobStatus::Proved {
            cell.status = JobStatus::Failed;
            cell.gave_up = true;
            cell.error = Some(letter.error.clone());
        }
    }

    /// The page's data at `now_ms`.
    pub fn snapshot(&self, now_ms: u64) -> Snapshot {
        Snapshot {
            now_ms,
            capacity: self.capacity,
            provers: self
                .joined_ms
                .keys()
                .map(|name| self.stats(name, now_ms))
                .collect(),
            blocks: self
                .rows
                .iter()
                .rev()
                .map(|(block, row)| BlockView {
                    block: *block,
                    row: row.clone(),
                })
                .collect(),
            dead_letters: self.dead_letters.iter().cloned().collect(),
        }
    }

    /// `name`'s numbers over the kept blocks at `now_ms`.
    pub fn stats(&self, name: &str, now_ms: u64) -> ProverStats {
        let joined = self.joined_ms.get(name).copied().unwrap_or(u64::MAX);
        let (mut proved, mut failed, mut running, mut fast, mut timed) = (0, 0, 0, 0, 0);
        let (mut on_time, mut missed) = (0, 0);
        for row in self.rows.values() {
            let cell = row.cells.get(name);
            match cell {
                Some(c) if c.status == JobStatus::Proved => {
                    proved += 1;
                    if let Some(ms) = c.proving_ms {
                        timed += 1;
                        fast += usize::from(ms < REAL_TIME_MS);
                    }
                }
                Some(c) if c.gave_up => failed += 1,
                Some(c) if matches!(c.status, JobStatus::Queued | JobStatus::Proving) => {
                    running += 1;
                }
                _ => {}
            }
            // Liveness: every block seen since the prover joined is
            // expected of it, whether or not it ever took the job.
            let Some(seen) = row.seen_ms else { continue };
            if cell.is_none() && seen < joined {
                continue;
            }
            let deadline = seen.saturating_add(LIVENESS_WINDOW_MS);
            match cell.and_then(|c| c.proved_at_ms) {
                Some(at) if at <= deadline => on_time += 1,
                _ if now_ms > deadline => missed += 1,
                _ => {} // still inside its window: not judged yet
            }
        }
        ProverStats {
            name: name.to_owned(),
            proved,
            failed,
            running,
            success_rate: share(proved, proved + failed),
            under_10s: share(fast, timed),
            on_time,
            missed,
            liveness: share(on_time, on_time + missed),
        }
    }
}

fn seen_at(row: &mut Row, at_ms: u64) {
    row.seen_ms = Some(row.seen_ms.map_or(at_ms, |seen| seen.min(at_ms)));
}

fn share(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

//! Part 4: how long from a block being mined to its prover starting, when
//! the run follows the latest head over a WebSocket. The no-op prover
//! writes the CLOCK_REALTIME it started at to `NOOP_STAMP_DIR/<block>`; the
//! bench takes the time just before asking anvil to mine (`evm_mine`).
//!
//! Blocks are mined [`SPACING`] apart, then back to back. Back to back
//! measures anvil more than the orchestrator: its WebSocket server leaves
//! Nagle's algorithm on, so a `newHeads` notification sent within 40 ms of
//! its answer to our last request waits for our delayed ACK (seen with
//! strace: the notification arrives ~40 ms after `evm_mine`, and the
//! orchestrator starts the prover ~3 ms after that). Nodes that serve
//! real chains (geth, reth) set TCP_NODELAY, and their blocks are seconds
//! apart.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::chain::Anvil;
use crate::standalone::Kit;
use crate::sys;

/// How long one block may take to reach its prover before the bench gives
/// up on it (counted as missing, not as a latency).
const PER_BLOCK_LIMIT: Duration = Duration::from_secs(30);

/// Whether this build's `orchestrator run` has `--follow`.
pub fn available(kit: &Kit) -> bool {
    Command::new(&kit.orchestrator)
        .args(["run", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--follow"))
        .unwrap_or(false)
}

/// Time between the mining of one block and the next in the spaced half of
/// a run: a fast L2's block time, far shorter than Ethereum's 12 s.
pub const SPACING: Duration = Duration::from_millis(250);

/// Both halves of one run: blocks [`SPACING`] apart, then back to back.
pub struct Run {
    pub spaced: Latencies,
    pub back_to_back: Latencies,
}

/// The latencies of one series of blocks, in milliseconds, sorted; and how
/// many blocks never reached a prover within [`PER_BLOCK_LIMIT`].
pub struct Latencies {
    pub ms: Vec<f64>,
    pub missing: usize,
}

impl Latencies {
    /// The `p`th percentile (nearest rank), `p` in 0..=100.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.ms.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.ms.len() as f64).ceil() as usize;
        self.ms[rank.clamp(1, self.ms.len()) - 1]
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The start stamp of block `block`'s prover, once it is there.
fn stamp(dir: &Path, block: u64) -> Option<i128> {
    std::fs::read_to_string(dir.join(block.to_string()))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Waits (polling every 200 µs) for block `block`'s stamp.
fn wait_stamp(dir: &Path, block: u64) -> Option<i128> {
    let deadline = std::time::Instant::now() + PER_BLOCK_LIMIT;
    while std::time::Instant::now() < deadline {
        if let Some(ns) = stamp(dir, block) {
            return Some(ns);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

/// One follower run over `blocks` freshly mined blocks.
pub fn measure(kit: &Kit, blocks: usize) -> Result<Run, String> {
    let anvil = Anvil::start(None)?;
    let dir = kit.scratch("latency");
    let stamps = dir.join("stamps");
    std::fs::create_dir_all(&stamps).map_err(|e| e.to_string())?;
    let mut child = Command::new(&kit.orchestrator)
        .args(["run", "--follow", "latest", "--rpc", &anvil.ws_url()])
        .arg("--binary")
        .arg(&kit.noop)
        .arg("--work-dir")
        .arg(dir.join("work"))
        .env("NOOP_STAMP_DIR", &stamps)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("stderr")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("orchestrator run --follow: {e}"))?;
    let result = (|| {
        // The first block also waits for the run to start up: not counted.
        let first = anvil.block("latest")? + 1;
        anvil.call("evm_mine", json!([]))?;
        if wait_stamp(&stamps, first).is_none() {
            return Err(format!(
                "no prover started for the first block within {PER_BLOCK_LIMIT:?} (see {})",
                dir.display()
            ));
        }
        let spaced = series(&anvil, &stamps, blocks, SPACING)?;
        let back_to_back = series(&anvil, &stamps, blocks, Duration::ZERO)?;
        Ok(Run {
            spaced,
            back_to_back,
        })
    })();
    sys::terminate(&child);
    let _ = child.wait();
    drop(anvil);
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Mines `blocks` blocks, each `spacing` after the one before (or at once
/// when its prover has started, if that took longer), and takes each one's
/// latency.
fn series(
    anvil: &Anvil,
    stamps: &Path,
    blocks: usize,
    spacing: Duration,
) -> Result<Latencies, String> {
    let mut latencies = Latencies {
        ms: Vec::new(),
        missing: 0,
    };
    for _ in 0..blocks {
        let block = anvil.block("latest")? + 1;
        let mined_at = now_ns();
        let next = std::time::Instant::now() + spacing;
        anvil.call("evm_mine", json!([]))?;
        match wait_stamp(stamps, block) {
            Some(started) => latencies.ms.push((started - mined_at) as f64 / 1e6),
            None => latencies.missing += 1,
        }
        std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
    }
    latencies.ms.sort_by(f64::total_cmp);
    Ok(latencies)
}

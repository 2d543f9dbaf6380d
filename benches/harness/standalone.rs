//! Parts 1 and 2: `orchestrator run --from A --to B` with the no-op prover,
//! against the C loop doing the same file and process work (`floor.c`), and
//! at growing ranges.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::chain::Anvil;
use crate::sys::{self, Measured};

/// Where the bench's programs and scratch files are.
pub struct Kit {
    pub orchestrator: PathBuf,
    pub noop: PathBuf,
    pub floor: PathBuf,
    /// Scratch space; each run gets a fresh dir under it.
    pub dir: PathBuf,
}

impl Kit {
    /// A fresh, empty scratch dir named `name`.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }
}

/// One `orchestrator run` over `from..from+blocks` with `workers` workers:
/// timed, and checked to have printed one proof per block.
pub fn run(
    kit: &Kit,
    anvil: &Anvil,
    from: u64,
    blocks: u64,
    workers: usize,
) -> Result<Measured, String> {
    let dir = kit.scratch(&format!("run-{blocks}-{workers}"));
    let stdout = dir.join("stdout");
    let to = from + blocks - 1;
    let measured = sys::measure(
        Command::new(&kit.orchestrator)
            .args(["run", "--rpc", &anvil.http_url()])
            .args(["--from", &from.to_string(), "--to", &to.to_string()])
            .args(["--workers", &workers.to_string()])
            .arg("--binary")
            .arg(&kit.noop)
            .arg("--work-dir")
            .arg(dir.join("work"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).map_err(|e| e.to_string())?)
            .stderr(File::create(dir.join("stderr")).map_err(|e| e.to_string())?),
    )?;
    let proved = count_lines(&stdout, "proved ");
    if proved != blocks as usize {
        return Err(format!(
            "run of {blocks} blocks printed {proved} proofs (see {})",
            dir.display()
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(measured)
}

/// The C floor over the same blocks with `workers` parallel loops.
pub fn floor(kit: &Kit, from: u64, blocks: u64, workers: usize) -> Result<Measured, String> {
    let dir = kit.scratch(&format!("floor-{blocks}-{workers}"));
    let measured = sys::measure(
        Command::new(&kit.floor)
            .arg(&kit.noop)
            .arg(dir.join("jobs"))
            .args([from.to_string(), blocks.to_string(), workers.to_string()])
            .stdin(Stdio::null()),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(measured)
}

/// Lines of `path` starting with `prefix`.
fn count_lines(path: &Path, prefix: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

//! Shared harness of the end-to-end tests: a real anvil node per test, the
//! real `orchestrator` binary (and the mock provers next to it) run as a child
//! process whose `--json` stdout is read line by line, temp dirs, signals, and
//! the assertions every test makes about a stream of proof events.
//!
//! Nothing here is mocked: the tests talk to anvil over JSON-RPC and to the
//! orchestrator through its command line, stdout, stderr and exit code.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod events;
pub mod http;
pub mod node;
mod orchestrator;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

pub use node::Anvil;
pub use orchestrator::Orchestrator;
pub use tempfile::TempDir;

/// Deadlock guard for a whole run; never a performance expectation.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Deadlock guard for a process that was asked to stop.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Environment variables the orchestrator reads as configuration, besides
/// `ORCHESTRATOR_*`: removed from every child, so that a developer's shell
/// cannot change what a test runs.
const CONFIG_ENV: &str = "L1_RPC NATS_URL BINARY NEXT_BLOCK INPUT_STREAM OUTPUT_STREAM INPUT_QUEUE \
     OUTPUT_QUEUE CONSUMER_NAME STRATEGY NUM_INPUTS METRICS_PORT MOCK_FAILURE_RATE MOCK_PROVER_NAME \
     MOCK_STEPS MOCK_LOG_INTERVAL_MS MOCK_PROOF_BYTES MOCK_HELPERS CUDA_VISIBLE_DEVICES";

/// The directory holding the orchestrator binary and, once built, the mocks.
fn bin_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_orchestrator"))
        .parent()
        .expect("binary has a parent dir")
}

/// `cargo test` builds only the root package's binaries; the mock provers live
/// in another package, so build them once per test binary, into the same
/// target dir and profile as the orchestrator.
pub fn ensure_mock_provers_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = bin_dir();
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--quiet", "-p", "mock-provers", "--bins"]);
        cargo.current_dir(env!("CARGO_MANIFEST_DIR"));
        if let Some(target_dir) = dir.parent() {
            cargo.arg("--target-dir").arg(target_dir);
        }
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                cargo.arg("--release");
            }
            Some(profile) => {
                cargo.args(["--profile", profile]);
            }
        }
        let status = cargo
            .status()
            .expect("could not run cargo to build the mock provers");
        assert!(
            status.success(),
            "`cargo build -p mock-provers --bins` failed: {status}"
        );
        for mock in ["mock-prover", "mock-multistep-prover"] {
            assert!(
                dir.join(mock).is_file(),
                "{mock} not found in {} after building the mock-provers package",
                dir.display()
            );
        }
    });
}

/// A shell prover of `tests/provers/`, checked to be executable.
pub fn prover_script(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/provers")
        .join(name);
    let mode = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode();
    assert!(
        mode & 0o111 != 0,
        "{} is not executable: chmod +x it",
        path.display()
    );
    path
}

/// A fresh temp dir for one test; removed when dropped.
pub fn temp_dir(test: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("orch-e2e-{test}-"))
        .tempdir()
        .expect("temp dir")
}

/// How to start one orchestrator process.
pub struct RunBuilder {
    command: Command,
    dir: TempDir,
}

impl RunBuilder {
    /// `orchestrator run --json` against `rpc`, with test-friendly intervals,
    /// a private work dir and cwd, fast mock provers and `RUST_LOG=info`.
    pub fn new(test: &str, rpc: &str) -> RunBuilder {
        ensure_mock_provers_built();
        let dir = temp_dir(test);
        let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
        command
            .args(["run", "--json", "--rpc", rpc])
            .args("--retry-delay 100ms".split(' '))
            .arg("--work-dir")
            .arg(dir.path().join("work"))
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .env("MOCK_PROVE_TIME_MS", "200");
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if name.starts_with("ORCHESTRATOR_") || CONFIG_ENV.split_whitespace().any(|v| v == name)
            {
                command.env_remove(&key);
            }
        }
        // Through the environment, so a test may still give --poll-interval.
        command.env("ORCHESTRATOR_POLL_INTERVAL", "300ms");
        RunBuilder { command, dir }
    }

    /// Appends command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> RunBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Appends `flag PATH`.
    pub fn arg_path(mut self, flag: &str, path: &Path) -> RunBuilder {
        self.command.arg(flag).arg(path);
        self
    }

    /// Sets an environment variable of the orchestrator (and its provers).
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> RunBuilder {
        self.command.env(key, value);
        self
    }

    /// This run's temp dir (for marker files of shell provers).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the process: stdout lines go to a reader thread, stderr to a file.
    pub fn spawn(mut self) -> Orchestrator {
        let stderr_path = self.dir.path().join("orchestrator.stderr");
        let stderr = File::create(&stderr_path).expect("stderr file");
        let mut child = self
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn orchestrator");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Orchestrator::new(child, lines, stderr_path, self.dir)
    }
}

/// Whether `pid` names a live process (a zombie counts as dead).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may contain spaces.
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

/// Polls `condition` every 50 ms until it holds (true) or `timeout` passes (false).
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A backfill: a fresh anvil with `to` finalized, then
/// `orchestrator run --from FROM --to TO` plus what `configure` adds, waited
/// for until it exits by itself.
pub fn run_range(
    test: &str,
    from: u64,
    to: u64,
    configure: impl FnOnce(RunBuilder) -> RunBuilder,
) -> (Orchestrator, ExitStatus) {
    let anvil = Anvil::start();
    anvil.finalize_up_to(to);
    let builder = RunBuilder::new(test, &anvil.url()).args([
        "--from",
        &from.to_string(),
        "--to",
        &to.to_string(),
    ]);
    let mut run = configure(builder).spawn();
    let status = run.wait_exit(RUN_TIMEOUT);
    (run, status)
}

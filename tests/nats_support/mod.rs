//! Harness of the role-mode tests (`tests/roles_*.rs`): a [`Cluster`] is one
//! anvil node and one nats-server for one test, plus a work dir where every
//! role process started with [`Cluster::spawn`] writes its logs. Tests read
//! the queues with a [`Tap`] and check them with [`checks`]. Builds on
//! `tests/support` (anvil, temp dirs, free ports).
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod checks;
pub mod edge;
pub mod layout;
pub mod nats_cluster;
pub mod payloads;
pub mod role;
pub mod rpc_proxy;
pub mod server;
pub mod tap;
pub mod wire;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub use checks::CompletedProof;
pub use role::{Role, RoleProcess};
pub use server::NatsServer;
pub use tap::Tap;

use std::process::{Command, Output, Stdio};

use crate::support::{self, Anvil, TempDir};

/// A small tokio runtime for a test harness that talks to NATS from plain
/// (non-async) test code.
pub fn harness_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Blocks of a test's window that are final before its watcher starts.
pub const BACKLOG: u64 = 5;
/// How often [`Cluster::miner`] mines an extra block.
pub const MINE_EVERY: Duration = Duration::from_millis(200);
/// Deadlock guard for one wait of a pipeline test; never a speed expectation.
pub const FLOW_TIMEOUT: Duration = Duration::from_secs(75);
/// How long to keep reading after a window is done, before the final checks.
pub const LINGER: Duration = Duration::from_secs(2);

/// Path of a mock prover binary, built next to the orchestrator.
pub fn mock_bin(name: &str) -> String {
    let dir = Path::new(env!("CARGO_BIN_EXE_orchestrator"))
        .parent()
        .expect("binary has a parent dir");
    dir.join(name).display().to_string()
}

/// The servers of one test and the directory of its role logs.
pub struct Cluster {
    /// The chain; shared with a [`Miner`] thread.
    pub anvil: Arc<Anvil>,
    /// The message bus (the first node of a NATS cluster).
    pub nats: NatsServer,
    /// The other nodes of a NATS cluster ([`Cluster::start_nats_cluster`]);
    /// none for a single server.
    pub peers: Vec<NatsServer>,
    dir: TempDir,
}

impl Cluster {
    /// Starts anvil and nats-server, and makes sure the mock provers are built.
    pub fn start(test: &str) -> Cluster {
        support::ensure_mock_provers_built();
        Cluster {
            anvil: Arc::new(Anvil::start()),
            nats: NatsServer::start(),
            peers: Vec::new(),
            dir: support::temp_dir(test),
        }
    }

    /// [`Cluster::start`] with a NATS cluster of `size` nodes instead of one
    /// server; every role gets all their URLs in `NATS_URL`.
    pub fn start_nats_cluster(test: &str, size: usize) -> Cluster {
        support::ensure_mock_provers_built();
        let mut nodes = nats_cluster::start_nodes(size);
        let nats = nodes.remove(0);
        Cluster {
            anvil: Arc::new(Anvil::start()),
            nats,
            peers: nodes,
            dir: support::temp_dir(test),
        }
    }

    /// Every NATS node, the first one first.
    pub fn nats_nodes(&self) -> Vec<&NatsServer> {
        std::iter::once(&self.nats).chain(&self.peers).collect()
    }

    /// NATS node `index` of [`Cluster::nats_nodes`], e.g. to kill it.
    pub fn nats_node_mut(&mut self, index: usize) -> &mut NatsServer {
        match index {
            0 => &mut self.nats,
            _ => &mut self.peers[index - 1],
        }
    }

    /// `NATS_URL`: the URLs of every node, comma separated.
    pub fn nats_urls(&self) -> String {
        std::iter::once(&self.nats)
            .chain(&self.peers)
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A `NEXT_BLOCK` whose first `backlog` blocks are final already, so a
    /// watcher must start there and catch up before following the head (and
    /// far enough from genesis for a default start to be told apart).
    pub fn next_block_with_backlog(&self, backlog: u64) -> u64 {
        self.anvil.finalize_up_to(backlog + 10);
        self.anvil.finalized() + 1 - backlog
    }

    /// Where the role logs are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What every role needs to reach the servers: `NATS_URL` and `L1_RPC`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("NATS_URL".to_owned(), self.nats_urls()),
            ("L1_RPC".to_owned(), self.anvil.url()),
        ]
    }

    /// Starts `role` against this cluster.
    pub fn spawn(&self, role: &Role) -> RoleProcess {
        role.spawn(self.dir(), &self.env())
    }

    /// Starts `role` and waits up to `timeout` for it to exit by itself.
    pub fn run_to_exit(&self, role: &Role, timeout: Duration) -> (RoleProcess, ExitStatus) {
        let mut process = self.spawn(role);
        match process.wait_exit(timeout) {
            Some(status) => (process, status),
            None => self.fail(&format!("{} still running after {timeout:?}", role.label)),
        }
    }

    /// `orchestrator init`, which must succeed.
    pub fn init(&self) {
        let (process, status) =
            self.run_to_exit(&Role::new("init", "init"), Duration::from_secs(30));
        if !status.success() {
            self.fail(&format!("{} exited with {status}", process.label()));
        }
    }

    /// A reader of `modularorchestrator.<queue>`.
    pub fn tap(&self, queue: &str) -> Tap {
        let tap = Tap::open(&self.nats.url(), queue, Duration::from_secs(30));
        self.check(tap)
    }

    /// Waits until every block of `window` has completed proofs from
    /// `provers` distinct provers, reads on for [`LINGER`], and returns all
    /// completed proofs read, each checked to be well formed.
    pub fn await_completed(
        &self,
        completed: &mut Tap,
        window: &Range<u64>,
        provers: usize,
    ) -> Vec<CompletedProof> {
        let what = format!("completed proofs by {provers} prover(s) for blocks {window:?}");
        self.check(completed.wait_until(FLOW_TIMEOUT, &what, |records| {
            checks::fully_proved(records, window, provers)
        }));
        self.check(completed.read_for(LINGER));
        self.check(checks::completed_proofs(&completed.records))
    }

    /// [`Cluster::await_completed`] with one prover, then checks that each
    /// block of `window` was completed exactly once.
    pub fn await_completed_once(
        &self,
        completed: &mut Tap,
        window: &Range<u64>,
    ) -> Vec<CompletedProof> {
        let proofs = self.await_completed(completed, window, 1);
        let blocks = proofs.iter().map(|p| p.block);
        self.check(checks::each_block_exactly(
            "completed_proofs",
            window,
            blocks,
            1,
        ));
        proofs
    }

    /// Mines one block every [`MINE_EVERY`] besides anvil's own one per
    /// second, so a window fills in seconds while blocks still come one by one.
    pub fn miner(&self) -> Miner {
        let anvil = Arc::clone(&self.anvil);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                anvil.mine(1);
                std::thread::sleep(MINE_EVERY);
            }
        });
        Miner {
            stop,
            thread: Some(thread),
        }
    }

    /// `orchestrator proof get --block N [--prover P]` against this cluster:
    /// the bytes it printed, or the test fails with its error output.
    pub fn proof_get(&self, block: u64, prover: Option<&str>) -> Vec<u8> {
        let name = format!("proof-get-{block}-{}", prover.unwrap_or("any"));
        let stdout_path = self.dir().join(format!("{name}.out"));
        let stderr_path = self.dir().join(format!("{name}.err"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
        command
            .args(["proof", "get", "--block", &block.to_string()])
            .args(prover.iter().flat_map(|p| ["--prover", p]))
            .env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| k == "PATH" || k == "HOME"))
            .env("NATS_URL", self.nats.url())
            .env("NO_COLOR", "1")
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("proof get stdout"))
            .stderr(std::fs::File::create(&stderr_path).expect("proof get stderr"));
        let mut child = command.spawn().expect("start orchestrator proof get");
        let exited = support::eventually(Duration::from_secs(30), || {
            child.try_wait().expect("try_wait proof get").is_some()
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            self.fail(&format!("`{name}` still running after 30 s"));
        }
        let status = child.wait().expect("wait for proof get");
        let errors = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if !status.success() {
            self.fail(&format!("`{name}` exited with {status}:\n{errors}"));
        }
        std::fs::read(&stdout_path).expect("read proof get stdout")
    }

    /// Waits until `role`'s log has a line for which `found` holds; the
    /// test fails after [`FLOW_TIMEOUT`] (a deadlock guard) naming `what`.
    pub fn await_log(&self, role: &RoleProcess, what: &str, found: impl Fn(&str) -> bool) {
        let seen = || role.log_lines().iter().any(|line| found(line));
        if !support::eventually(FLOW_TIMEOUT, seen) {
            self.fail(&format!(
                "timed out after {FLOW_TIMEOUT:?} waiting for {what} in the log of {}",
                role.label()
            ));
        }
    }

    /// The value of `result`, or the test fails with the error and the logs.
    pub fn check<T>(&self, result: Result<T, String>) -> T {
        result.unwrap_or_else(|e| self.fail(&e))
    }

    /// Panics with `what` and the tail of every role's log: the one way the
    /// role tests fail.
    pub fn fail(&self, what: &str) -> ! {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir())
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        logs.retain(|path| path.extension().is_some_and(|ext| ext == "stderr"));
        logs.sort();
        let mut tails: Vec<String> = logs
            .iter()
            .map(|path| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let text = std::fs::read_to_string(path).unwrap_or_default();
                format!("--- {name} ---\n{}", tail(&text, 25))
            })
            .collect();
        for node in std::iter::once(&self.nats).chain(&self.peers) {
            tails.push(format!(
                "--- nats-server {} ---\n{}",
                node.url(),
                tail(&node.log(), 10)
            ));
        }
        panic!("{what}\n{}", tails.join("\n"));
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A thread mining blocks until dropped.
pub struct Miner {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts `orchestrator init` against `url` with `env` and `RUST_LOG=debug`,
/// its stdout and stderr piped.
pub fn spawn_init(url: &str, env: &[(&str, &str)]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("init")
        .env("NATS_URL", url)
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start orchestrator init")
}

/// Runs `orchestrator init` against `url` with `env` and `RUST_LOG=debug`,
/// killing it after `limit`: with credentials the server refuses it retries
/// its first connection forever, so it must be cut short to be judged.
pub fn run_init(url: &str, env: &[(&str, &str)], limit: Duration) -> Output {
    let child = spawn_init(url, env);
    let pid = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        // SAFETY: plain kill(2) of our child; a reaped pid only errs.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    child.wait_with_output().expect("wait for init")
}

/// [`run_init`] for credentials that must be refused: `init` retries a
/// refused connection forever, so it is killed as soon as its log so far
/// satisfies `refused` (the refusal has been seen), or at `limit`, a
/// deadlock guard. A test tells the two apart by asserting on the log: one
/// cut short at `limit` lacks the refusal.
pub fn run_init_until(
    url: &str,
    env: &[(&str, &str)],
    limit: Duration,
    refused: impl Fn(&str) -> bool,
) -> Output {
    use std::io::{BufRead, BufReader, Read};
    use std::sync::mpsc;

    let mut child = spawn_init(url, env);
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + limit;
    let mut log = String::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if refused(&log) {
                    break;
                }
            }
            // Exited by itself (stderr closed), or the deadlock guard.
            Err(_) => break,
        }
    }
    // Refused, or still running at the deadlock guard (an exited child
    // makes this a no-op).
    let _ = child.kill();
    let status = child.wait().expect("wait for init");
    // Whatever it wrote until it died.
    reader.join().expect("stderr reader");
    log.extend(received.try_iter().map(|line| line + "\n"));
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_end(&mut stdout);
    }
    Output {
        status,
        stdout,
        stderr: log.into_bytes(),
    }
}

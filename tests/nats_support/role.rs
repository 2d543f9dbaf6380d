//! One role of the orchestrator as its own OS process, configured the way a
//! container is: a subcommand and a list of environment variables. A
//! [`Role`] is the recipe and can be started again after a crash; a
//! [`RoleProcess`] is one running instance, whose stderr (the logs) goes to
//! a file that survives restarts.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::node::free_port;

/// The variables every role process gets, besides the role's own: logs
/// without colour so they can be searched, fast mock provers, a watcher that
/// polls often.
const BASE_ENV: &[(&str, &str)] = &[
    ("RUST_LOG", "info"),
    ("NO_COLOR", "1"),
    ("MOCK_PROVE_TIME_MS", "200"),
    ("ORCHESTRATOR_POLL_INTERVAL", "300ms"),
    ("ORCHESTRATOR_RETRY_DELAY", "100ms"),
];

/// Variables passed through from the test's own environment; everything else
/// is cleared, so a developer's shell cannot change what a role runs.
const PASSED_THROUGH: &[&str] = &["PATH", "HOME", "TMPDIR", "RUST_BACKTRACE"];

/// How to start one role: `orchestrator <command>` with `env` on top of the
/// cluster's and [`BASE_ENV`].
#[derive(Debug, Clone)]
pub struct Role {
    /// A name for file names and failure messages, e.g. `prover-1`.
    pub label: String,
    command: String,
    /// Flags after the command, e.g. `--replicas 3` for `init`.
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Role {
    /// `orchestrator <command>` (e.g. `prover`, `collector`), called `label`.
    pub fn new(label: &str, command: &str) -> Role {
        Role {
            label: label.to_owned(),
            command: command.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Adds command-line flags after the command.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Role {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Adds variables; a later value for the same key wins.
    pub fn env<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Role {
        self.env.extend(
            vars.into_iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())),
        );
        self
    }

    /// Starts the process with `cluster_env` (NATS_URL, L1_RPC), then this
    /// role's variables; logs go to `<dir>/<label>.<run>.stderr`. Each
    /// process gets its own METRICS_PORT, as on a host running several roles.
    pub(crate) fn spawn(&self, dir: &Path, cluster_env: &[(String, String)]) -> RoleProcess {
        let mut process = RoleProcess {
            role: self.clone(),
            dir: dir.to_owned(),
            child: None,
            runs: Vec::new(),
            exit: None,
            cluster_env: cluster_env.to_vec(),
        };
        process.start();
        process
    }
}

/// A running role (or one that ran); SIGTERM, then SIGKILL, when dropped.
pub struct RoleProcess {
    role: Role,
    dir: PathBuf,
    cluster_env: Vec<(String, String)>,
    child: Option<Child>,
    /// stderr files of every run, oldest first.
    runs: Vec<PathBuf>,
    exit: Option<ExitStatus>,
}

impl RoleProcess {
    fn start(&mut self) {
        let run = self.runs.len() + 1;
        let label = &self.role.label;
        let stderr_path = self.dir.join(format!("{label}.{run}.stderr"));
        let stdout_path = self.dir.join(format!("{label}.{run}.stdout"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
        command
            .arg(&self.role.command)
            .args(&self.role.args)
            .env_clear();
        for key in PASSED_THROUGH {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        command
            .envs(BASE_ENV.iter().copied())
            .envs(self.cluster_env.iter().map(|(k, v)| (k, v)))
            .envs(self.role.env.iter().map(|(k, v)| (k, v)))
            .env("METRICS_PORT", free_port().to_string())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("stdout file"))
            .stderr(File::create(&stderr_path).expect("stderr file"));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {label}: {e}"));
        self.child = Some(child);
        self.runs.push(stderr_path);
        self.exit = None;
    }

    /// The role's label.
    pub fn label(&self) -> &str {
        &self.role.label
    }

    /// Everything every run of this role wrote to stderr, oldest first.
    pub fn stderr(&self) -> String {
        self.runs
            .iter()
            .map(|path| std::fs::read_to_string(path).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("")
    }

    /// The job ids (`job=<id>`) of this role's `job done` log lines, in order.
    pub fn jobs_done(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .map(strip_ansi)
            .filter(|line| line.contains("job done"))
            .filter_map(|line| {
                let (_, rest) = line.split_once("job=")?;
                let id = rest.split_whitespace().next()?;
                Some(id.trim_matches('"').to_owned())
            })
            .collect()
    }

    /// The exit status, if the current run has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Some(child) = self.child.as_mut()
        {
            self.exit = child.try_wait().expect("try_wait role");
        }
        self.exit
    }

    /// Waits up to `timeout` for the current run to end by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`: no chance to flush, ack or save anything.
    pub fn kill_hard(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            self.exit = Some(child.wait().expect("wait for killed role"));
        }
    }

    /// Starts the role again with the same command and environment (after
    /// [`RoleProcess::kill_hard`]); logs go to a new file.
    pub fn restart(&mut self) {
        assert!(
            self.try_exit().is_some(),
            "{} is still running; stop it before restarting",
            self.label()
        );
        self.start();
    }

    /// The pid of the current run, while it has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM to the current run and returns at once (see
    /// [`RoleProcess::wait_exit`]); nothing if it has ended.
    pub fn sigterm(&mut self) {
        if self.try_exit().is_none()
            && let Some(pid) = self.pid()
        {
            // SAFETY: kill(2) on a child we spawned and have not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
    }

    /// Every line every run of this role logged, without colour codes.
    pub fn log_lines(&self) -> Vec<String> {
        self.stderr().lines().map(strip_ansi).collect()
    }

    /// How many times this role started a prover for `job`: the mock
    /// provers print `Running prover.` first thing, logged with `job=<id>`.
    pub fn prover_runs(&self, job: &str) -> usize {
        self.log_lines()
            .iter()
            .filter(|line| line.contains("Running prover.") && log_field(line, "job") == Some(job))
            .count()
    }

    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(&mut self, grace: Duration) {
        if self.try_exit().is_some() {
            return;
        }
        if let Some(child) = self.child.as_ref() {
            // SAFETY: kill(2) on a child we spawned and have not reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        if self.wait_exit(grace).is_none() {
            self.kill_hard();
        }
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// `line` without ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of field `name` (`name=value`, quotes removed) in a log line,
/// e.g. `job` or `pipe` of a prover line.
pub fn log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(name)?.strip_prefix('='))
        .map(|value| value.trim_matches('"'))
}

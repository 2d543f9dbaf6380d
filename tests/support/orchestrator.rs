//! A running `orchestrator run --json` process as the tests see it: the
//! events read from its stdout so far, its stderr file, signals and its exit,
//! and the assertions on its event stream. Every failure message carries the
//! events and the stderr tail, so a red test explains itself.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::events::{self, Event};
use super::{STOP_TIMEOUT, TempDir};

/// A running orchestrator; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Orchestrator {
    child: Child,
    lines: Receiver<String>,
    /// Every event read so far, in stdout order.
    pub events: Vec<Event>,
    stderr_path: PathBuf,
    exit: Option<ExitStatus>,
    dir: TempDir,
}

impl Orchestrator {
    pub(super) fn new(
        child: Child,
        lines: Receiver<String>,
        stderr_path: PathBuf,
        dir: TempDir,
    ) -> Orchestrator {
        let events = Vec::new();
        Orchestrator {
            child,
            lines,
            events,
            stderr_path,
            exit: None,
            dir,
        }
    }

    /// This run's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Panics with `what`, the events and the stderr tail: the one way tests fail.
    pub fn fail(&self, what: &str) -> ! {
        let stderr = self.stderr();
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{what}\n--- events ({}) ---\n{}\n--- stderr tail ---\n{}",
            self.events.len(),
            events::summary(&self.events),
            tail.join("\n")
        );
    }

    /// Reads events until `done(events so far)` holds; fails after `timeout`
    /// or if stdout closes first.
    pub fn read_until(&mut self, timeout: Duration, what: &str, done: impl Fn(&[Event]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.events) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.push_line(&line),
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("timed out after {timeout:?} waiting for {what}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("stdout closed while waiting for {what}"))
                }
            }
        }
    }

    fn push_line(&mut self, line: &str) {
        match Event::parse(line) {
            Some(event) => self.events.push(event),
            None => self.fail(&format!("stdout line is not a --json event: {line:?}")),
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the orchestrator process,
    /// unless it has exited already.
    pub fn signal(&mut self, signal: i32) {
        if self.try_exit().is_some() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our child, known not to be reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits for the process to exit by itself, then reads the rest of stdout.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.try_exit() {
                break status;
            }
            if Instant::now() > deadline {
                self.fail(&format!("process still running after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread ends at EOF; a prover child that kept the pipe
        // open would show up here as a hang, hence the bounded wait.
        loop {
            match self.lines.recv_timeout(STOP_TIMEOUT) {
                Ok(line) => self.push_line(&line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.fail("stdout still open after the process exited")
                }
            }
        }
        status
    }

    /// SIGTERM, then [`Orchestrator::wait_exit`].
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(STOP_TIMEOUT)
    }

    /// Asserts the exit code, with the run's output in the failure message.
    pub fn assert_exit_code(&self, status: ExitStatus, code: i32) {
        if status.code() != Some(code) {
            self.fail(&format!("expected exit code {code}, got {status}"));
        }
    }

    /// Asserts that no block was reported twice in the whole stream.
    pub fn assert_no_duplicates(&self) {
        let duplicates = events::duplicates(&self.events);
        if !duplicates.is_empty() {
            self.fail(&format!("blocks reported more than once: {duplicates:?}"));
        }
    }

    /// Asserts that exactly `expected` were proved, each once and by `prover`,
    /// and that exactly `failed` were reported failed, each once.
    pub fn assert_outcome(&self, expected: &BTreeSet<u64>, prover: &str, failed: &BTreeSet<u64>) {
        self.assert_no_duplicates();
        let proved = events::proved(&self.events);
        if &proved != expected {
            self.fail(&format!("proved {proved:?}, expected {expected:?}"));
        }
        let reported_failed = events::failed(&self.events);
        if &reported_failed != failed {
            self.fail(&format!("failed {reported_failed:?}, expected {failed:?}"));
        }
        let wrong = self
            .events
            .iter()
            .find(|e| matches!(e, Event::Proved { prover: p, .. } if p != prover));
        if let Some(event) = wrong {
            self.fail(&format!("expected every proof by {prover}, got {event:?}"));
        }
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        if self.try_exit().is_some() {
            return;
        }
        // Let it stop its provers first; SIGKILL only if it does not.
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.try_exit().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

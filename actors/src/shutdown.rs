//! The one way a process stops: something asks for an exit code, the process
//! stops taking work, waits (bounded) for the work that must react, then
//! stops with that code.
//!
//! Every reason to stop goes through [`Shutdown::exit`]: a signal, a range
//! run that is done, `init` that has created the stream, a setup error, and
//! a vital actor that died (through its [`Lifeline`]). The first reason wins.
//!
//! A prover role that stops on SIGTERM must hand its running jobs back (nak)
//! so another host starts them at once, instead of after the ack wait. That
//! takes a round trip to the server, so the process waits for it, bounded,
//! before it stops the actor system.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// Why the process stops, and with which exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The process's exit code.
    pub code: i32,
    /// One line for the log.
    pub why: String,
}

/// Cheap to clone; clones share the signal, the exit code and the tracked
/// work.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
    exit: Arc<OnceLock<Exit>>,
}

impl Shutdown {
    /// A signal not yet given.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the process to stop with `code`. Only the first call sets the
    /// code: a signal during a failing setup keeps the setup's code.
    pub fn exit(&self, code: i32, why: impl Into<String>) {
        let _ = self.exit.set(Exit {
            code,
            why: why.into(),
        });
        self.token.cancel();
    }

    /// Why the process stops, once [`Shutdown::exit`] was called.
    pub fn reason(&self) -> Option<&Exit> {
        self.exit.get()
    }

    /// Whether a stop was asked for.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once a stop is asked for.
    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    /// `work`, counted as unfinished until it completes or is dropped.
    pub fn track<F: Future>(&self, work: F) -> impl Future<Output = F::Output> + use<F> {
        self.tracker.track_future(work)
    }

    /// Counts as unfinished tracked work until dropped: for work that
    /// passes from one future to the next, with no moment in between in
    /// which the process could think it done.
    pub fn hold(&self) -> TaskTrackerToken {
        self.tracker.token()
    }

    /// Runs `task` on the current arbiter as tracked work: the process waits
    /// for it (bounded) before it stops. A task that would run forever must
    /// end on [`Shutdown::triggered`].
    pub fn spawn<F: Future<Output = ()> + 'static>(&self, task: F) {
        actix::spawn(self.track(task));
    }

    /// A guard for a vital actor: when the actor holding it is dropped
    /// (stopped, or gone in a panic) before any stop was asked for, the
    /// process exits with `code`. A role without its pool, matcher or
    /// watcher holds its consumer and does nothing; exiting lets the
    /// supervisor (compose, systemd, Kubernetes) restart it.
    pub fn lifeline(&self, code: i32, why: &'static str) -> Lifeline {
        Lifeline {
            shutdown: self.clone(),
            code,
            why,
        }
    }

    /// Waits up to `limit` for the tracked work to finish (asking for a stop
    /// with code 0 if none was asked for). Returns whether it all finished
    /// in time.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.exit(0, "drained");
        self.tracker.close();
        tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Held by a vital actor; see [`Shutdown::lifeline`].
#[derive(Debug)]
pub struct Lifeline {
    shutdown: Shutdown,
    code: i32,
    why: &'static str,
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        if self.shutdown.is_triggered() {
            return;
        }
        if self.code == 0 {
            tracing::info!(code = self.code, "{}; exiting", self.why);
        } else {
            tracing::error!(code = self.code, "{}; exiting", self.why);
        }
        self.shutdown.exit(self.code, self.why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_exit_code_wins() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_triggered());
        shutdown.exit(143, "signal");
        shutdown.exit(0, "range done");
        assert!(shutdown.is_triggered());
        assert_eq!(shutdown.reason().map(|e| e.code), Some(143));
    }

    #[test]
    fn a_dropped_lifeline_exits_unless_a_stop_was_asked_for() {
        let shutdown = Shutdown::new();
        drop(shutdown.lifeline(1, "the pool stopped"));
        assert_eq!(shutdown.reason().map(|e| e.code), Some(1));

        let stopping = Shutdown::new();
        stopping.exit(130, "signal");
        drop(stopping.lifeline(1, "the pool stopped"));
        assert_eq!(stopping.reason().map(|e| e.code), Some(130));
    }
}

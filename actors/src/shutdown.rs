//! One shutdown signal for a whole process, and a way to wait until the work
//! that must react to it has done so.
//!
//! A prover role that stops on SIGTERM must hand its running jobs back (nak)
//! so another host starts them at once, instead of after the ack wait. That
//! takes a round trip to the server, so the process waits for it, bounded,
//! before it stops the actor system.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Cheap to clone; clones share the signal and the tracked work.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    /// A signal not yet given.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells everything watching to wind down.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the signal is given.
    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    /// `work`, counted as unfinished until it completes or is dropped.
    pub fn track<F: Future>(&self, work: F) -> impl Future<Output = F::Output> + use<F> {
        self.tracker.track_future(work)
    }

    /// Triggers the signal and waits up to `limit` for the tracked work to
    /// finish. Returns whether it all finished in time.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.trigger();
        self.tracker.close();
        tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok()
    }
}

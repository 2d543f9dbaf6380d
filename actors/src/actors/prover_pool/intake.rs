//! What the pool takes in: the feeder that pulls jobs only for idle workers,
//! and the pause after failures that leaves a shared queue's jobs to
//! healthy hosts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{Dispatch, PoolConfig, ProverPool};
use crate::edges::JobSource;
use crate::metrics;
use crate::shutdown::Shutdown;

/// The instant before which the feeder takes no job, shared by the pool
/// (which sets it) and the feeder (which waits for it).
type PausedUntil = Arc<Mutex<Option<Instant>>>;

/// Failures in a row on this host and the pause they put on the intake.
pub(super) struct Intake {
    failing_streak: u32,
    paused_until: PausedUntil,
}

impl Intake {
    pub(super) fn new() -> Self {
        Intake {
            failing_streak: 0,
            paused_until: Arc::new(Mutex::new(None)),
        }
    }

    /// A job succeeded: the streak and any pause end.
    pub(super) fn succeeded(&mut self, config: &PoolConfig) {
        self.failing_streak = 0;
        *self.paused_until.lock().expect("pause lock") = None;
        metrics::intake(&config.name, false, 0);
    }

    /// A job failed: with `pause_after_failure`, the intake pauses, and the
    /// pause is returned so the caller can call [`Intake::pause_over`]
    /// when it is.
    pub(super) fn failed(&mut self, config: &PoolConfig) -> Option<Duration> {
        self.failing_streak += 1;
        if !config.pause_after_failure {
            metrics::intake(&config.name, false, self.failing_streak);
            return None;
        }
        // Longer than the failed job's own retry delay, so a healthy idle
        // host gets the redelivery before this one asks again.
        let pause = config.retry.delay(self.failing_streak + 1);
        tracing::warn!(failed_in_a_row = self.failing_streak, pause = ?pause, "jobs keep failing on this host; taking no new job for a while so healthy hosts get them");
        *self.paused_until.lock().expect("pause lock") = Some(Instant::now() + pause);
        metrics::intake(&config.name, true, self.failing_streak);
        Some(pause)
    }

    /// A pause has run out: the gauge says so, unless a later failure
    /// paused the intake again meanwhile.
    pub(super) fn pause_over(&self, config: &PoolConfig) {
        let until = *self.paused_until.lock().expect("pause lock");
        if until.is_none_or(|until| until <= Instant::now()) {
            metrics::intake(&config.name, false, self.failing_streak);
        }
    }

    /// The feeder of `pool`: it pulls from `source` until the pool stops
    /// or `shutdown` is triggered, only with a free worker's permit, and not
    /// while the intake is paused.
    pub(super) fn feeder(
        &self,
        source: Box<dyn JobSource>,
        free_workers: Arc<Semaphore>,
        pool: Addr<ProverPool>,
        shutdown: Shutdown,
    ) -> impl Future<Output = ()> + use<> {
        feed(
            self.paused_until.clone(),
            source,
            free_workers,
            pool,
            shutdown,
        )
    }
}

/// See [`Intake::feeder`].
async fn feed(
    paused_until: PausedUntil,
    mut source: Box<dyn JobSource>,
    free_workers: Arc<Semaphore>,
    pool: Addr<ProverPool>,
    shutdown: Shutdown,
) {
    let feed = async {
        'feed: loop {
            let Ok(first) = free_workers.clone().acquire_owned().await else {
                break;
            };
            loop {
                let until = *paused_until.lock().expect("pause lock");
                match until {
                    Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                    _ => break,
                }
            }
            // One pull for every worker idle now (a backlog is then one
            // request per batch, not per job), and never more: a job
            // taken here without a worker would wait unacknowledged
            // while another host could prove it.
            let mut permits = vec![first];
            while let Ok(permit) = free_workers.clone().try_acquire_owned() {
                permits.push(permit);
            }
            let deliveries = source.next_up_to(permits.len()).await;
            if deliveries.is_empty() {
                break;
            }
            // Fewer jobs than permits: the rest go back when dropped.
            for (delivery, permit) in deliveries.into_iter().zip(permits) {
                if pool.send(Dispatch { delivery, permit }).await.is_err() {
                    break 'feed;
                }
            }
        }
    };
    // A stopping process takes no new job.
    tokio::select! {
        _ = feed => {}
        _ = shutdown.triggered() => {}
    }
}

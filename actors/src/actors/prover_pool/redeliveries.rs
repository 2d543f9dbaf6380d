//! Redeliveries of jobs a pool already has: the server redelivers a job
//! whose ack is late (NATS away longer than the ack wait), and a host that
//! gets one while the job runs, is published or was just proved here must
//! not prove the block a second time.

use std::collections::HashMap;

use crate::edges::Delivery;
use crate::recent::RecentSet;

/// A job as the pool knows it: its input queue and message id (one block
/// can be a job on several of a pool's queues, one per step).
pub(super) type JobKey = (String, String);

/// How many proved jobs a pool remembers, to ack their late redeliveries.
/// Such a redelivery can reach the pool just after the ack; the pool pulls
/// only as many messages as it has idle workers, so it follows its ack
/// within a pull or two, never a thousand jobs later.
const PROVED_LATELY: usize = 1024;

/// What to do with a delivery the source handed over.
pub(super) enum Arrival {
    /// A job to run.
    Run(Delivery),
    /// A redelivery of a job proved and acked here: ack it.
    Ack(Delivery),
    /// A redelivery of a job taken, running or being published here: it
    /// waits for that job (see [`Redeliveries::ended`]).
    Parked,
}

/// The jobs a pool took and is running or publishing, with the
/// redeliveries of them that came meanwhile, and the jobs it proved lately.
pub(super) struct Redeliveries {
    active: HashMap<JobKey, Vec<Delivery>>,
    proved_lately: RecentSet<JobKey>,
}

impl Redeliveries {
    pub(super) fn new() -> Self {
        Self {
            active: HashMap::new(),
            proved_lately: RecentSet::new(PROVED_LATELY),
        }
    }

    /// Sorts out a delivery the source handed over.
    pub(super) fn arrived(&mut self, delivery: Delivery) -> Arrival {
        let key = key(&delivery);
        // A first attempt is a new message (a deliberate resubmission of
        // the block): proved again. Only redeliveries are settled here.
        if delivery.attempt > 1 && self.proved_lately.contains(&key) {
            tracing::info!(job = %delivery.id, attempt = delivery.attempt, "redelivered after its proof was published and acked; acked, not proved again");
            return Arrival::Ack(delivery);
        }
        match self.active.get_mut(&key) {
            Some(waiting) => {
                tracing::info!(job = %delivery.id, attempt = delivery.attempt, "redelivered while it runs or its proof is published here; it waits for that and is acked with it, not proved twice");
                waiting.push(delivery);
                Arrival::Parked
            }
            None => {
                // Active from now on, also while it waits for a worker.
                self.active.insert(key, Vec::new());
                Arrival::Run(delivery)
            }
        }
    }

    /// The job left the pool: returns the redeliveries that waited for it
    /// and are to be acked now. Those of a job that comes back (retried or
    /// handed back, `for_good` false) are left to the server's schedule.
    pub(super) fn ended(&mut self, key: JobKey, proved: bool, for_good: bool) -> Vec<Delivery> {
        let waited = self.active.remove(&key).unwrap_or_default();
        if proved {
            self.proved_lately.insert(key);
        }
        if for_good { waited } else { Vec::new() }
    }
}

/// `delivery`'s job.
pub(super) fn key(delivery: &Delivery) -> JobKey {
    (delivery.queue.clone(), delivery.id.clone())
}

//! One prover slot: runs one job at a time through a [`JobRunner`].

use std::sync::Arc;

use actix::prelude::*;

use crate::edges::{Job, JobFailure, JobRunner};

/// Runs the job `id` on `input`; answers with the output bytes.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<u8>, JobFailure>")]
pub struct RunJob {
    /// The job's message id (for logs and job file names).
    pub id: String,
    /// The input payload, byte for byte.
    pub input: Vec<u8>,
}

/// A worker owned by the [`super::ProverPool`]. It exists as an actor of its
/// own so that a crash in one job takes down only this worker, which the pool
/// notices (closed mailbox) and replaces.
pub struct ProverWorker {
    slot: usize,
    gpu: Option<String>,
    runner: Arc<dyn JobRunner>,
}

impl ProverWorker {
    /// Worker number `slot` of its pool, owning `gpu` if the pool has
    /// devices, running jobs with `runner`.
    pub fn new(slot: usize, gpu: Option<String>, runner: Arc<dyn JobRunner>) -> Self {
        Self { slot, gpu, runner }
    }
}

impl Actor for ProverWorker {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(slot = self.slot, gpu = ?self.gpu, "prover worker started");
    }
}

impl Handler<RunJob> for ProverWorker {
    type Result = ResponseActFuture<Self, Result<Vec<u8>, JobFailure>>;

    fn handle(&mut self, job: RunJob, _ctx: &mut Self::Context) -> Self::Result {
        let runner = self.runner.clone();
        let job = Job {
            id: job.id,
            input: job.input,
            slot: self.slot,
            gpu: self.gpu.clone(),
        };
        let work = async move { runner.run(&job).await };
        Box::pin(work.into_actor(self).map(|result, act, ctx| {
            if let Err(failure) = &result
                && failure.needs_new_worker()
            {
                tracing::warn!(slot = act.slot, %failure, "prover worker retires after this failure");
                ctx.stop();
            }
            result
        }))
    }
}

//! The actors of the proving orchestrator and the edges they talk through.
//!
//! The flow of one block: [`actors::BlockWatcher`] announces finalized blocks,
//! [`actors::ProverPool`] hands each job to a [`actors::ProverWorker`] that runs
//! the prover binary, and [`actors::ProofMatcher`] pairs proofs with blocks. For
//! multistep proving, [`actors::StepCollector`] groups step proofs by `group_id`.
//!
//! Core actors know nothing of NATS, HTTP or processes: they talk to the world
//! through the traits in [`edges`], so each can be tested with fakes and the
//! same actors run in one process ([`edges::local::LocalBus`]) or across hosts.

pub mod actors;
pub mod backoff;
pub mod edges;
pub mod messages;
pub mod metrics;
pub mod recent;
pub mod shutdown;

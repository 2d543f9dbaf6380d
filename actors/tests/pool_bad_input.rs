//! A burst of messages the prover calls invalid (exit code 3) is the
//! messages' fault, not the host's: each is dead-lettered at once and the
//! host keeps taking work, where a host whose jobs fail for its own
//! reasons pauses its intake (`pool_jobs.rs`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::pool_harness::{announce, await_stats, config, start};
use common::{ScriptedRunner, Step};
use orchestrator_actors::backoff::Backoff;
use orchestrator_actors::edges::JobFailure;

#[actix_rt::test]
async fn invalid_input_does_not_pause_the_hosts_intake() {
    let invalid = JobFailure::Exit {
        code: 3,
        stderr: "error: input is not valid input for this prover".into(),
    };
    let runner = Arc::new(ScriptedRunner::new(vec![Step::Fail(invalid)]));
    let mut config = config(1, false);
    // A pause would last 30 s or more: unmistakable against the guard below.
    config.retry = Backoff::new(Duration::from_secs(30), Duration::from_secs(60));
    config.pause_after_failure = true;
    let h = start(runner, config);
    announce(&h.bus, 1..=5).await;
    await_stats(&h.pool, 10, "all five dead-lettered, none retried", |s| {
        s.failed == 5 && s.retried == 0
    })
    .await;
}

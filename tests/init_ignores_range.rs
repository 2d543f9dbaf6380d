//! `init` with a `.env` shared by every role, which holds the block
//! watcher's range: `init` never reads the range, so `ORCHESTRATOR_TO_BLOCK`
//! (even without `NEXT_BLOCK`, which alone would be refused as a range
//! without a start) does not stop it.

mod nats_support;
mod support;

use std::time::Duration;

use nats_support::{Cluster, Role};

#[test]
fn init_starts_with_a_range_end_in_its_environment() {
    let cluster = Cluster::start("init-ignores-range");
    let init = Role::new("init", "init").env([("ORCHESTRATOR_TO_BLOCK", "100")]);
    let (process, status) = cluster.run_to_exit(&init, Duration::from_secs(30));
    if !status.success() {
        cluster.fail(&format!("{} exited with {status}", process.label()));
    }
}

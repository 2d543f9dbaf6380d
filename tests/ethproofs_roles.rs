//! The `ethproofs-reporter` role on a real pipeline: nats-server, anvil, a
//! block watcher, a prover running the mock with 1.1 MB proofs (through the
//! object store) and a proof matcher, reported to a local EthProofs API
//! (`tests/ethproofs_support`). The reporter is killed with SIGKILL mid-run
//! and started again: every block of the window still gets its queued,
//! proving and proved, and no proof is posted twice (but the one a crash may
//! cut between its answer and its ack, which the API answers 409). A second
//! reporter with a wrong key exits 1 after one request, with one error line.

mod ethproofs_support;
mod nats_support;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use ethproofs_support::{CLUSTER, FakeEthProofs, KEY, Request};
use nats_support::checks::window;
use nats_support::layout::{mock_prover, proof_matcher, window_watcher};
use nats_support::{BACKLOG, Cluster, FLOW_TIMEOUT, Role};

/// Characters of each mock proof string: `0x` and 1.1 MB of bytes in hex.
const PROOF_CHARS: usize = 2 + 2 * 1_100_000;

/// A reporter role; a report cut short by a crash comes back after 3 s.
fn reporter(label: &str, url: &str, key: &str) -> Role {
    Role::new(label, "ethproofs-reporter").env([
        ("ETHPROOFS_API_URL", url),
        ("ETHPROOFS_API_KEY", key),
        ("ETHPROOFS_CLUSTER_ID", &CLUSTER.to_string()),
        ("ORCHESTRATOR_ACK_WAIT", "3s"),
        ("ORCHESTRATOR_PROGRESS_INTERVAL", "1s"),
    ])
}

/// The blocks with a proved request answered 2xx.
fn proved_blocks(requests: &[Request]) -> Vec<u64> {
    requests
        .iter()
        .filter(|r| r.call == "proved" && r.status == 200)
        .map(Request::block)
        .collect()
}

#[test]
fn every_block_reported_once_across_a_reporter_crash() {
    let fake = FakeEthProofs::start();
    let cluster = Cluster::start("ethproofs-roles");
    cluster.init();
    let first = cluster.next_block_with_backlog(BACKLOG);
    // 8 blocks, 3 calls each: well under the API's 60 requests a minute.
    let window = window(first, 8);
    cluster.anvil.finalize_up_to(window.end);
    let mut reporter_process = cluster.spawn(&reporter("reporter", fake.url(), KEY));
    let _prover =
        cluster.spawn(&mock_prover("prover").env([("MOCK_PROOF_BYTES", PROOF_CHARS.to_string())]));
    let _matcher = cluster.spawn(&proof_matcher());
    let _watcher = cluster.spawn(&window_watcher(&window));
    let mut completed = cluster.tap("completed_proofs");

    fake.wait_for(FLOW_TIMEOUT, "3 blocks reported proved", |r| {
        proved_blocks(r).len() >= 3
    });
    reporter_process.kill_hard();
    // Proving goes on without the reporter; it catches up when back.
    cluster.await_completed_once(&mut completed, &window);
    reporter_process.restart();
    fake.wait_for(FLOW_TIMEOUT, "every call of every block", |r| {
        window.clone().all(|b| {
            ["queued", "proving", "proved"]
                .iter()
                .all(|call| r.iter().any(|r| r.call == *call && r.block() == b))
        })
    });
    // A late duplicate would come right after; give it a moment to show.
    std::thread::sleep(Duration::from_secs(1));
    let requests = fake.requests();

    let mut proved_posts: BTreeMap<u64, Vec<u16>> = BTreeMap::new();
    for request in requests.iter().filter(|r| r.call == "proved") {
        proved_posts
            .entry(request.block())
            .or_default()
            .push(request.status);
    }
    let twice: Vec<_> = proved_posts
        .iter()
        .filter(|(_, statuses)| statuses.len() > 1)
        .collect();
    let harmless = match twice[..] {
        [] => true,
        [(_, statuses)] => statuses[..] == [200, 409],
        _ => false,
    };
    assert!(
        harmless,
        "proofs posted more than once (block, answers): {twice:?}"
    );
    // Each block got its three calls. The report a crash cuts short comes
    // back after the ack wait, behind later ones: a queued or proving that
    // arrives after its block's proof is answered 409, and that is done too.
    for block in window.clone() {
        for call in ["queued", "proving", "proved"] {
            assert!(
                requests.iter().any(|r| r.call == call
                    && r.block() == block
                    && [200, 409].contains(&r.status)),
                "no {call} for block {block}: {:?}",
                requests
                    .iter()
                    .map(|r| (r.call.as_str(), r.block(), r.status))
                    .collect::<Vec<_>>()
            );
        }
    }
    for request in &requests {
        assert_eq!(
            request.auth.as_deref(),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(request.body["cluster_id"], CLUSTER);
    }

    // The proved body: the proof's bytes, a proving time, no cycles.
    let body = &requests
        .iter()
        .find(|r| r.call == "proved" && r.block() == first)
        .expect("proved of the first block")
        .body;
    assert!(
        body["proving_time"].as_u64().is_some_and(|t| t > 0),
        "{}",
        body["proving_time"]
    );
    assert!(
        body.get("proving_cycles").is_none(),
        "the mock writes no cycles"
    );
    let posted = base64::engine::general_purpose::STANDARD
        .decode(body["proof"].as_str().expect("proof is a string"))
        .expect("proof is base64");
    let output: serde_json::Value =
        serde_json::from_slice(&cluster.proof_get(first, None)).expect("prover output");
    let hex = output["proof"].as_str().expect("hex proof");
    assert_eq!(hex.len(), PROOF_CHARS);
    assert_eq!(posted.len(), 1_100_000, "over 1 MB");
    assert_eq!(posted, decode_hex(&hex[2..]), "base64 of the hex's bytes");

    let log = reporter_process.stderr();
    assert!(!log.contains(KEY), "the API key is in the reporter's log");

    // A wrong key: one request, one error line, exit 1, no retry storm.
    let bad = reporter("bad-key", fake.url(), "wrong-key").env([("CONSUMER_NAME", "bad-key")]);
    let (process, status) = cluster.run_to_exit(&bad, FLOW_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{}", process.stderr());
    let refused: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.auth.as_deref() == Some("Bearer wrong-key"))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let errors: Vec<String> = process
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("the API key was refused: check ETHPROOFS_API_KEY"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(!process.stderr().contains("wrong-key"));
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

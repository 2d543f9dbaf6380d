//! The malformed-message matrix: on every subject a role reads (`blocks`,
//! read by the provers and the matcher; `block_proofs`; `steps`;
//! `step_proofs`; `collected_step_proofs`) a message that is not JSON, JSON
//! of the wrong shape, a payload over 1 MB, and a block number that is
//! negative, past u64 (2^64+1) or past f64 (1e400) is published straight to
//! NATS. One cluster with every reading role runs them all: each bad
//! message is dead-lettered exactly once per consumer that reads it (so
//! twice on `blocks`), with a bounded reason naming the cause; the roles stay
//! up and go on proving good messages sent after the bad ones; and what each
//! role logged stays within a few KiB per bad message: a payload echoed into
//! the log would blow that bound.
//!
//! The server's default `max_payload` is 1 MiB, headers included, so a
//! payload over it never reaches a subject: the client refuses to send it
//! (asserted below). The largest bad payload is the largest that fits:
//! 1 MiB − 1 KiB, a 1,047,552-byte JSON string (serde quotes it whole).

mod nats_support;
mod support;

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use nats_support::layout::{STEP_COLLECTOR, mock_prover, proof_matcher, template_service};
use nats_support::tap::Record;
use nats_support::{Cluster, FLOW_TIMEOUT, LINGER, Role, RoleProcess, harness_runtime, mock_bin};
use orchestrator_actors::messages::DeadLetter;

/// The server's default `max_payload`.
const MAX_PAYLOAD: usize = 1024 * 1024;
/// The largest bad payload: under `max_payload` with room for the headers.
const OVERSIZED: usize = MAX_PAYLOAD - 1024;
/// The most a dead letter's reason may hold.
const REASON_BOUND: usize = 4096;
/// What a role may log per bad message it read, and besides them.
const LOG_PER_BAD: usize = 8 * 1024;
const LOG_BASE: usize = 32 * 1024;

/// Who gave up on a bad message: a reason names one of these causes.
const CAUSES: &[&str] = &[
    "not a block number",
    "not a block proof",
    "not a step proof",
    "exited with code 3",
];

/// One bad message: its id, subject, payload, and how many consumers must
/// dead-letter it. `marker` is found in letters written further down the
/// line (the step collector passes a group id it cannot judge on to the
/// aggregator, which then refuses the group it is in).
struct Bad {
    id: String,
    queue: &'static str,
    payload: Vec<u8>,
    readers: usize,
    marker: Option<String>,
}

/// The kinds of bad payload, each as a function of the number to put where
/// a block number goes (a JSON number as text).
const NUMBERS: &[(&str, &str)] = &[
    ("negative", "-7"),
    ("past-u64", "18446744073709551617"),
    ("past-f64", "1e400"),
];

/// Every bad message of the matrix.
fn matrix() -> Vec<Bad> {
    let oversized = format!("\"{}\"", "x".repeat(OVERSIZED - 2)).into_bytes();
    // The shape each subject carries, with `{n}` where the block goes; the
    // marker travels in a task id when the block is not the first to judge.
    let subjects: [(&str, usize, &str, &str); 5] = [
        ("blocks", 2, "{n}", r#"{"block":1}"#),
        (
            "block_proofs",
            1,
            r#"{"block":{n},"proof":"0xff","prover":"p"}"#,
            r#"{"proof":"0xff"}"#,
        ),
        (
            "steps",
            1,
            r#"{"block":{n},"step_id":"s0","payload":"x"}"#,
            r#"{"step":"s0"}"#,
        ),
        (
            "step_proofs",
            1,
            r#"{"data":{"block":{n},"proof":"0xff","prover":"p"},"task_id":"{m}","group_id":{n}}"#,
            r#"{"task_id":"s0"}"#,
        ),
        (
            "collected_step_proofs",
            1,
            r#"[{"data":{"block":{n},"proof":"0xff","prover":"p"},"task_id":"s0","group_id":{n}}]"#,
            r#"{"group":1}"#,
        ),
    ];
    let mut matrix = Vec::new();
    for (queue, readers, shape, wrong_shape) in subjects {
        let bad = |kind: &str, payload: Vec<u8>, marker: Option<String>| Bad {
            id: format!("bad-{queue}-{kind}"),
            queue,
            payload,
            readers,
            marker,
        };
        matrix.push(bad("not-json", b"not json {".to_vec(), None));
        matrix.push(bad("wrong-shape", wrong_shape.as_bytes().to_vec(), None));
        matrix.push(bad("oversized", oversized.clone(), None));
        for (kind, number) in NUMBERS {
            let marker = format!("bad-{queue}-{kind}");
            let payload = shape.replace("{n}", number).replace("{m}", &marker);
            let marker = shape.contains("{m}").then_some(marker);
            matrix.push(bad(kind, payload.into_bytes(), marker));
        }
    }
    matrix
}

/// Publishes `payload` to `modularorchestrator.<queue>` with message id `id`.
fn publish_raw(cluster: &Cluster, queue: &str, id: &str, payload: Vec<u8>) -> Result<(), String> {
    harness_runtime().block_on(async {
        let client = async_nats::connect(cluster.nats.url())
            .await
            .map_err(|e| format!("raw client: {e}"))?;
        let js = async_nats::jetstream::new(client);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let subject = format!("modularorchestrator.{queue}");
        js.publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|e| format!("publish {id}: {e}"))?
            .await
            .map_err(|e| format!("store {id}: {e}"))?;
        Ok(())
    })
}

/// A prover role running `mock-multistep-prover` from `input` to `output`.
fn multistep_prover(label: &str, input: &str, output: &str) -> Role {
    Role::new(label, "prover").env([
        ("BINARY", mock_bin("mock-multistep-prover")),
        ("INPUT_QUEUE", input.to_owned()),
        ("OUTPUT_QUEUE", output.to_owned()),
    ])
}

/// The bad messages each letter answers: its own id, or a marker in its
/// payload (a letter about a group holding a bad step proof).
fn answers<'a>(matrix: &'a [Bad], letter: &DeadLetter) -> Vec<&'a Bad> {
    matrix
        .iter()
        .filter(|bad| {
            letter.id == bad.id
                || bad
                    .marker
                    .as_ref()
                    .is_some_and(|m| letter.payload.contains(m.as_str()))
        })
        .collect()
}

#[test]
fn every_bad_message_on_every_subject_is_dead_lettered_once() {
    let cluster = Cluster::start("faults-malformed");
    cluster.init();
    let roles: Vec<(RoleProcess, &[&str])> = vec![
        (cluster.spawn(&proof_matcher()), &["blocks", "block_proofs"]),
        (cluster.spawn(&mock_prover("prover")), &["blocks"]),
        (
            cluster.spawn(&multistep_prover("step-prover", "steps", "step_proofs")),
            &["steps"],
        ),
        (
            cluster.spawn(
                &template_service("step-collector", "collector", STEP_COLLECTOR)
                    .env([("NUM_INPUTS", "1")]),
            ),
            &["step_proofs"],
        ),
        (
            cluster.spawn(&multistep_prover(
                "aggregator",
                "collected_step_proofs",
                "aggregate_proofs",
            )),
            // A step proof the collector passes on comes back here.
            &["collected_step_proofs", "step_proofs"],
        ),
    ];

    // Over max_payload: the client refuses to send it at all.
    let too_large = vec![b'x'; MAX_PAYLOAD + 1];
    if publish_raw(&cluster, "blocks", "too-large", too_large).is_ok() {
        cluster.fail("a payload over the server's max_payload was accepted");
    }
    let matrix = matrix();
    for bad in &matrix {
        cluster.check(publish_raw(
            &cluster,
            bad.queue,
            &bad.id,
            bad.payload.clone(),
        ));
    }
    // Good messages after the bad ones: the roles must still prove them.
    let good_blocks = 100..104;
    for block in good_blocks.clone() {
        let payload = block.to_string().into_bytes();
        cluster.check(publish_raw(
            &cluster,
            "blocks",
            &format!("block-{block}"),
            payload,
        ));
    }
    let step = br#"{"block":200,"step_id":"s0","payload":"tx"}"#.to_vec();
    cluster.check(publish_raw(&cluster, "steps", "good-step", step));

    let mut completed = cluster.tap("completed_proofs");
    cluster.await_completed_once(&mut completed, &good_blocks);
    let mut aggregated = cluster.tap("aggregate_proofs");
    cluster.check(
        aggregated.wait_until(FLOW_TIMEOUT, "the good step's aggregate", |r| {
            r.iter().any(|r| r.json()["block"] == 200)
        }),
    );

    let expected: usize = matrix.iter().map(|bad| bad.readers).sum();
    let mut dead = cluster.tap("dead_letter");
    cluster.check(dead.wait_until(
        FLOW_TIMEOUT,
        "a dead letter per bad message and reader",
        |r| r.len() >= expected,
    ));
    cluster.check(dead.read_for(LINGER));
    check_letters(&cluster, &matrix, &dead.records);

    for (role, queues) in &roles {
        if role.log_lines().iter().any(|l| l.contains("panicked")) {
            cluster.fail(&format!("{} panicked", role.label()));
        }
        let bad = matrix.iter().filter(|b| queues.contains(&b.queue)).count();
        let logged = role.stderr().len();
        let bound = LOG_BASE + bad * LOG_PER_BAD;
        if logged > bound {
            cluster.fail(&format!(
                "{} logged {logged} bytes for {bad} bad messages (bound {bound})",
                role.label()
            ));
        }
    }
    for (mut role, _) in roles {
        if let Some(status) = role.try_exit() {
            cluster.fail(&format!("{} exited with {status}", role.label()));
        }
    }
}

/// Each letter answers exactly one bad message and names its cause in a
/// bounded reason; each bad message has one letter per reader, from
/// distinct consumers.
fn check_letters(cluster: &Cluster, matrix: &[Bad], records: &[Record]) {
    let mut letters: BTreeMap<&str, Vec<DeadLetter>> = BTreeMap::new();
    for record in records {
        let letter: DeadLetter = cluster.check(
            serde_json::from_slice(&record.payload).map_err(|e| format!("a dead letter: {e}")),
        );
        let answered = answers(matrix, &letter);
        let [bad] = answered[..] else {
            cluster.fail(&format!(
                "dead letter {} ({}) answers {} bad messages, expected one",
                letter.id,
                letter.queue,
                answered.len()
            ));
        };
        if letter.error.len() > REASON_BOUND || !CAUSES.iter().any(|c| letter.error.contains(c)) {
            cluster.fail(&format!(
                "{}: a reason of {} bytes not naming a cause: {}",
                bad.id,
                letter.error.len(),
                &letter.error[..letter.error.len().min(300)]
            ));
        }
        letters.entry(bad.id.as_str()).or_default().push(letter);
    }
    let wrong: Vec<String> = matrix
        .iter()
        .filter_map(|bad| {
            let got = letters.get(bad.id.as_str()).map_or(&[][..], Vec::as_slice);
            let mut consumers: Vec<&str> = got.iter().map(|l| l.consumer.as_str()).collect();
            consumers.sort();
            consumers.dedup();
            (got.len() != bad.readers || consumers.len() != bad.readers)
                .then(|| format!("{}: {} letters from {consumers:?}", bad.id, got.len()))
        })
        .collect();
    if !wrong.is_empty() {
        cluster.fail(&format!(
            "expected one dead letter per bad message and reader:\n{}",
            wrong.join("\n")
        ));
    }
}

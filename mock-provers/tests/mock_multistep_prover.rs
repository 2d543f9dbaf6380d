mod common;

use common::{assert_block_proof, run};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_mock-multistep-prover");

fn step_proof(block: u64, step_id: &str) -> Value {
    json!({"data": {"block": block, "proof": "0xff", "prover": "p"}, "task_id": step_id, "group_id": block})
}

#[test]
fn partitions_a_block_into_ten_steps_by_default() {
    let run = run(BIN, "23839700", &[], &[]);
    let expected: Vec<String> = (0..10)
        .map(|i| {
            format!(r#"{{"block":23839700,"step_id":"example_step_{i}","payload":"tx_{i}_data"}}"#)
        })
        .collect();
    assert_eq!(run.success(), format!("[{}]", expected.join(",")));
    assert_eq!(run.stdout, "Running prover.\n");
}

#[test]
fn step_count_comes_from_flag_or_env() {
    let count = |run: common::Run| {
        serde_json::from_str::<Vec<Value>>(run.success())
            .unwrap()
            .len()
    };
    assert_eq!(count(run(BIN, "7", &["--steps", "3"], &[])), 3);
    assert_eq!(count(run(BIN, "7", &[], &[("MOCK_STEPS", "4")])), 4);
    assert_eq!(
        count(run(BIN, "7", &["--steps=2"], &[("MOCK_STEPS", "4")])),
        2
    );
}

#[test]
fn proves_a_step_in_the_documented_shape() {
    let input = r#"{"block":23839700,"step_id":"s0","payload":"tx_0_data"}"#;
    let run = run(BIN, input, &["--name", "p"], &[]);
    let value: Value = serde_json::from_str(run.success()).unwrap();
    let proof = value["data"]["proof"].as_str().unwrap();
    let data = format!(r#"{{"block":23839700,"proof":"{proof}","prover":"p"}}"#);
    assert_block_proof(&data, 23839700, "p");
    assert_eq!(
        run.success(),
        format!(r#"{{"data":{data},"task_id":"s0","group_id":23839700}}"#)
    );
}

#[test]
fn partition_prove_aggregate_round_trip() {
    let env = [("MOCK_PROVER_NAME", "multi"), ("MOCK_STEPS", "3")];
    let tasks: Vec<Value> = serde_json::from_str(run(BIN, "42", &[], &env).success()).unwrap();
    let proofs: Vec<Value> = tasks
        .iter()
        .map(|task| serde_json::from_str(run(BIN, &task.to_string(), &[], &env).success()).unwrap())
        .collect();
    assert_eq!(proofs[2]["task_id"], "example_step_2");
    assert_ne!(proofs[0]["data"]["proof"], proofs[1]["data"]["proof"]);
    let run = run(BIN, &Value::from(proofs).to_string(), &[], &env);
    assert_block_proof(run.success(), 42, "multi");
}

#[test]
fn aggregates_without_a_step_count_check_unless_set() {
    let proofs = json!([step_proof(9, "a"), step_proof(9, "b")]).to_string();
    assert_block_proof(
        run(BIN, &proofs, &[], &[]).success(),
        9,
        "mock-multistep-prover",
    );
    run(BIN, &proofs, &["--expect-steps", "3"], &[]).failure(1, "expected 3 step proofs");
    run(BIN, &proofs, &[], &[("MOCK_STEPS", "3")]).failure(1, "expected 3 step proofs");
}

#[test]
fn aggregate_rejects_bad_groups() {
    let mixed = json!([step_proof(9, "a"), step_proof(10, "b")]).to_string();
    run(BIN, &mixed, &[], &[]).failure(1, "different groups");
    run(BIN, "[]", &[], &[]).failure(1, "empty array");
    let dup = json!([step_proof(9, "a"), step_proof(9, "a")]).to_string();
    run(BIN, &dup, &[], &[]).failure(1, "more than once");
}

#[test]
fn failure_rate_one_fails_every_step_with_exit_1() {
    let failing = ["--failure-rate", "1"];
    run(BIN, "1", &failing, &[]).failure(1, "simulated failure");
    run(
        BIN,
        r#"{"block":1,"step_id":"s","payload":1}"#,
        &failing,
        &[],
    )
    .failure(1, "simulated failure");
    run(BIN, &json!([step_proof(1, "s")]).to_string(), &failing, &[])
        .failure(1, "simulated failure");
}

#[test]
fn bad_input_and_settings_exit_non_zero() {
    run(BIN, r#"{"block":1}"#, &[], &[]).failure(3, "a block number (partition)");
    run(BIN, "[1, 2]", &[], &[]).failure(3, "not valid input");
    run(BIN, "", &[], &[]).failure(3, "not valid input");
    run(BIN, "1", &["--steps", "0"], &[]).failure(2, "invalid --steps value '0'");
    run(BIN, "1", &["--steps", "2", "--expect-steps", "2"], &[]).failure(2, "give only one");
}

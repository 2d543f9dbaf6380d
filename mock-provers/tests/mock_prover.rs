mod common;

use common::{assert_block_proof, run};

const BIN: &str = env!("CARGO_BIN_EXE_mock-prover");
const FAST: &[&str] = &["--prove-time-ms", "0"];

#[test]
fn proves_a_block_in_the_documented_shape() {
    let run = run(BIN, "23839700", FAST, &[]);
    let proof = assert_block_proof(run.success(), 23839700, "mock-prover");
    assert_eq!(run.stdout, "Running prover.\n");
    let again = common::run(BIN, "23839700", FAST, &[]);
    assert_eq!(
        assert_block_proof(again.success(), 23839700, "mock-prover"),
        proof
    );
}

#[test]
fn name_comes_from_env_unless_the_flag_is_given() {
    let env = [
        ("MOCK_PROVER_NAME", "env-prover"),
        ("MOCK_PROVE_TIME_MS", "0"),
    ];
    assert_block_proof(run(BIN, "1", &[], &env).success(), 1, "env-prover");
    let run = run(BIN, "1", &["--name=flag-prover"], &env);
    assert_block_proof(run.success(), 1, "flag-prover");
}

#[test]
fn failure_rate_one_always_fails_with_exit_1() {
    run(
        BIN,
        "5",
        &["--failure-rate", "1.0", "--prove-time-ms", "0"],
        &[],
    )
    .failure(1, "simulated failure");
    run(BIN, "5", FAST, &[("MOCK_FAILURE_RATE", "1")]).failure(1, "simulated failure");
    // The flag wins over the env in the other direction too.
    run(
        BIN,
        "5",
        &["--failure-rate=0", "--prove-time-ms=0"],
        &[("MOCK_FAILURE_RATE", "1")],
    )
    .success();
}

#[test]
fn invalid_settings_exit_2() {
    run(BIN, "5", &["--failure-rate", "2"], &[]).failure(2, "invalid --failure-rate value '2'");
    run(BIN, "5", &[], &[("MOCK_PROVE_TIME_MS", "soon")])
        .failure(2, "invalid MOCK_PROVE_TIME_MS value 'soon'");
    run(BIN, "5", &["--steps", "3"], &[]).failure(2, "unknown argument '--steps'");
    run(BIN, "5", &["--name"], &[]).failure(2, "missing value for --name");
}

#[test]
fn bad_input_exits_3() {
    run(BIN, "not json", FAST, &[]).failure(3, "in.json");
    run(
        BIN,
        r#"{"block":1,"step_id":"s0","payload":"x"}"#,
        FAST,
        &[],
    )
    .failure(3, "not valid input");
    run(BIN, "-1", FAST, &[]).failure(3, "not valid input");
}

#[test]
fn missing_paths_exit_2() {
    let out = std::process::Command::new(BIN)
        .arg("--input-path")
        .arg("in.json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing --output-path"));
}

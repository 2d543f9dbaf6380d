use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tempfile::TempDir;

use crate::*;

#[derive(Debug, Deserialize, Serialize)]
struct BlockProof {
    block: u64,
    proof: String,
    prover: String,
}

/// Proves a bare block number, or fails when asked to.
struct TestProver {
    fail: bool,
}

impl Prover for TestProver {
    type Input = u64;
    type Output = BlockProof;
    fn prove(&mut self, block: u64) -> Result<BlockProof, BoxError> {
        if self.fail {
            return Err("no GPU available".into());
        }
        Ok(BlockProof {
            block,
            proof: "0xff".into(),
            prover: "mock-prover".into(),
        })
    }
}

fn parse(args: &[&str]) -> Result<Args, SdkError> {
    Args::parse_from(args.iter().copied())
}

fn usage_message(result: Result<Args, SdkError>) -> String {
    match result {
        Err(err @ SdkError::Usage(_)) => {
            assert_eq!(err.exit_code(), EXIT_USAGE);
            err.to_string()
        }
        other => panic!("expected a usage error, got {other:?}"),
    }
}

/// A temp dir with `in.json` holding `input`; returns the dir and both paths.
fn files(input: &str) -> (TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let input_path = dir.path().join("in.json");
    fs::write(&input_path, input).unwrap();
    let output_path = dir.path().join("out.json");
    (dir, input_path, output_path)
}

fn run_test(fail: bool, input: &Path, output: &Path) -> Result<(), SdkError> {
    let args = [
        "--input-path".as_ref(),
        input.as_os_str(),
        "--output-path".as_ref(),
        output.as_os_str(),
    ];
    run_with_args(TestProver { fail }, args)
}

#[test]
fn parses_both_flag_forms() {
    let args = parse(&["--input-path", "in.json", "--output-path=out.json"]).unwrap();
    assert_eq!(args.input_path, Path::new("in.json"));
    assert_eq!(args.output_path, Path::new("out.json"));
    assert!(args.extra.is_empty());
    args.deny_extra().unwrap();

    let args = parse(&["--output-path", "o", "--input-path=i"]).unwrap();
    assert_eq!(
        (args.input_path, args.output_path),
        ("i".into(), "o".into())
    );
}

#[test]
fn keeps_extra_flags_in_order() {
    let args = parse(&[
        "--name",
        "x",
        "--input-path",
        "i",
        "--rate=0.5",
        "--output-path",
        "o",
    ])
    .unwrap();
    let expected = [("--name", "x"), ("--rate", "0.5")].map(|(f, v)| (f.to_owned(), v.to_owned()));
    assert_eq!(args.extra, expected);
    let message = usage_message(args.deny_extra().map(|()| args.clone()));
    assert!(message.contains("unknown argument '--name'"), "{message}");
}

#[test]
fn rejects_missing_paths() {
    let message = usage_message(parse(&["--output-path", "o"]));
    assert!(message.contains("missing --input-path"), "{message}");
    assert!(message.contains(USAGE), "{message}");
    let message = usage_message(parse(&["--input-path", "i"]));
    assert!(message.contains("missing --output-path"), "{message}");
    usage_message(parse(&[]));
}

#[test]
fn rejects_missing_values() {
    let message = usage_message(parse(&["--output-path", "o", "--input-path"]));
    assert!(
        message.contains("missing value for --input-path"),
        "{message}"
    );
    let message = usage_message(parse(&["--input-path", "--output-path", "o"]));
    assert!(
        message.contains("missing value for --input-path"),
        "{message}"
    );
    let message = usage_message(parse(&["--input-path=", "--output-path", "o"]));
    assert!(
        message.contains("missing value for --input-path"),
        "{message}"
    );
}

#[test]
fn rejects_repeated_and_positional_arguments() {
    let message = usage_message(parse(&[
        "--input-path",
        "a",
        "--input-path=b",
        "--output-path",
        "o",
    ]));
    assert!(
        message.contains("--input-path given more than once"),
        "{message}"
    );
    let message = usage_message(parse(&[
        "--x",
        "1",
        "--x",
        "2",
        "--input-path",
        "i",
        "--output-path",
        "o",
    ]));
    assert!(message.contains("--x given more than once"), "{message}");
    let message = usage_message(parse(&[
        "in.json",
        "--input-path",
        "i",
        "--output-path",
        "o",
    ]));
    assert!(
        message.contains("unexpected argument 'in.json'"),
        "{message}"
    );
    usage_message(parse(&["-h", "--input-path", "i", "--output-path", "o"]));
}

#[test]
fn run_with_args_rejects_unknown_flags_before_reading_input() {
    let err = run_with_args(
        TestProver { fail: false },
        [
            "--input-path",
            "/nonexistent/in.json",
            "--output-path",
            "o",
            "--verbose",
            "1",
        ],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_USAGE, "{err}");
}

#[test]
fn success_writes_exact_json_and_no_temp_file() {
    let (dir, input, output) = files("23839700");
    run_test(false, &input, &output).unwrap();
    assert_eq!(
        fs::read_to_string(&output).unwrap(),
        r#"{"block":23839700,"proof":"0xff","prover":"mock-prover"}"#
    );
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["in.json", "out.json"]);
}

#[test]
fn success_replaces_an_existing_output_file() {
    let (_dir, input, output) = files("7");
    fs::write(&output, "stale").unwrap();
    run_test(false, &input, &output).unwrap();
    assert!(
        fs::read_to_string(&output)
            .unwrap()
            .starts_with(r#"{"block":7,"#)
    );
}

#[test]
fn invalid_json_input_exits_3() {
    let (_dir, input, output) = files("{not json");
    let err = run_test(false, &input, &output).unwrap_err();
    assert!(matches!(err, SdkError::InvalidInput { .. }), "{err:?}");
    assert_eq!(err.exit_code(), EXIT_BAD_INPUT);
    assert!(err.to_string().contains(&*input.to_string_lossy()), "{err}");
    assert!(!output.exists());
}

#[test]
fn wrong_shape_input_exits_3() {
    let (_dir, input, output) = files(r#"{"block":1}"#);
    assert_eq!(
        run_test(false, &input, &output).unwrap_err().exit_code(),
        EXIT_BAD_INPUT
    );
}

#[test]
fn missing_input_file_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("absent.json");
    let err = run_test(false, &input, &dir.path().join("out.json")).unwrap_err();
    assert!(matches!(err, SdkError::ReadInput { .. }), "{err:?}");
    assert_eq!(err.exit_code(), EXIT_BAD_INPUT);
    assert!(err.to_string().contains("absent.json"), "{err}");
}

#[test]
fn prover_error_exits_1_and_writes_nothing() {
    let (_dir, input, output) = files("23839700");
    let err = run_test(true, &input, &output).unwrap_err();
    assert_eq!(err.exit_code(), EXIT_PROVE_FAILED);
    assert_eq!(err.to_string(), "proving failed: no GPU available");
    assert!(!output.exists());
}

#[test]
fn unwritable_output_exits_4() {
    let (dir, input, _) = files("1");
    let output = dir.path().join("missing-dir").join("out.json");
    let err = run_test(false, &input, &output).unwrap_err();
    assert!(matches!(err, SdkError::WriteOutput { .. }), "{err:?}");
    assert_eq!(err.exit_code(), EXIT_OUTPUT_FAILED);
    assert!(err.to_string().contains("missing-dir"), "{err}");
}

#[test]
fn report_maps_errors_to_exit_codes() {
    assert_eq!(report(Ok(())), std::process::ExitCode::from(EXIT_OK));
    let err = SdkError::Usage("bad".into());
    assert_eq!(report(Err(err)), std::process::ExitCode::from(EXIT_USAGE));
    let err = SdkError::Prove("multi\nline".into());
    assert_eq!(
        report(Err(err)),
        std::process::ExitCode::from(EXIT_PROVE_FAILED)
    );
}

/// Set for the child run of `report_prints_a_multi_line_error_as_one_line`.
const REPORT_CHILD: &str = "PROVER_SDK_TEST_REPORT_CHILD";

/// Not a test of its own: the child process of the test below, which
/// [`report`]s a multi-line error to its real stderr.
#[test]
#[ignore = "run as a child process by report_prints_a_multi_line_error_as_one_line"]
fn report_child() {
    if std::env::var_os(REPORT_CHILD).is_some() {
        report(Err(SdkError::Prove(
            "out of memory\nwhile proving\nshard 3".into(),
        )));
        std::process::exit(0);
    }
}

#[test]
fn report_prints_a_multi_line_error_as_one_line() {
    // `report` writes to the process's stderr, which a test cannot read in
    // process: run it in a child (this test binary, only `report_child`).
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "tests::report_child", "--nocapture"])
        .env(REPORT_CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success(), "{}: {stderr}", child.status);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("memory") || line.contains("shard"))
        .collect();
    // The orchestrator keeps the last lines of stderr: the whole error
    // must be on one line, newlines folded into spaces.
    assert_eq!(
        errors,
        ["error: proving failed: out of memory while proving shard 3"],
        "stderr: {stderr:?}"
    );
}

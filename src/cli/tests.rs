//! The command line: well formed, and each command takes only its flags.

use clap::CommandFactory;

use super::*;

#[test]
fn the_command_line_is_well_formed() {
    Cli::command().debug_assert();
}

fn keys(args: &[&str]) -> Result<Vec<&'static str>, clap::Error> {
    let cli = Cli::try_parse_from(args)?;
    Ok(cli
        .command
        .overrides()
        .into_iter()
        .map(|(k, _)| k)
        .collect())
}

#[test]
fn each_command_takes_only_its_flags() {
    for refused in [
        &["orchestrator", "prover", "--from", "5"][..],
        &["orchestrator", "proof-matcher", "--binary", "/x"],
        &["orchestrator", "block-watcher", "--workers", "2"],
        &["orchestrator", "init", "--json"],
        &["orchestrator", "run", "--consumer-name", "x"],
        &["orchestrator", "step-collector", "--rpc", "http://x"],
    ] {
        let err = keys(refused).expect_err(&refused.join(" "));
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument, "{err}");
    }
}

#[test]
fn given_flags_become_their_settings() {
    let run = keys(&[
        "orchestrator",
        "run",
        "--from",
        "5",
        "--to",
        "9",
        "--gpus",
        "0,1",
        "--json",
    ])
    .unwrap();
    assert_eq!(run, ["next_block", "to_block", "gpus", "json"]);
    let prover = keys(&[
        "orchestrator",
        "dispatcher",
        "--multiple-output",
        "--stream",
        "s",
        "--consumer-name",
        "sp1",
    ])
    .unwrap();
    assert_eq!(
        prover,
        [
            "multiple_output",
            "input_stream",
            "output_stream",
            "consumer_name"
        ]
    );
    let collector = keys(&[
        "orchestrator",
        "collector",
        "--strategy",
        "Match",
        "--num-inputs",
        "3",
    ])
    .unwrap();
    assert_eq!(collector, ["strategy", "num_inputs"]);
    let get = keys(&[
        "orchestrator",
        "proof",
        "get",
        "--block",
        "7",
        "--nats",
        "nats://h:4222",
    ])
    .unwrap();
    assert_eq!(get, ["nats_url"]);
}

//! Everything that can go wrong between the orchestrator starting a prover
//! binary and the binary leaving an output file behind, with one exit code per
//! kind of failure so the orchestrator's logs say whose fault it was.

use std::path::PathBuf;
use std::process::ExitCode;

use thiserror::Error;

/// The error type a [`Prover`](crate::Prover) returns: any error at all, so
/// prover authors can use `?` on whatever their proving stack produces.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Exit code for success: the output file has been written in full.
pub const EXIT_OK: u8 = 0;
/// Exit code when [`Prover::prove`](crate::Prover::prove) returned an error.
pub const EXIT_PROVE_FAILED: u8 = 1;
/// Exit code for a bad command line (missing, repeated or unknown flags) or,
/// for binaries that take their own flags, an invalid setting.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the input file cannot be read or is not the expected JSON.
pub const EXIT_BAD_INPUT: u8 = 3;
/// Exit code when the output cannot be serialized or written.
pub const EXIT_OUTPUT_FAILED: u8 = 4;

/// Why a prover binary run failed. Each variant maps to one documented exit
/// code (see [`SdkError::exit_code`]) and displays as a single line that names
/// the file or value involved and what to do about it.
#[derive(Debug, Error)]
pub enum SdkError {
    /// The command line is wrong, or a binary-specific setting is invalid.
    /// The message is shown as is, so it should say how to fix the problem.
    #[error("{0}")]
    Usage(String),

    /// The input file could not be read.
    #[error("cannot read input file '{}': {source}; check the --input-path value", path.display())]
    ReadInput {
        /// The `--input-path` value.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The input file is not JSON of the shape this prover accepts.
    #[error(
        "input file '{}' is not valid input for this prover: {source}; it must hold the triggering message's payload",
        path.display()
    )]
    InvalidInput {
        /// The `--input-path` value.
        path: PathBuf,
        /// Where and why deserialization failed.
        source: serde_json::Error,
    },

    /// The prover itself reported a failure.
    #[error("proving failed: {0}")]
    Prove(#[source] BoxError),

    /// The prover's output could not be turned into JSON, which is a bug in
    /// the prover's output type (e.g. a map with non-string keys).
    #[error("cannot serialize the prover's output to JSON: {0}; fix the prover's Output type")]
    EncodeOutput(#[source] serde_json::Error),

    /// The output file could not be written.
    #[error(
        "cannot write output file '{}': {source}; check that its directory exists and is writable",
        path.display()
    )]
    WriteOutput {
        /// The `--output-path` value.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

impl SdkError {
    /// The process exit code for this error, one of the `EXIT_*` constants.
    /// Binaries that drive the SDK themselves use it to exit consistently.
    pub fn exit_code(&self) -> u8 {
        match self {
            SdkError::Usage(_) => EXIT_USAGE,
            SdkError::ReadInput { .. } | SdkError::InvalidInput { .. } => EXIT_BAD_INPUT,
            SdkError::Prove(_) => EXIT_PROVE_FAILED,
            SdkError::EncodeOutput(_) | SdkError::WriteOutput { .. } => EXIT_OUTPUT_FAILED,
        }
    }
}

/// Turns the result of a run into the process exit code, printing the error
/// (if any) to stderr as one `error: ...` line, where the orchestrator keeps it.
/// Use it as the last expression of `main` when not using [`run`](crate::run).
pub fn report(result: Result<(), SdkError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(err) => {
            // Error sources may span lines; the orchestrator's log is line-based.
            let line = err.to_string().replace('\n', " ");
            eprintln!("error: {line}");
            ExitCode::from(err.exit_code())
        }
    }
}

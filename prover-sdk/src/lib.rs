//! Write a prover binary for the ethproofs orchestrator: implement [`Prover`]
//! and call [`run`] from `main`.
//!
//! The orchestrator starts the binary as
//! `BINARY --input-path IN.json --output-path OUT.json`, where the input file
//! holds the triggering message's payload byte for byte. Exit code 0 with a
//! JSON output file means success; anything else is a failure, and stderr is
//! kept for the logs. This crate does that plumbing: argument parsing, JSON in
//! and out, an output file that is either complete or absent, one-line error
//! messages and distinct exit codes:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 ([`EXIT_OK`]) | output written |
//! | 1 ([`EXIT_PROVE_FAILED`]) | [`Prover::prove`] returned an error |
//! | 2 ([`EXIT_USAGE`]) | bad command line or invalid setting |
//! | 3 ([`EXIT_BAD_INPUT`]) | input file unreadable or not the expected JSON |
//! | 4 ([`EXIT_OUTPUT_FAILED`]) | output could not be serialized or written |
//!
//! A complete prover binary for the "prove a block" step:
//!
//! ```no_run
//! use prover_sdk::{BoxError, Prover};
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct BlockProof { block: u64, proof: String, prover: &'static str }
//!
//! struct MyProver;
//!
//! impl Prover for MyProver {
//!     type Input = u64; // the payload is a bare JSON block number
//!     type Output = BlockProof;
//!     fn prove(&mut self, block: u64) -> Result<BlockProof, BoxError> {
//!         Ok(BlockProof { block, proof: "0xff".into(), prover: "my-prover" })
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     prover_sdk::run(MyProver)
//! }
//! ```
//!
//! A binary with settings of its own reads them from [`Args::extra`], then
//! calls [`prove_files`] and [`report`] instead of [`run`].

mod args;
mod error;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use args::{Args, USAGE};
pub use error::{
    BoxError, EXIT_BAD_INPUT, EXIT_OK, EXIT_OUTPUT_FAILED, EXIT_PROVE_FAILED, EXIT_USAGE, SdkError,
    report,
};

/// One proving step of a prover: turns the deserialized input payload into the
/// output that is written as JSON. This is the only thing a prover author
/// implements; the SDK handles files, errors and exit codes around it.
pub trait Prover {
    /// The payload shape this prover accepts, e.g. `u64` for a bare block
    /// number. Input that does not deserialize into it exits with code 3.
    type Input: DeserializeOwned;
    /// What the prover produces; serialized with `serde_json` as the output.
    type Output: Serialize;

    /// Proves one input. An error exits with code 1 and its message on stderr,
    /// so it should say what failed and, if known, why.
    fn prove(&mut self, input: Self::Input) -> Result<Self::Output, BoxError>;
}

/// Runs a prover binary end to end on this process's command line and returns
/// the exit code for `main`. Extra flags are rejected; see [`prove_files`] for
/// binaries that take their own.
pub fn run<P: Prover>(prover: P) -> ExitCode {
    report(run_with_args(prover, std::env::args_os().skip(1)))
}

/// Like [`run`], but with explicit arguments (without the program name) and the
/// error returned instead of printed, so a run can be checked in tests.
pub fn run_with_args<P, I, S>(prover: P, args: I) -> Result<(), SdkError>
where
    P: Prover,
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args = Args::parse_from(args)?;
    args.deny_extra()?;
    prove_files(prover, &args.input_path, &args.output_path)
}

/// Reads and deserializes `input_path`, proves it, and writes the output JSON
/// to `output_path`. The output goes to a temporary file in the same
/// directory first and is then renamed into place, so the orchestrator never
/// sees a partial file even if the prover is killed mid-write. Nothing is
/// written when proving fails.
pub fn prove_files<P: Prover>(
    mut prover: P,
    input_path: &Path,
    output_path: &Path,
) -> Result<(), SdkError> {
    let bytes = fs::read(input_path).map_err(|source| SdkError::ReadInput {
        path: input_path.to_owned(),
        source,
    })?;
    let input = serde_json::from_slice(&bytes).map_err(|source| SdkError::InvalidInput {
        path: input_path.to_owned(),
        source,
    })?;
    let output = prover.prove(input).map_err(SdkError::Prove)?;
    let json = serde_json::to_vec(&output).map_err(SdkError::EncodeOutput)?;
    write_atomically(output_path, &json).map_err(|source| SdkError::WriteOutput {
        path: output_path.to_owned(),
        source,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
    })?;
    // Same directory, so the rename cannot cross filesystems; the pid keeps
    // concurrent runs writing the same output from clobbering each other.
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp_path = path.with_file_name(tmp_name);

    let written = fs::File::create(&tmp_path).and_then(|mut file| {
        file.write_all(bytes)?;
        // Without the sync a power loss after the rename could leave an empty file.
        file.sync_all()
    });
    let result = written.and_then(|()| fs::rename(&tmp_path, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    result
}

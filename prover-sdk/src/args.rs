//! The prover binary command line: `--input-path IN.json --output-path OUT.json`,
//! each also accepted as `--flag=value`. Other `--flag value` pairs are kept for
//! binaries that have settings of their own, so they need no parser of their own.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::SdkError;

/// The command line every prover binary accepts, shown in usage errors.
pub const USAGE: &str = "usage: <prover> --input-path IN.json --output-path OUT.json";

/// A parsed prover command line.
///
/// It exists separately from [`run`](crate::run) so a binary with its own
/// settings can read them from [`Args::extra`] and then call
/// [`prove_files`](crate::prove_files) with the two paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Where the orchestrator put the triggering message's payload.
    pub input_path: PathBuf,
    /// Where the prover must write its JSON output.
    pub output_path: PathBuf,
    /// Every other flag, as `("--flag", "value")` in command-line order.
    /// Flags here always take a value; there are no bare switches, because
    /// the parser cannot know which unknown flags would be switches.
    pub extra: Vec<(String, String)>,
}

impl Args {
    /// Parses the current process's command line (without the program name).
    pub fn from_env() -> Result<Args, SdkError> {
        Args::parse_from(std::env::args_os().skip(1))
    }

    /// Parses the given arguments (without the program name). Fails with
    /// [`SdkError::Usage`] if a path flag is missing, a flag is repeated or has
    /// no value, or an argument is not a `--flag`. Unknown flags are not an
    /// error here; they end up in [`Args::extra`].
    pub fn parse_from<I, S>(args: I) -> Result<Args, SdkError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut args = args.into_iter().map(|arg| {
            arg.into()
                .into_string()
                .map_err(|arg| usage(format!("argument {arg:?} is not valid UTF-8")))
        });
        let (mut input_path, mut output_path) = (None, None);
        let mut extra: Vec<(String, String)> = Vec::new();

        while let Some(arg) = args.next() {
            let arg = arg?;
            if !arg.starts_with("--") || arg.len() == 2 {
                return Err(usage(format!("unexpected argument '{arg}'")));
            }
            let (flag, value) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), value.to_owned()),
                None => match args.next().transpose()? {
                    // A following flag means this one's value was forgotten.
                    Some(value) if !value.starts_with("--") => (arg, value),
                    _ => return Err(usage(format!("missing value for {arg}"))),
                },
            };
            let slot = match flag.as_str() {
                "--input-path" => &mut input_path,
                "--output-path" => &mut output_path,
                _ => {
                    if extra.iter().any(|(seen, _)| *seen == flag) {
                        return Err(usage(format!("{flag} given more than once")));
                    }
                    extra.push((flag, value));
                    continue;
                }
            };
            if value.is_empty() {
                return Err(usage(format!("missing value for {flag}")));
            }
            if slot.replace(PathBuf::from(value)).is_some() {
                return Err(usage(format!("{flag} given more than once")));
            }
        }

        Ok(Args {
            input_path: input_path.ok_or_else(|| usage("missing --input-path".into()))?,
            output_path: output_path.ok_or_else(|| usage("missing --output-path".into()))?,
            extra,
        })
    }

    /// Fails with [`SdkError::Usage`] naming the first flag in
    /// [`Args::extra`], for binaries that take no settings of their own.
    pub fn deny_extra(&self) -> Result<(), SdkError> {
        match self.extra.first() {
            Some((flag, _)) => Err(usage(format!("unknown argument '{flag}'"))),
            None => Ok(()),
        }
    }
}

/// A usage error that also shows the expected command line, since whoever
/// reads it is configuring how the orchestrator calls the binary.
fn usage(problem: String) -> SdkError {
    SdkError::Usage(format!("{problem}; {USAGE}"))
}

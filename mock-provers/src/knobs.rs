//! The mock provers' settings, each taken from a flag or else an environment
//! variable: flags suit a hand-written command line, env vars suit a compose
//! file that runs the same binary under several names.

use std::time::Duration;

use prover_sdk::{SdkError, USAGE};

/// What differs between the mock binaries' settings.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The prover name used when neither `--name` nor `MOCK_PROVER_NAME` is set.
    pub default_name: &'static str,
    /// Prove time used when neither `--prove-time-ms` nor `MOCK_PROVE_TIME_MS` is set.
    pub default_prove_time_ms: u64,
    /// Whether `--steps`/`--expect-steps`/`MOCK_STEPS` are accepted
    /// (only the multistep prover has steps).
    pub accepts_steps: bool,
}

/// The resolved settings of one mock prover run.
#[derive(Debug, Clone, PartialEq)]
pub struct Knobs {
    /// Written as `prover` in every proof.
    pub name: String,
    /// How long each proving step sleeps, to look like real work.
    pub prove_time: Duration,
    /// Probability in `0.0..=1.0` that a step fails with exit code 1.
    pub failure_rate: f64,
    /// Step count if explicitly set: the partition size, and the number of
    /// step proofs an aggregation must receive. `None` when not set.
    pub steps: Option<usize>,
    /// How often to print a progress line on stdout and on stderr while
    /// proving; zero (the default) prints none.
    pub log_interval: Duration,
    /// The length in characters, `0x` included, of every proof string;
    /// [`DEFAULT_PROOF_LEN`] by default.
    pub proof_len: usize,
    /// How many helper child processes each proving step starts.
    pub helpers: usize,
}

/// The length of the default proof string: `0x` and 16 hex digits.
pub const DEFAULT_PROOF_LEN: usize = 18;

/// More helpers than this is a typo, not a test: refuse to fork that many.
pub const MAX_HELPERS: usize = 64;

/// One setting: the flags that set it and the env var used when none is given.
struct Knob {
    flags: &'static [&'static str],
    env: &'static str,
}

const NAME: Knob = Knob {
    flags: &["--name"],
    env: "MOCK_PROVER_NAME",
};
const PROVE_TIME: Knob = Knob {
    flags: &["--prove-time-ms"],
    env: "MOCK_PROVE_TIME_MS",
};
const FAILURE_RATE: Knob = Knob {
    flags: &["--failure-rate"],
    env: "MOCK_FAILURE_RATE",
};
// Partition and aggregation are separate runs of the same binary, usually
// configured alike, so one count serves both; --expect-steps reads better
// on an aggregation-only command line.
const STEPS: Knob = Knob {
    flags: &["--steps", "--expect-steps"],
    env: "MOCK_STEPS",
};
const LOG_INTERVAL: Knob = Knob {
    flags: &["--log-interval-ms"],
    env: "MOCK_LOG_INTERVAL_MS",
};
const PROOF_BYTES: Knob = Knob {
    flags: &["--proof-bytes"],
    env: "MOCK_PROOF_BYTES",
};
const HELPERS: Knob = Knob {
    flags: &["--helpers"],
    env: "MOCK_HELPERS",
};

impl Knobs {
    /// Resolves the settings from the command line's extra flags (see
    /// [`prover_sdk::Args::extra`]) and the process environment. Unknown
    /// flags and invalid values fail with [`SdkError::Usage`] (exit code 2).
    pub fn from_args(spec: &Spec, extra: &[(String, String)]) -> Result<Knobs, SdkError> {
        Knobs::resolve(spec, extra, |var| std::env::var(var).ok())
    }

    /// [`Knobs::from_args`] with the environment passed in, so tests need not
    /// mutate the real (process-global) one.
    fn resolve(
        spec: &Spec,
        extra: &[(String, String)],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Knobs, SdkError> {
        let mut knobs = vec![
            &NAME,
            &PROVE_TIME,
            &FAILURE_RATE,
            &LOG_INTERVAL,
            &PROOF_BYTES,
            &HELPERS,
        ];
        if spec.accepts_steps {
            knobs.push(&STEPS);
        }
        if let Some((flag, _)) = extra
            .iter()
            .find(|(flag, _)| !knobs.iter().any(|k| k.flags.contains(&flag.as_str())))
        {
            let accepted: Vec<_> = knobs
                .iter()
                .map(|k| format!("[{} VALUE]", k.flags[0]))
                .collect();
            return Err(SdkError::Usage(format!(
                "unknown argument '{flag}'; {USAGE} {}",
                accepted.join(" ")
            )));
        }
        let lookup = Lookup { extra, env };

        let name = lookup.get(&NAME, "a non-empty prover name", |v| {
            Some(v.to_owned()).filter(|name| !name.is_empty())
        })?;
        let prove_time_ms = lookup.get(&PROVE_TIME, "a whole number of milliseconds", |v| {
            v.parse().ok()
        })?;
        let failure_rate = lookup.get(&FAILURE_RATE, "a probability from 0.0 to 1.0", |v| {
            v.parse().ok().filter(|rate| (0.0..=1.0).contains(rate))
        })?;
        let steps = if spec.accepts_steps {
            lookup.get(&STEPS, "a whole number of steps, at least 1", |v| {
                v.parse().ok().filter(|&n| n >= 1)
            })?
        } else {
            None
        };
        let log_interval_ms = lookup.get(
            &LOG_INTERVAL,
            "a whole number of milliseconds (0 = no progress lines)",
            |v| v.parse().ok(),
        )?;
        let proof_len = lookup.get(
            &PROOF_BYTES,
            &format!("a whole number of characters, at least {DEFAULT_PROOF_LEN}"),
            |v| v.parse().ok().filter(|&n| n >= DEFAULT_PROOF_LEN),
        )?;
        let helpers = lookup.get(
            &HELPERS,
            &format!("a whole number of helper processes from 0 to {MAX_HELPERS}"),
            |v| v.parse().ok().filter(|&n| n <= MAX_HELPERS),
        )?;

        Ok(Knobs {
            name: name.unwrap_or_else(|| spec.default_name.to_owned()),
            prove_time: Duration::from_millis(prove_time_ms.unwrap_or(spec.default_prove_time_ms)),
            failure_rate: failure_rate.unwrap_or(0.0),
            steps,
            log_interval: Duration::from_millis(log_interval_ms.unwrap_or(0)),
            proof_len: proof_len.unwrap_or(DEFAULT_PROOF_LEN),
            helpers: helpers.unwrap_or(0),
        })
    }
}

/// Where knob values come from; `env` is a parameter so tests can fake it.
struct Lookup<'a, E> {
    extra: &'a [(String, String)],
    env: E,
}

impl<E: Fn(&str) -> Option<String>> Lookup<'_, E> {
    /// The knob's value from its flag, else its env var (empty counts as
    /// unset, as compose files write `VAR=` for "not set"), else `None`.
    /// `parse` returns `None` for an invalid value, reported as not `expected`.
    fn get<T>(
        &self,
        knob: &Knob,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, SdkError> {
        let mut given = self
            .extra
            .iter()
            .filter(|(flag, _)| knob.flags.contains(&flag.as_str()));
        let (source, value) = match (given.next(), given.next()) {
            (Some((a, _)), Some((b, _))) => {
                return Err(SdkError::Usage(format!(
                    "{a} and {b} set the same thing; give only one"
                )));
            }
            (Some((flag, value)), None) => (flag.as_str(), value.clone()),
            (None, _) => match (self.env)(knob.env).filter(|value| !value.is_empty()) {
                Some(value) => (knob.env, value),
                None => return Ok(None),
            },
        };
        match parse(&value) {
            Some(parsed) => Ok(Some(parsed)),
            None => Err(SdkError::Usage(format!(
                "invalid {source} value '{value}': expected {expected}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests;

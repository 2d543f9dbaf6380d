//! Settings, layered: built-in defaults, then a TOML file, then environment
//! variables (the original template's names where it had one), then flags.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use config::{Config, Environment, File};
use serde::Deserialize;

/// The public endpoint used when no `L1_RPC` is given.
pub const DEFAULT_RPC: &str = "https://ethereum-rpc.publicnode.com";

/// Every setting: its key (TOML and internal name) and its environment
/// variable. Template names are kept as they were so its `.env` files work.
pub const KEYS: &[(&str, &str)] = &[
    ("l1_rpc", "L1_RPC"),
    ("binary", "BINARY"),
    ("next_block", "NEXT_BLOCK"),
    ("workers", "ORCHESTRATOR_WORKERS"),
    ("to_block", "ORCHESTRATOR_TO_BLOCK"),
    ("every", "ORCHESTRATOR_EVERY"),
    ("max_attempts", "ORCHESTRATOR_MAX_ATTEMPTS"),
    ("job_timeout", "ORCHESTRATOR_JOB_TIMEOUT"),
    ("poll_interval", "ORCHESTRATOR_POLL_INTERVAL"),
    ("retry_delay", "ORCHESTRATOR_RETRY_DELAY"),
    ("multistep", "ORCHESTRATOR_MULTISTEP"),
    ("steps", "ORCHESTRATOR_STEPS"),
    ("json", "ORCHESTRATOR_JSON"),
    ("work_dir", "ORCHESTRATOR_WORK_DIR"),
];

/// What `orchestrator run` needs to know. Defaults suit a first run against
/// mainnet with the bundled mock prover.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Ethereum JSON-RPC endpoint to watch.
    pub l1_rpc: String,
    /// Prover binary; `None`: the bundled mock prover.
    pub binary: Option<PathBuf>,
    /// First block; `None`: the finalized head at start.
    pub next_block: Option<u64>,
    /// Last block of a fixed range; the run exits once it is proved.
    pub to_block: Option<u64>,
    /// Prove only blocks with `block % every == 0`.
    pub every: u64,
    /// Prover processes run at once.
    pub workers: usize,
    /// Attempts per job before it is reported failed.
    pub max_attempts: u32,
    /// A prover run longer than this is killed and counts as failed.
    #[serde(with = "duration")]
    pub job_timeout: Duration,
    /// Time between finalized-head polls.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// Delay before the first retry of a failed job; doubles each time.
    #[serde(with = "duration")]
    pub retry_delay: Duration,
    /// Partition → prove steps → aggregate, instead of one proof per block.
    pub multistep: bool,
    /// Steps per block in multistep mode.
    pub steps: usize,
    /// Print completed proofs as JSON lines.
    pub json: bool,
    /// Where job input/output files live; default: the system temp dir.
    pub work_dir: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            l1_rpc: DEFAULT_RPC.to_owned(),
            binary: None,
            next_block: None,
            to_block: None,
            every: 1,
            workers: 1,
            max_attempts: 3,
            job_timeout: Duration::from_secs(30 * 60),
            poll_interval: Duration::from_secs(12),
            retry_delay: Duration::from_secs(5),
            multistep: false,
            steps: 10,
            json: false,
            work_dir: None,
        }
    }
}

/// A flag given on the command line, as a key and its value.
pub type Override = (&'static str, config::Value);

impl Settings {
    /// Layers `file` (if given, it must exist; else `orchestrator.toml` if
    /// present), the environment in `env`, then `flags`; then validates.
    pub fn load(
        file: Option<&PathBuf>,
        env: &HashMap<String, String>,
        flags: Vec<Override>,
    ) -> anyhow::Result<Self> {
        let file_source = match file {
            Some(path) => File::from(path.as_path()).required(true),
            None => File::with_name("orchestrator.toml").required(false),
        };
        let from_env: HashMap<String, String> = KEYS
            .iter()
            .filter_map(|(key, var)| {
                env.get(*var)
                    .filter(|v| !v.is_empty())
                    .map(|v| (key.to_string(), v.clone()))
            })
            .collect();
        let mut builder = Config::builder().add_source(file_source).add_source(
            Environment::default()
                .source(Some(from_env))
                .try_parsing(true),
        );
        for (key, value) in flags {
            builder = builder
                .set_override(key, value)
                .expect("override keys are plain names");
        }
        let settings: Settings =
            builder
                .build()
                .and_then(Config::try_deserialize)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "invalid configuration: {e} (see the configuration table in README.md)"
                    )
                })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("workers", self.workers as u64),
            ("every", self.every),
            ("max_attempts", self.max_attempts as u64),
            ("steps", self.steps as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                bail!(
                    "invalid configuration: {key} is 0; expected a whole number of at least 1 ({})",
                    env_name(key)
                );
            }
        }
        if let (Some(from), Some(to)) = (self.next_block, self.to_block)
            && to < from
        {
            bail!(
                "invalid configuration: the range ends (to_block {to}) before it starts (next_block {from}); expected --to >= --from"
            );
        }
        if self.to_block.is_some() && self.next_block.is_none() {
            bail!(
                "invalid configuration: a range needs a start: give --from / NEXT_BLOCK with --to"
            );
        }
        if self.job_timeout.is_zero() {
            bail!(
                "invalid configuration: job_timeout is 0; expected a duration such as 30m ({})",
                env_name("job_timeout")
            );
        }
        Ok(())
    }

    /// The prover binary: the configured one, or the bundled mock next to
    /// this executable.
    pub fn prover_binary(&self) -> anyhow::Result<PathBuf> {
        if let Some(binary) = &self.binary {
            return Ok(binary.clone());
        }
        let name = if self.multistep {
            "mock-multistep-prover"
        } else {
            "mock-prover"
        };
        let exe = std::env::current_exe().context("locating the orchestrator executable")?;
        let dir = exe
            .parent()
            .context("the orchestrator executable has no directory")?;
        Ok(dir.join(name))
    }
}

/// The environment variable of `key`.
pub fn env_name(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(k, _)| *k == key)
        .map_or("", |(_, var)| var)
}

/// Durations as humantime strings (`90s`, `5m`, `500ms`) or whole seconds.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
                D::Error::custom(format!(
                    "{t:?} is not a duration ({e}); expected e.g. 90s, 5m, 500ms"
                ))
            }),
        }
    }

    #[allow(dead_code)]
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_then_environment_then_flags() {
        let dir = std::env::temp_dir().join(format!("orch-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("orchestrator.toml");
        std::fs::write(
            &file,
            "workers = 3\nevery = 10\nl1_rpc = \"http://file:8545\"\njob_timeout = \"2m\"\n",
        )
        .unwrap();
        let env = env(&[
            ("ORCHESTRATOR_EVERY", "100"),
            ("L1_RPC", "http://env:8545"),
            ("NEXT_BLOCK", "23839700"),
        ]);
        let flags = vec![("l1_rpc", config::Value::from("http://flag:8545"))];
        let s = Settings::load(Some(&file), &env, flags).unwrap();
        assert_eq!(
            (s.workers, s.every, s.l1_rpc.as_str()),
            (3, 100, "http://flag:8545")
        );
        assert_eq!(
            (s.next_block, s.job_timeout),
            (Some(23839700), Duration::from_secs(120))
        );
        assert_eq!(s.max_attempts, 3, "default kept");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Settings::load(None, &env(&[("ORCHESTRATOR_WORKERS", "many")]), vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("workers"), "{err}");
        let err = Settings::load(None, &env(&[("ORCHESTRATOR_WORKERS", "0")]), vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("workers is 0"), "{err}");
        let err = Settings::load(None, &env(&[("ORCHESTRATOR_JOB_TIMEOUT", "soon")]), vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"soon\" is not a duration"), "{err}");
        let range = vec![
            ("next_block", config::Value::from(10u64)),
            ("to_block", config::Value::from(5u64)),
        ];
        assert!(
            Settings::load(None, &env(&[]), range)
                .unwrap_err()
                .to_string()
                .contains("before it starts")
        );
    }
}

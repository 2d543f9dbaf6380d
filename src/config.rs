//! Settings, layered: built-in defaults, then a TOML file, then environment
//! variables (the original template's names where it had one), then flags.
//! Each setting's key, variable, flag, default and meaning are declared once,
//! in [`keys::SETTINGS`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use config::{Config, Environment, File};
use orchestrator_actors::actors::Backlog;
use orchestrator_actors::edges::Follow;
use secrecy::SecretString;
use serde::Deserialize;

/// The public endpoint used when no `L1_RPC` is given.
pub const DEFAULT_RPC: &str = "https://ethereum-rpc.publicnode.com";

pub mod keys;

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
    /// The head the watcher follows: finalized, safe or latest.
    pub follow: String,
    /// Time between head polls; `None`: the watcher's smart schedule.
    #[serde(deserialize_with = "duration::option")]
    pub poll_interval: Option<Duration>,
    /// When blocks pile up: `all` (oldest first) or `newest`.
    pub backlog: String,
    /// With `backlog = newest`: blocks older than this are skipped.
    #[serde(with = "duration")]
    pub max_age: Duration,
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
    /// NATS server URL(s); roles need it, `run` uses it when set.
    pub nats_url: Option<String>,
    /// NATS user name (with `nats_password`).
    pub nats_user: Option<String>,
    /// NATS password.
    pub nats_password: Option<SecretString>,
    /// NATS authentication token.
    pub nats_token: Option<SecretString>,
    /// NATS credentials file (JWT + NKey).
    pub nats_creds: Option<PathBuf>,
    /// CA certificate that signs the NATS server's TLS certificate.
    pub nats_ca: Option<PathBuf>,
    /// JetStream stream the queues live in.
    pub input_stream: String,
    /// Must name the same stream as `input_stream` (the template sets both).
    pub output_stream: Option<String>,
    /// Queues a role consumes, comma separated; default depends on the role.
    pub input_queue: Option<String>,
    /// Queue a role publishes to; default depends on the role.
    pub output_queue: Option<String>,
    /// Durable consumer name: same name splits work, distinct names fan out.
    pub consumer_name: Option<String>,
    /// How the prover binary is called; only `JsonExecutor` exists.
    pub executor_type: String,
    /// `collector` strategy: `Block`, `Proof` or `Match`.
    pub strategy: Option<String>,
    /// Step proofs per group for the `Match` strategy.
    pub num_inputs: Option<usize>,
    /// Accepted for template compatibility; see README.
    pub single_output: Option<bool>,
    /// The prover's output is an array whose elements are published one by one.
    pub multiple_output: bool,
    /// Accepted for template compatibility; see README.
    pub collect_timeout_period_millis: Option<u64>,
    /// Port of the operators' HTTP endpoints (`src/http.rs`); unset: off
    /// in `run`, any free port in a role.
    pub metrics_port: Option<u16>,
    /// Accepted for template compatibility; only `NatsBasic`.
    pub message_bus_type: Option<String>,
    /// Accepted for template compatibility; only `Nats`.
    pub storage_type: Option<String>,
    /// Provers the matcher waits for before a block counts as fully proved,
    /// comma separated.
    pub expected_provers: Option<String>,
    /// A group of step proofs still incomplete after this is dead-lettered.
    #[serde(with = "duration")]
    pub group_timeout: Duration,
    /// GPU devices, comma separated: one worker per device, each prover
    /// started with `CUDA_VISIBLE_DEVICES` set to its device.
    pub gpus: Option<String>,
    /// How long NATS waits for an ack or an in-progress ack before it hands
    /// a job to another consumer.
    #[serde(with = "duration")]
    pub ack_wait: Duration,
    /// How often a running job tells NATS it is still alive.
    #[serde(with = "duration")]
    pub progress_interval: Duration,
    /// Messages larger than this many bytes go through the JetStream object
    /// store, with a small reference message on the queue.
    pub inline_payload_limit: usize,
    /// How long payloads stored in the object store are kept.
    #[serde(with = "duration")]
    pub payload_retention: Duration,
    /// Largest message in bytes, stored or inline; a larger output is
    /// dead-lettered at once instead of filling the object store.
    pub max_payload: usize,
    /// Copies a NATS cluster keeps of the stream and the buckets; set by
    /// `init`, and by a role that has to create them itself.
    pub replicas: usize,
    /// EthProofs API base URL; with the key and the cluster id, proofs are
    /// reported (`src/ethproofs.rs`).
    pub ethproofs_api_url: Option<String>,
    /// EthProofs API key: secret, never logged.
    pub ethproofs_api_key: Option<SecretString>,
    /// The team's cluster id on EthProofs.
    pub ethproofs_cluster_id: Option<u64>,
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
            follow: "finalized".to_owned(),
            poll_interval: None,
            backlog: "all".to_owned(),
            max_age: Duration::from_secs(120),
            retry_delay: Duration::from_secs(5),
            multistep: false,
            steps: 10,
            json: false,
            work_dir: None,
            nats_url: None,
            nats_user: None,
            nats_password: None,
            nats_token: None,
            nats_creds: None,
            nats_ca: None,
            input_stream: "modularorchestrator".to_owned(),
            output_stream: None,
            input_queue: None,
            output_queue: None,
            consumer_name: None,
            executor_type: "JsonExecutor".to_owned(),
            strategy: None,
            num_inputs: None,
            single_output: None,
            multiple_output: false,
            collect_timeout_period_millis: None,
            metrics_port: None,
            message_bus_type: None,
            storage_type: None,
            expected_provers: None,
            group_timeout: orchestrator_actors::actors::DEFAULT_GROUP_TIMEOUT,
            gpus: None,
            ack_wait: Duration::from_secs(30),
            progress_interval: Duration::from_secs(10),
            inline_payload_limit: 512 * 1024,
            payload_retention: Duration::from_secs(7 * 24 * 3600),
            max_payload: 64 * 1024 * 1024,
            replicas: 1,
            ethproofs_api_url: None,
            ethproofs_api_key: None,
            ethproofs_cluster_id: None,
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
        let from_env: HashMap<String, String> = keys::keys()
            .filter_map(|(key, var)| {
                env.get(var)
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
                        "invalid configuration: {} (see the configuration table in README.md)",
                        name_env_var(e.to_string())
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
        let accepted = [
            (
                "executor_type",
                Some(self.executor_type.as_str()),
                "JsonExecutor",
            ),
            (
                "message_bus_type",
                self.message_bus_type.as_deref(),
                "NatsBasic",
            ),
            ("storage_type", self.storage_type.as_deref(), "Nats"),
        ];
        for (key, value, only) in accepted {
            if let Some(value) = value.filter(|v| *v != only) {
                bail!(
                    "invalid configuration: {} is {value:?}; the only supported value is {only}",
                    env_name(key)
                );
            }
        }
        if let Some(output) = self
            .output_stream
            .as_deref()
            .filter(|o| *o != self.input_stream)
        {
            bail!(
                "invalid configuration: OUTPUT_STREAM {output:?} differs from INPUT_STREAM {:?}; one stream carries every queue, so set both to the same name",
                self.input_stream
            );
        }
        // JetStream keeps at most 5 copies of a stream.
        if !(1..=5).contains(&self.replicas) {
            bail!(
                "invalid configuration: replicas ({}) is {}; expected 1 to 5, and at most the number of servers in the NATS cluster (1 for a single server)",
                env_name("replicas"),
                self.replicas
            );
        }
        if self.nats_user.is_some() != self.nats_password.is_some() {
            bail!(
                "invalid configuration: NATS_USER and NATS_PASSWORD go together; set both or neither"
            );
        }
        if self.num_inputs == Some(0) {
            bail!("invalid configuration: NUM_INPUTS is 0; expected a whole number of at least 1");
        }
        if self.progress_interval.is_zero() || self.progress_interval >= self.ack_wait {
            bail!(
                "invalid configuration: progress_interval ({}) is {:?} and ack_wait ({}) is {:?}; expected 0 < progress_interval < ack_wait, or running jobs are handed to a second host",
                env_name("progress_interval"),
                self.progress_interval,
                env_name("ack_wait"),
                self.ack_wait
            );
        }
        if self.inline_payload_limit == 0 || self.inline_payload_limit > self.max_payload {
            bail!(
                "invalid configuration: inline_payload_limit ({}) is {} and max_payload ({}) is {}; expected 1 <= inline_payload_limit <= max_payload",
                env_name("inline_payload_limit"),
                self.inline_payload_limit,
                env_name("max_payload"),
                self.max_payload
            );
        }
        if let Some(list) = &self.gpus {
            let gpus = self.gpu_list();
            if gpus.is_empty() {
                bail!(
                    "invalid configuration: ORCHESTRATOR_GPUS is {list:?}; expected device numbers or UUIDs, comma separated, e.g. 0,1,2,3"
                );
            }
            if self.workers != 1 && self.workers != gpus.len() {
                bail!(
                    "invalid configuration: workers is {} but {} GPUs are listed ({list}); --gpus runs one worker per device, so drop --workers",
                    self.workers,
                    gpus.len()
                );
            }
        }
        self.follow()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {} {e}", env_name("follow")))?;
        self.backlog()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {} {e}", env_name("backlog")))?;
        let durations = [
            ("job_timeout", self.job_timeout, "30m"),
            (
                "poll_interval",
                self.poll_interval.unwrap_or(Duration::MAX),
                "12s",
            ),
            ("max_age", self.max_age, "2m"),
            ("group_timeout", self.group_timeout, "30m"),
        ];
        for (key, value, example) in durations {
            if value.is_zero() {
                bail!(
                    "invalid configuration: {key} is 0; expected a duration such as {example} ({})",
                    env_name(key)
                );
            }
        }
        Ok(())
    }

    /// The head to follow, from `follow`.
    pub fn follow(&self) -> Result<Follow, String> {
        self.follow.parse()
    }

    /// The backlog policy, from `backlog` and `max_age`.
    pub fn backlog(&self) -> Result<Backlog, String> {
        match self.backlog.to_ascii_lowercase().as_str() {
            "all" => Ok(Backlog::All),
            "newest" => Ok(Backlog::Newest {
                max_age: self.max_age,
            }),
            other => Err(format!(
                "{other:?} is not a backlog policy: use all (every block, oldest first) or newest (newest first, skipping blocks older than max_age)"
            )),
        }
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

impl Settings {
    /// Where job files live: `work_dir`, or a folder in the temp dir.
    pub fn job_dir(&self) -> PathBuf {
        self.work_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("orchestrator-jobs"))
    }

    /// The GPU devices of `gpus`, in order; empty when unset.
    pub fn gpu_list(&self) -> Vec<String> {
        split_list(self.gpus.as_deref())
    }

    /// The provers a block waits for, from `expected_provers`.
    pub fn expected_provers(&self) -> Vec<String> {
        split_list(self.expected_provers.as_deref())
    }
}

/// The non-empty, trimmed items of a comma-separated list.
fn split_list(list: Option<&str>) -> Vec<String> {
    list.iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `message` with the environment variable added after the key it names.
fn name_env_var(message: String) -> String {
    match keys::keys().find(|(key, _)| message.contains(&format!("`{key}`"))) {
        Some((key, var)) => message.replace(&format!("`{key}`"), &format!("`{key}` ({var})")),
        None => message,
    }
}

/// The environment variable of `key`.
pub fn env_name(key: &str) -> &'static str {
    keys::keys()
        .find(|(k, _)| *k == key)
        .map_or("", |(_, var)| var)
}

/// Durations as humantime strings (`90s`, `5m`, `500ms`) or whole seconds.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }

    /// An optional duration: absent or empty is `None`.
    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Text(t)) if t.trim().is_empty() => Ok(None),
            Some(raw) => parse(raw).map(Some),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse(Raw::deserialize(d)?)
    }

    fn parse<E: Error>(raw: Raw) -> Result<Duration, E> {
        match raw {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
                E::custom(format!(
                    "{t:?} is not a duration ({e}); expected e.g. 90s, 5m, 500ms"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests;

//! The command line. Flags win over the environment and the config file;
//! see [`crate::config`] for the layering.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Override;

/// Turns finalized Ethereum blocks into zk proofs with any prover binary.
#[derive(Debug, Parser)]
#[command(name = "orchestrator", version, about)]
pub struct Cli {
    /// TOML file with settings (default: ./orchestrator.toml if present).
    #[arg(long, global = true, env = "ORCHESTRATOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ORCHESTRATOR_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Standalone mode: watch, prove, match and print, all in this process.
    Run(Flags),
    /// Create the JetStream stream and key-value bucket (idempotent).
    Init(Flags),
    /// Role: announce finalized blocks on NATS.
    BlockWatcher(Flags),
    /// Role: run a pool of prover workers on jobs from NATS.
    Prover(Flags),
    /// Role: match block proofs to blocks and publish completed proofs.
    ProofMatcher(Flags),
    /// Role: group step proofs by group_id for the aggregator.
    StepCollector(Flags),
    /// Template name: block-watcher, proof-matcher or step-collector, by STRATEGY=Block|Proof|Match.
    Collector(Flags),
    /// Template name of the prover role.
    Dispatcher(Flags),
    /// Proofs stored on NATS.
    Proof(ProofArgs),
}

/// `orchestrator proof ...`.
#[derive(Debug, Args)]
pub struct ProofArgs {
    /// What to do with stored proofs.
    #[command(subcommand)]
    pub action: ProofAction,
}

/// What `orchestrator proof` can do.
#[derive(Debug, Subcommand)]
pub enum ProofAction {
    /// Print a prover's output for a block byte for byte, whether it was
    /// sent inline or through the object store.
    Get(ProofGet),
}

/// `orchestrator proof get`: which proof, and the usual NATS settings.
#[derive(Debug, Args)]
pub struct ProofGet {
    /// The block whose proof to print.
    #[arg(long)]
    pub block: u64,
    /// The prover whose proof to print; needed when several provers proved the block.
    #[arg(long)]
    pub prover: Option<String>,
    #[command(flatten)]
    pub flags: Flags,
}

impl Command {
    /// The flags of whichever command was given.
    pub fn flags(&self) -> &Flags {
        match self {
            Command::Run(f)
            | Command::Init(f)
            | Command::BlockWatcher(f)
            | Command::Prover(f)
            | Command::ProofMatcher(f)
            | Command::StepCollector(f)
            | Command::Collector(f)
            | Command::Dispatcher(f) => f,
            Command::Proof(ProofArgs {
                action: ProofAction::Get(get),
            }) => &get.flags,
        }
    }
}

/// Flags shared by every command; each also has a TOML key and an
/// environment variable (see README.md). A command ignores the flags it has
/// no use for.
#[derive(Debug, Default, Args)]
pub struct Flags {
    /// Ethereum JSON-RPC endpoint [env: L1_RPC].
    #[arg(long, help_heading = "Chain")]
    pub rpc: Option<String>,
    /// First block to prove (default: the finalized head) [env: NEXT_BLOCK].
    #[arg(long, help_heading = "Chain")]
    pub from: Option<u64>,
    /// Last block to prove; the run exits when the range is done [env: ORCHESTRATOR_TO_BLOCK].
    #[arg(long, help_heading = "Chain")]
    pub to: Option<u64>,
    /// Prove only blocks with `block % N == 0` [env: ORCHESTRATOR_EVERY].
    #[arg(long, value_name = "N", help_heading = "Chain")]
    pub every: Option<u64>,
    /// Time between finalized-head polls, e.g. 12s [env: ORCHESTRATOR_POLL_INTERVAL].
    #[arg(long, value_name = "DURATION", help_heading = "Chain")]
    pub poll_interval: Option<String>,

    /// Prover binary, run as `BINARY --input-path IN --output-path OUT` [env: BINARY].
    #[arg(long, help_heading = "Prover")]
    pub binary: Option<PathBuf>,
    /// Prover processes run at once [env: ORCHESTRATOR_WORKERS].
    #[arg(long, help_heading = "Prover")]
    pub workers: Option<u64>,
    /// Attempts per job before it is reported failed [env: ORCHESTRATOR_MAX_ATTEMPTS].
    #[arg(long, help_heading = "Prover")]
    pub max_attempts: Option<u64>,
    /// Kill a prover run after this long, e.g. 30m [env: ORCHESTRATOR_JOB_TIMEOUT].
    #[arg(long, value_name = "DURATION", help_heading = "Prover")]
    pub job_timeout: Option<String>,
    /// First retry delay of a failed job; doubles each time [env: ORCHESTRATOR_RETRY_DELAY].
    #[arg(long, value_name = "DURATION", help_heading = "Prover")]
    pub retry_delay: Option<String>,
    /// Directory for job input and output files [env: ORCHESTRATOR_WORK_DIR].
    #[arg(long, help_heading = "Prover")]
    pub work_dir: Option<PathBuf>,
    /// The output is a JSON array; publish each element [env: MULTIPLE_OUTPUT].
    #[arg(long, help_heading = "Prover")]
    pub multiple_output: bool,
    /// Multistep proving: partition, prove steps, aggregate [env: ORCHESTRATOR_MULTISTEP].
    #[arg(long, help_heading = "Prover")]
    pub multistep: bool,
    /// Steps per block with `run --multistep` (passed to the bundled mock as
    /// MOCK_STEPS); the step collector's default group size [env: ORCHESTRATOR_STEPS].
    #[arg(long, help_heading = "Prover")]
    pub steps: Option<u64>,
    /// GPU devices, e.g. 0,1,2,3: one worker per device, each prover with
    /// CUDA_VISIBLE_DEVICES set to its own [env: ORCHESTRATOR_GPUS].
    #[arg(long, value_name = "LIST", help_heading = "Prover")]
    pub gpus: Option<String>,

    /// NATS server URL; roles need it, `run` puts NATS at its edges with it [env: NATS_URL].
    #[arg(long, help_heading = "NATS")]
    pub nats: Option<String>,
    /// NATS credentials file [env: NATS_CREDS]; user, password and token only by env or file.
    #[arg(long, help_heading = "NATS")]
    pub nats_creds: Option<PathBuf>,
    /// CA certificate for the NATS server's TLS [env: NATS_CA].
    #[arg(long, help_heading = "NATS")]
    pub nats_ca: Option<PathBuf>,
    /// JetStream stream [env: INPUT_STREAM, OUTPUT_STREAM].
    #[arg(long, help_heading = "NATS")]
    pub stream: Option<String>,
    /// Queues to consume, comma separated [env: INPUT_QUEUE].
    #[arg(long, help_heading = "NATS")]
    pub input_queue: Option<String>,
    /// Queue to publish to [env: OUTPUT_QUEUE].
    #[arg(long, help_heading = "NATS")]
    pub output_queue: Option<String>,
    /// Durable consumer name: same name splits work, distinct names fan out [env: CONSUMER_NAME].
    #[arg(long, help_heading = "NATS")]
    pub consumer_name: Option<String>,
    /// Time NATS waits for an ack before redelivering, e.g. 30s [env: ORCHESTRATOR_ACK_WAIT].
    #[arg(long, value_name = "DURATION", help_heading = "NATS")]
    pub ack_wait: Option<String>,
    /// How often a running job is reported alive; below the ack wait [env: ORCHESTRATOR_PROGRESS_INTERVAL].
    #[arg(long, value_name = "DURATION", help_heading = "NATS")]
    pub progress_interval: Option<String>,
    /// Messages over this many bytes go through the object store [env: ORCHESTRATOR_INLINE_PAYLOAD_LIMIT].
    #[arg(long, value_name = "BYTES", help_heading = "NATS")]
    pub inline_payload_limit: Option<u64>,
    /// How long payloads in the object store are kept, e.g. 7d [env: ORCHESTRATOR_PAYLOAD_RETENTION].
    #[arg(long, value_name = "DURATION", help_heading = "NATS")]
    pub payload_retention: Option<String>,
    /// Largest output in bytes; larger ones are dead-lettered at once [env: ORCHESTRATOR_MAX_PAYLOAD].
    #[arg(long, value_name = "BYTES", help_heading = "NATS")]
    pub max_payload: Option<u64>,

    /// Collector strategy: Block, Proof or Match [env: STRATEGY].
    #[arg(long, help_heading = "Collector")]
    pub strategy: Option<String>,
    /// Step proofs per group (Match strategy) [env: NUM_INPUTS].
    #[arg(long, help_heading = "Collector")]
    pub num_inputs: Option<u64>,
    /// Give up a step group still incomplete after this, e.g. 30m [env: ORCHESTRATOR_GROUP_TIMEOUT].
    #[arg(long, value_name = "DURATION", help_heading = "Collector")]
    pub group_timeout: Option<String>,
    /// Provers whose proofs make a block count as fully proved in the
    /// matcher's log, comma separated; every proof is published either way
    /// [env: ORCHESTRATOR_EXPECTED_PROVERS].
    #[arg(long, help_heading = "Collector")]
    pub expected_provers: Option<String>,

    /// `run` only: print completed proofs as JSON lines [env: ORCHESTRATOR_JSON].
    #[arg(long, help_heading = "Output")]
    pub json: bool,
}

impl Flags {
    /// The flags that were given, as settings overrides.
    pub fn overrides(&self) -> Vec<Override> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let text = [
            ("l1_rpc", self.rpc.clone()),
            ("binary", path(&self.binary)),
            ("job_timeout", self.job_timeout.clone()),
            ("poll_interval", self.poll_interval.clone()),
            ("retry_delay", self.retry_delay.clone()),
            ("work_dir", path(&self.work_dir)),
            ("nats_url", self.nats.clone()),
            ("nats_creds", path(&self.nats_creds)),
            ("nats_ca", path(&self.nats_ca)),
            ("input_stream", self.stream.clone()),
            ("output_stream", self.stream.clone()),
            ("input_queue", self.input_queue.clone()),
            ("output_queue", self.output_queue.clone()),
            ("consumer_name", self.consumer_name.clone()),
            ("strategy", self.strategy.clone()),
            ("expected_provers", self.expected_provers.clone()),
            ("group_timeout", self.group_timeout.clone()),
            ("gpus", self.gpus.clone()),
            ("ack_wait", self.ack_wait.clone()),
            ("progress_interval", self.progress_interval.clone()),
            ("payload_retention", self.payload_retention.clone()),
        ];
        let numbers = [
            ("workers", self.workers),
            ("next_block", self.from),
            ("to_block", self.to),
            ("every", self.every),
            ("max_attempts", self.max_attempts),
            ("steps", self.steps),
            ("num_inputs", self.num_inputs),
            ("inline_payload_limit", self.inline_payload_limit),
            ("max_payload", self.max_payload),
        ];
        let switches = [
            ("multistep", self.multistep),
            ("json", self.json),
            ("multiple_output", self.multiple_output),
        ];
        let text = text
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, config::Value::from(v))));
        let numbers = numbers
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, config::Value::from(v))));
        let switches = switches
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(k, _)| (k, config::Value::from(true)));
        text.chain(numbers).chain(switches).collect()
    }
}

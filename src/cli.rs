//! The command line. Flags win over the environment and the config file;
//! see [`crate::config`] for the layering.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser, Subcommand, ValueEnum};

use crate::config::Override;
use crate::config::keys::{SETTINGS, flag_help};

/// Turns finalized Ethereum blocks into zk proofs with any prover binary.
#[derive(Debug, Parser)]
#[command(name = "orchestrator", version, about)]
pub struct Cli {
    #[arg(long, help = flag_help("config"), global = true, env = "ORCHESTRATOR_CONFIG", hide_env = true)]
    pub config: Option<PathBuf>,
    #[arg(long, help = flag_help("log-format"), global = true, hide_env = true, value_enum, default_value_t = LogFormat::Text, env = "ORCHESTRATOR_LOG_FORMAT")]
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

/// What to run. Each command takes only the flags it uses; every setting
/// can also come from the environment or the TOML file (see README.md).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Standalone mode: watch, prove, match and print, all in this process.
    Run(RunArgs),
    /// Create the JetStream stream and buckets (idempotent).
    Init(InitArgs),
    /// Role: announce finalized blocks on NATS.
    BlockWatcher(WatcherArgs),
    /// Role: run a pool of prover workers on jobs from NATS.
    Prover(ProverArgs),
    /// Role: match block proofs to blocks and publish completed proofs.
    ProofMatcher(MatcherArgs),
    /// Role: group step proofs by group_id for the aggregator.
    StepCollector(StepCollectorArgs),
    /// Template name: block-watcher, proof-matcher or step-collector, by STRATEGY=Block|Proof|Match.
    Collector(CollectorArgs),
    /// Template name of the prover role.
    Dispatcher(ProverArgs),
    /// Proofs stored on NATS.
    Proof(ProofArgs),
    /// One screen of the cluster's state on NATS: stream, consumers, last
    /// block and proof, dead letters, buckets.
    Status(StatusArgs),
    /// Role: report queued, proving and proved blocks to EthProofs.
    EthproofsReporter(ReporterArgs),
}

/// The flags given on the command line, as settings overrides: each flag
/// sets the keys [`SETTINGS`] declares for it, so the flag → key mapping is
/// written once. Flags no setting declares (`proof get --block`) are read
/// from the parsed [`Cli`] instead.
pub fn overrides(matches: &ArgMatches) -> Vec<Override> {
    let mut out = Vec::new();
    let mut level = Some(matches);
    while let Some(matches) = level {
        for id in matches.ids() {
            let id = id.as_str();
            if matches.value_source(id) != Some(ValueSource::CommandLine) {
                continue;
            }
            let Some(value) = matches
                .get_raw(id)
                .and_then(|mut raw| raw.next())
                .map(|raw| raw.to_string_lossy().into_owned())
            else {
                continue;
            };
            let flag = id.replace('_', "-");
            for key in SETTINGS
                .iter()
                .filter(|s| s.flag == Some(flag.as_str()))
                .filter_map(|s| s.key)
            {
                out.push((key, config::Value::from(value.clone())));
            }
        }
        level = matches.subcommand().map(|(_, sub)| sub);
    }
    out
}

/// Which blocks to announce.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Chain")]
pub struct ChainFlags {
    #[arg(long, help = flag_help("rpc"))]
    pub rpc: Option<String>,
    #[arg(long, help = flag_help("from"))]
    pub from: Option<u64>,
    #[arg(long, help = flag_help("to"))]
    pub to: Option<u64>,
    #[arg(long, help = flag_help("every"), value_name = "N")]
    pub every: Option<u64>,
    #[arg(long, help = flag_help("follow"), value_name = "HEAD")]
    pub follow: Option<String>,
    #[arg(long, help = flag_help("poll-interval"), value_name = "DURATION")]
    pub poll_interval: Option<String>,
}

/// What to do when blocks pile up: the watcher's order and the prover
/// pool's skipping of stale blocks, so both the watcher and prover roles
/// take it.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Backlog")]
pub struct BacklogFlags {
    #[arg(long, help = flag_help("backlog"), value_name = "POLICY")]
    pub backlog: Option<String>,
    #[arg(long, help = flag_help("max-age"), value_name = "DURATION")]
    pub max_age: Option<String>,
}

/// How prover binaries are run.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Prover")]
pub struct ProverFlags {
    #[arg(long, help = flag_help("binary"))]
    pub binary: Option<PathBuf>,
    #[arg(long, help = flag_help("workers"))]
    pub workers: Option<u64>,
    #[arg(long, help = flag_help("gpus"), value_name = "LIST")]
    pub gpus: Option<String>,
    #[arg(long, help = flag_help("max-attempts"))]
    pub max_attempts: Option<u64>,
    #[arg(long, help = flag_help("job-timeout"), value_name = "DURATION")]
    pub job_timeout: Option<String>,
    #[arg(long, help = flag_help("retry-delay"), value_name = "DURATION")]
    pub retry_delay: Option<String>,
    #[arg(long, help = flag_help("work-dir"))]
    pub work_dir: Option<PathBuf>,
}

/// How to reach NATS and how messages travel on it.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "NATS")]
pub struct NatsFlags {
    #[arg(long, help = flag_help("nats"))]
    pub nats: Option<String>,
    #[arg(long, help = flag_help("nats-creds"))]
    pub nats_creds: Option<PathBuf>,
    #[arg(long, help = flag_help("nats-ca"))]
    pub nats_ca: Option<PathBuf>,
    #[arg(long, help = flag_help("stream"))]
    pub stream: Option<String>,
    #[arg(long, help = flag_help("ack-wait"), value_name = "DURATION")]
    pub ack_wait: Option<String>,
    #[arg(long, help = flag_help("progress-interval"), value_name = "DURATION")]
    pub progress_interval: Option<String>,
    #[arg(long, help = flag_help("inline-payload-limit"), value_name = "BYTES")]
    pub inline_payload_limit: Option<u64>,
    #[arg(long, help = flag_help("payload-retention"), value_name = "DURATION")]
    pub payload_retention: Option<String>,
    #[arg(long, help = flag_help("max-payload"), value_name = "BYTES")]
    pub max_payload: Option<u64>,
}

/// Which queues a role reads and writes, and as whom.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Queues")]
pub struct QueueFlags {
    #[arg(long, help = flag_help("input-queue"))]
    pub input_queue: Option<String>,
    #[arg(long, help = flag_help("output-queue"))]
    pub output_queue: Option<String>,
    #[arg(long, help = flag_help("consumer-name"))]
    pub consumer_name: Option<String>,
}

/// How step proofs are grouped (multistep proving).
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Steps")]
pub struct StepFlags {
    #[arg(long, help = flag_help("steps"))]
    pub steps: Option<u64>,
    #[arg(long, help = flag_help("group-timeout"), value_name = "DURATION")]
    pub group_timeout: Option<String>,
}

/// What the proof matcher logs.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Matching")]
pub struct MatchFlags {
    #[arg(long, help = flag_help("expected-provers"))]
    pub expected_provers: Option<String>,
}

/// Where operators read metrics and health (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Metrics")]
pub struct ServeFlags {
    #[arg(long, help = flag_help("metrics-port"), value_name = "PORT")]
    pub metrics_port: Option<u64>,
}

/// Where proofs are reported (the API key only by env or file).
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "EthProofs")]
pub struct EthProofsFlags {
    #[arg(long, help = flag_help("ethproofs-api-url"), value_name = "URL")]
    pub ethproofs_api_url: Option<String>,
    #[arg(long, help = flag_help("ethproofs-cluster-id"), value_name = "ID")]
    pub ethproofs_cluster_id: Option<u64>,
}

/// `orchestrator ethproofs-reporter`.
#[derive(Debug, Default, Args)]
pub struct ReporterArgs {
    #[command(flatten)]
    pub ethproofs: EthProofsFlags,
    #[command(flatten)]
    pub nats: NatsFlags,
    #[command(flatten)]
    pub queues: QueueFlags,
    #[command(flatten)]
    pub serve: ServeFlags,
}

/// `orchestrator run`.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub chain: ChainFlags,
    #[command(flatten)]
    pub backlog: BacklogFlags,
    #[command(flatten)]
    pub prover: ProverFlags,
    #[arg(long, help = flag_help("multistep"), help_heading = "Steps")]
    pub multistep: bool,
    #[command(flatten)]
    pub steps: StepFlags,
    #[command(flatten)]
    pub matching: MatchFlags,
    // With --nats, the run's queues live on JetStream instead of in this process.
    #[command(flatten)]
    pub nats: NatsFlags,
    #[arg(long, help = flag_help("json"), help_heading = "Output")]
    pub json: bool,
    #[command(flatten)]
    pub serve: ServeFlags,
    #[command(flatten)]
    pub ethproofs: EthProofsFlags,
}

/// `orchestrator init`: a named consumer given with its queues is created too.
#[derive(Debug, Default, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub nats: NatsFlags,
    #[command(flatten)]
    pub queues: QueueFlags,
    #[arg(long, help = flag_help("replicas"), help_heading = "NATS")]
    pub replicas: Option<u64>,
}

/// `orchestrator block-watcher`.
#[derive(Debug, Default, Args)]
pub struct WatcherArgs {
    #[command(flatten)]
    pub chain: ChainFlags,
    #[command(flatten)]
    pub backlog: BacklogFlags,
    #[command(flatten)]
    pub nats: NatsFlags,
    #[command(flatten)]
    pub queues: QueueFlags,
    #[command(flatten)]
    pub serve: ServeFlags,
}

/// `orchestrator prover` (the template's `dispatcher`).
#[derive(Debug, Default, Args)]
pub struct ProverArgs {
    #[command(flatten)]
    pub prover: ProverFlags,
    #[command(flatten)]
    pub backlog: BacklogFlags,
    #[arg(long, help = flag_help("multiple-output"), help_heading = "Prover")]
    pub multiple_output: bool,
    #[command(flatten)]
    pub nats: NatsFlags,
    #[command(flatten)]
    pub queues: QueueFlags,
    #[command(flatten)]
    pub serve: ServeFlags,
}

/// `orchestrator proof-matcher`.
#[derive(Debug, Default, Args)]
pub struct MatcherArgs {
    #[command(flatten)]
    pub matching: MatchFlags,
    #[command(flatten)]
    pub nats: NatsFlags,
    #[command(flatten)]
    pub queues: QueueFlags,
    #[command(flatten)]
    pub serve: ServeFlags,
}

/// `orchestrator step-collector`.
#[derive(Debug, Default, Args)]
pub struct StepCollectorArgs {
    #[arg(long, help = flag_help("num-inputs"), help_heading = "Steps")]
    pub num_inputs: Option<u64>,
    #[command(flatten)]
    pub steps: StepFlags,
    #[command(flatten)]
    pub nats: NatsFlags,
    #[command(flatten)]
    pub queues: QueueFlags,
    #[command(flatten)]
    pub serve: ServeFlags,
}

/// The template's `collector`: whichever role STRATEGY names, so it takes
/// the flags of all three.
#[derive(Debug, Default, Args)]
pub struct CollectorArgs {
    #[arg(long, help = flag_help("strategy"))]
    pub strategy: Option<String>,
    #[command(flatten)]
    pub chain: ChainFlags,
    #[command(flatten)]
    pub backlog: BacklogFlags,
    #[command(flatten)]
    pub matching: MatchFlags,
    #[command(flatten)]
    pub collector: StepCollectorArgs,
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
    pub nats: NatsFlags,
    /// The queue holding block proofs (default block_proofs) [env: INPUT_QUEUE].
    #[arg(long, help_heading = "Queues")]
    pub input_queue: Option<String>,
}

/// `orchestrator status`: the usual NATS settings, and the output format.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub nats: NatsFlags,
    /// Print the status as one JSON object [env: ORCHESTRATOR_JSON].
    #[arg(long, help_heading = "Output")]
    pub json: bool,
}

#[cfg(test)]
mod tests;

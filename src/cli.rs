//! The command line. Flags win over the environment and the config file;
//! see [`crate::config`] for the layering.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Override;
use crate::config::keys::flag_help;

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

impl Command {
    /// The flags that were given, as settings overrides.
    pub fn overrides(&self) -> Vec<Override> {
        let mut out = Vec::new();
        match self {
            Command::Run(a) => a.push(&mut out),
            Command::Init(a) => a.push(&mut out),
            Command::BlockWatcher(a) => a.push(&mut out),
            Command::Prover(a) | Command::Dispatcher(a) => a.push(&mut out),
            Command::ProofMatcher(a) => a.push(&mut out),
            Command::StepCollector(a) => a.push(&mut out),
            Command::Collector(a) => a.push(&mut out),
            Command::Proof(ProofArgs {
                action: ProofAction::Get(a),
            }) => a.push(&mut out),
            Command::Status(a) => a.push(&mut out),
            Command::EthproofsReporter(a) => a.push(&mut out),
        }
        out
    }
}

/// A group of flags that turns the given ones into settings overrides.
trait Push {
    fn push(&self, out: &mut Vec<Override>);
}

fn text(out: &mut Vec<Override>, key: &'static str, value: &Option<String>) {
    if let Some(value) = value {
        out.push((key, config::Value::from(value.clone())));
    }
}

fn path(out: &mut Vec<Override>, key: &'static str, value: &Option<PathBuf>) {
    text(out, key, &value.as_ref().map(|p| p.display().to_string()));
}

fn number(out: &mut Vec<Override>, key: &'static str, value: Option<u64>) {
    if let Some(value) = value {
        out.push((key, config::Value::from(value)));
    }
}

fn switch(out: &mut Vec<Override>, key: &'static str, on: bool) {
    if on {
        out.push((key, config::Value::from(true)));
    }
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
    #[arg(long, help = flag_help("poll-interval"), value_name = "DURATION")]
    pub poll_interval: Option<String>,
}

impl Push for ChainFlags {
    fn push(&self, out: &mut Vec<Override>) {
        text(out, "l1_rpc", &self.rpc);
        number(out, "next_block", self.from);
        number(out, "to_block", self.to);
        number(out, "every", self.every);
        text(out, "poll_interval", &self.poll_interval);
    }
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

impl Push for ProverFlags {
    fn push(&self, out: &mut Vec<Override>) {
        path(out, "binary", &self.binary);
        number(out, "workers", self.workers);
        text(out, "gpus", &self.gpus);
        number(out, "max_attempts", self.max_attempts);
        text(out, "job_timeout", &self.job_timeout);
        text(out, "retry_delay", &self.retry_delay);
        path(out, "work_dir", &self.work_dir);
    }
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

impl Push for NatsFlags {
    fn push(&self, out: &mut Vec<Override>) {
        text(out, "nats_url", &self.nats);
        path(out, "nats_creds", &self.nats_creds);
        path(out, "nats_ca", &self.nats_ca);
        text(out, "input_stream", &self.stream);
        text(out, "output_stream", &self.stream);
        text(out, "ack_wait", &self.ack_wait);
        text(out, "progress_interval", &self.progress_interval);
        number(out, "inline_payload_limit", self.inline_payload_limit);
        text(out, "payload_retention", &self.payload_retention);
        number(out, "max_payload", self.max_payload);
    }
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

impl Push for QueueFlags {
    fn push(&self, out: &mut Vec<Override>) {
        text(out, "input_queue", &self.input_queue);
        text(out, "output_queue", &self.output_queue);
        text(out, "consumer_name", &self.consumer_name);
    }
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

impl Push for StepFlags {
    fn push(&self, out: &mut Vec<Override>) {
        number(out, "steps", self.steps);
        text(out, "group_timeout", &self.group_timeout);
    }
}

/// What the proof matcher logs.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Matching")]
pub struct MatchFlags {
    #[arg(long, help = flag_help("expected-provers"))]
    pub expected_provers: Option<String>,
}

impl Push for MatchFlags {
    fn push(&self, out: &mut Vec<Override>) {
        text(out, "expected_provers", &self.expected_provers);
    }
}

/// Where operators read metrics and health (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Metrics")]
pub struct ServeFlags {
    #[arg(long, help = flag_help("metrics-port"), value_name = "PORT")]
    pub metrics_port: Option<u64>,
}

impl Push for ServeFlags {
    fn push(&self, out: &mut Vec<Override>) {
        number(out, "metrics_port", self.metrics_port);
    }
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

impl Push for EthProofsFlags {
    fn push(&self, out: &mut Vec<Override>) {
        text(out, "ethproofs_api_url", &self.ethproofs_api_url);
        number(out, "ethproofs_cluster_id", self.ethproofs_cluster_id);
    }
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

impl Push for ReporterArgs {
    fn push(&self, out: &mut Vec<Override>) {
        self.ethproofs.push(out);
        self.nats.push(out);
        self.queues.push(out);
        self.serve.push(out);
    }
}

/// `orchestrator run`.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub chain: ChainFlags,
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

impl Push for RunArgs {
    fn push(&self, out: &mut Vec<Override>) {
        self.chain.push(out);
        self.prover.push(out);
        switch(out, "multistep", self.multistep);
        self.steps.push(out);
        self.matching.push(out);
        self.nats.push(out);
        switch(out, "json", self.json);
        self.serve.push(out);
        self.ethproofs.push(out);
    }
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

impl Push for InitArgs {
    fn push(&self, out: &mut Vec<Override>) {
        self.nats.push(out);
        self.queues.push(out);
        number(out, "replicas", self.replicas);
    }
}

/// `orchestrator block-watcher`.
#[derive(Debug, Default, Args)]
pub struct WatcherArgs {
    #[command(flatten)]
    pub chain: ChainFlags,
    #[command(flatten)]
    pub nats: NatsFlags,
    #[command(flatten)]
    pub queues: QueueFlags,
    #[command(flatten)]
    pub serve: ServeFlags,
}

impl Push for WatcherArgs {
    fn push(&self, out: &mut Vec<Override>) {
        self.chain.push(out);
        self.nats.push(out);
        self.queues.push(out);
        self.serve.push(out);
    }
}

/// `orchestrator prover` (the template's `dispatcher`).
#[derive(Debug, Default, Args)]
pub struct ProverArgs {
    #[command(flatten)]
    pub prover: ProverFlags,
    #[arg(long, help = flag_help("multiple-output"), help_heading = "Prover")]
    pub multiple_output: bool,
    #[command(flatten)]
    pub nats: NatsFlags,
    #[command(flatten)]
    pub queues: QueueFlags,
    #[command(flatten)]
    pub serve: ServeFlags,
}

impl Push for ProverArgs {
    fn push(&self, out: &mut Vec<Override>) {
        self.prover.push(out);
        switch(out, "multiple_output", self.multiple_output);
        self.nats.push(out);
        self.queues.push(out);
        self.serve.push(out);
    }
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

impl Push for MatcherArgs {
    fn push(&self, out: &mut Vec<Override>) {
        self.matching.push(out);
        self.nats.push(out);
        self.queues.push(out);
        self.serve.push(out);
    }
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

impl Push for StepCollectorArgs {
    fn push(&self, out: &mut Vec<Override>) {
        number(out, "num_inputs", self.num_inputs);
        self.steps.push(out);
        self.nats.push(out);
        self.queues.push(out);
        self.serve.push(out);
    }
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
    pub matching: MatchFlags,
    #[command(flatten)]
    pub collector: StepCollectorArgs,
}

impl Push for CollectorArgs {
    fn push(&self, out: &mut Vec<Override>) {
        text(out, "strategy", &self.strategy);
        self.chain.push(out);
        self.matching.push(out);
        self.collector.push(out);
    }
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

impl Push for ProofGet {
    fn push(&self, out: &mut Vec<Override>) {
        self.nats.push(out);
        text(out, "input_queue", &self.input_queue);
    }
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

impl Push for StatusArgs {
    fn push(&self, out: &mut Vec<Override>) {
        self.nats.push(out);
        switch(out, "json", self.json);
    }
}

#[cfg(test)]
mod tests;

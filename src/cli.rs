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
    Run(RunArgs),
}

/// Flags of `orchestrator run`; each one also has a TOML key and an
/// environment variable (see README.md).
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// Ethereum JSON-RPC endpoint [env: L1_RPC].
    #[arg(long)]
    pub rpc: Option<String>,
    /// Prover binary, run as `BINARY --input-path IN --output-path OUT` [env: BINARY].
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Prover processes run at once [env: ORCHESTRATOR_WORKERS].
    #[arg(long)]
    pub workers: Option<u64>,
    /// First block to prove (default: the finalized head) [env: NEXT_BLOCK].
    #[arg(long)]
    pub from: Option<u64>,
    /// Last block to prove; the run exits when the range is done [env: ORCHESTRATOR_TO_BLOCK].
    #[arg(long)]
    pub to: Option<u64>,
    /// Prove only blocks with `block % N == 0` [env: ORCHESTRATOR_EVERY].
    #[arg(long, value_name = "N")]
    pub every: Option<u64>,
    /// Attempts per job before it is reported failed [env: ORCHESTRATOR_MAX_ATTEMPTS].
    #[arg(long)]
    pub max_attempts: Option<u64>,
    /// Kill a prover run after this long, e.g. 30m [env: ORCHESTRATOR_JOB_TIMEOUT].
    #[arg(long, value_name = "DURATION")]
    pub job_timeout: Option<String>,
    /// Time between finalized-head polls, e.g. 12s [env: ORCHESTRATOR_POLL_INTERVAL].
    #[arg(long, value_name = "DURATION")]
    pub poll_interval: Option<String>,
    /// First retry delay of a failed job; doubles each time [env: ORCHESTRATOR_RETRY_DELAY].
    #[arg(long, value_name = "DURATION")]
    pub retry_delay: Option<String>,
    /// Multistep proving: partition, prove steps, aggregate [env: ORCHESTRATOR_MULTISTEP].
    #[arg(long)]
    pub multistep: bool,
    /// Steps per block in multistep mode [env: ORCHESTRATOR_STEPS].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Print completed proofs as JSON lines [env: ORCHESTRATOR_JSON].
    #[arg(long)]
    pub json: bool,
    /// Directory for job input and output files [env: ORCHESTRATOR_WORK_DIR].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

impl RunArgs {
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
        ];
        let numbers = [
            ("workers", self.workers),
            ("next_block", self.from),
            ("to_block", self.to),
            ("every", self.every),
            ("max_attempts", self.max_attempts),
            ("steps", self.steps),
        ];
        let switches = [("multistep", self.multistep), ("json", self.json)];
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

//! The `orchestrator` binary: parses the command line, loads settings and
//! starts the requested mode or role.

mod cli;
mod config;
mod dashboard;
mod ethproofs;
mod http;
mod proof_get;
mod report;
mod roles;
mod standalone;
mod status;
mod wiring;

use std::collections::HashMap;
use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use cli::{Cli, Command, LogFormat, ProofAction, ProofArgs};
use orchestrator_actors::shutdown::Shutdown;
use report::{Progress, RangeProgress};
use roles::Role;
use tokio::signal::unix::SignalKind;
use tracing_subscriber::EnvFilter;

/// How long a stopping process waits for its running jobs to be handed back.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(cli.log_format);
    // Running provers die with the actor system: dropping a job's future
    // kills its process group (and the kernel kills them if we are killed).
    let result = start(&cli, &matches);
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The variables that only say which blocks to prove: ignored by the
/// commands that never read them, so a `.env` shared by every role (with a
/// range for the block watcher) cannot stop those from starting.
const RANGE_ENV: [&str; 2] = ["NEXT_BLOCK", "ORCHESTRATOR_TO_BLOCK"];

/// Whether `command` reads the block range (`--from`/`--to` and their
/// variables). The collector may be the block watcher, so it counts.
fn reads_range(command: &Command) -> bool {
    matches!(
        command,
        Command::Run(_) | Command::BlockWatcher(_) | Command::Collector(_)
    )
}

fn start(cli: &Cli, matches: &ArgMatches) -> anyhow::Result<i32> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    if !reads_range(&cli.command) {
        for var in RANGE_ENV {
            env.remove(var);
        }
    }
    let mut settings = config::Settings::load(cli.config.as_ref(), &env, cli::overrides(matches))?;
    let role = match &cli.command {
        Command::Run(args) => {
            standalone::nats_only_if_asked(&mut settings, args.nats.nats.is_some(), &env);
            let plan = standalone::Plan::new(settings)?;
            let progress = plan.progress();
            return run_system(progress, |shutdown| plan.start(shutdown));
        }
        Command::Proof(ProofArgs {
            action: ProofAction::Get(get),
        }) => return proof_get::run(get, &settings).map(|()| 0),
        Command::Status(_) => return status::run(&settings),
        Command::Init(_) => Role::Init,
        Command::BlockWatcher(_) => Role::BlockWatcher,
        Command::Prover(_) | Command::Dispatcher(_) => Role::Prover,
        Command::ProofMatcher(_) => Role::ProofMatcher,
        Command::StepCollector(_) => Role::StepCollector,
        Command::Collector(_) => Role::from_strategy(settings.strategy.as_deref())?,
        Command::EthproofsReporter(_) => Role::EthProofsReporter,
    };
    run_system(RangeProgress::default(), move |shutdown| {
        roles::start(role, settings, shutdown)
    })
}

/// Runs an actix system (on a single-threaded tokio runtime) that `setup`
/// fills with actors, until something asks `Shutdown` for an exit: a
/// signal, a finished range, a failed setup or a vital actor that died.
/// Then the process drains (running jobs handed back, bounded by
/// [`DRAIN_LIMIT`]) and stops with the code asked for.
fn run_system<F>(progress: RangeProgress, setup: impl FnOnce(Shutdown) -> F) -> anyhow::Result<i32>
where
    F: Future<Output = anyhow::Result<()>> + 'static,
{
    install_crypto_provider();
    let system = actix::System::with_tokio_rt(|| {
        // One thread: the actors already share the system's one arbiter
        // thread, and on a multi-threaded runtime every I/O event (a pipe, a
        // prover's exit, a NATS reply) was noticed on a worker thread and
        // handed over to it. Measured with `make bench`: role mode 15-35%
        // more blocks/s, standalone with 2 workers about 12% less time per
        // job; the heavy work (proving) is in other processes.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    });
    let shutdown = Shutdown::new();
    let setup = setup(shutdown.clone());
    system.block_on(async {
        exit_on_signal(shutdown.clone(), progress);
        actix::spawn(stop_when_asked(shutdown.clone()));
        actix::spawn(async move {
            if let Err(error) = setup.await {
                eprintln!("error: {error:#}");
                shutdown.exit(startup_failure_code(&error), "start-up failed");
            }
        });
    });
    system.run_with_code().context("the actor system failed")
}

/// The exit code of a start-up that failed with `error`: 1 when the
/// settings were usable but NATS said no (refused credentials, JetStream
/// unavailable); 2, the code of usage errors, when a setting itself is
/// unusable (e.g. a file it names cannot be read). A supervisor or script
/// can then tell "fix the configuration" from "could not run".
fn startup_failure_code(error: &anyhow::Error) -> i32 {
    use orchestrator_actors::edges::nats::NatsError;
    match error.chain().find_map(|e| e.downcast_ref::<NatsError>()) {
        Some(NatsError::File { .. }) | None => 2,
        Some(_) => 1,
    }
}

/// The one place the actor system is stopped: once an exit is asked for,
/// waits for the tracked work (running jobs handed back), then stops with
/// the exit's code.
async fn stop_when_asked(shutdown: Shutdown) {
    shutdown.triggered().await;
    if !shutdown.drain(DRAIN_LIMIT).await {
        tracing::warn!(limit = ?DRAIN_LIMIT, "running jobs were not all handed back in time; NATS redelivers them after the ack wait");
    }
    let code = shutdown.reason().map_or(0, |exit| exit.code);
    actix::System::current().stop_with_code(code);
}

fn init_logging(format: LogFormat) {
    let mut directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    // The NATS client's debug logs print its connect options, passwords
    // included, and it logs every failed connection attempt itself, beside
    // the events our connection callback logs once: off unless asked for
    // by name.
    if !directives.contains("async_nats") {
        directives.push_str(",async_nats=off");
    }
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A closed stderr must not turn every log line into a panic.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// async-nats and reqwest each bring a rustls crypto provider; pick one
/// before any TLS connection is made.
fn install_crypto_provider() {
    let _ = async_nats::rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// On Ctrl-C or SIGTERM: asks for an exit with code 0, or, for a range run
/// with blocks left, with 128 + the signal's number (130 for SIGINT, 143 for
/// SIGTERM), the shell's code for "killed by that signal", so a script or a
/// job runner never takes an unfinished backfill for a finished one. Call
/// inside the system.
fn exit_on_signal(shutdown: Shutdown, progress: RangeProgress) {
    actix::spawn(async move {
        let mut term = match tokio::signal::unix::signal(SignalKind::terminate()) {
            Ok(term) => term,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                return;
            }
        };
        let signal = tokio::select! {
            _ = tokio::signal::ctrl_c() => SignalKind::interrupt().as_raw_value(),
            _ = term.recv() => SignalKind::terminate().as_raw_value(),
            // Another exit is under way: this task has nothing left to do.
            _ = shutdown.triggered() => return,
        };
        tracing::info!("signal received; stopping");
        shutdown.exit(signal_exit_code(progress.get(), signal), "signal");
    });
}

/// The exit code of a run stopped by `signal` with `progress` (`None`: not
/// a range run); logs what a range run leaves undone.
fn signal_exit_code(progress: Option<Progress>, signal: i32) -> i32 {
    match progress {
        Some(p) if p.left > 0 => {
            tracing::warn!(
                left = p.left,
                total = p.total,
                proved = p.proved,
                failed = p.failed,
                "range run stopped by a signal with {} of {} blocks left unproved",
                p.left,
                p.total
            );
            128 + signal
        }
        _ => 0,
    }
}

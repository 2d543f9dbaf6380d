//! The `orchestrator` binary: parses the command line, loads settings and
//! starts the requested mode or role.

mod cli;
mod config;
mod report;
mod roles;
mod standalone;

use std::collections::HashMap;
use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use cli::{Cli, Command, LogFormat};
use roles::Role;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = start(&cli);
    // Whatever ended the run, no prover may outlive it.
    orchestrator_actors::edges::process::kill_all_provers();
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn start(cli: &Cli) -> anyhow::Result<i32> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let settings =
        config::Settings::load(cli.config.as_ref(), &env, cli.command.flags().overrides())?;
    let role = match &cli.command {
        Command::Run(_) => {
            let plan = standalone::Plan::new(settings)?;
            return run_system(plan.start());
        }
        Command::Init(_) => Role::Init,
        Command::BlockWatcher(_) => Role::BlockWatcher,
        Command::Prover(_) | Command::Dispatcher(_) => Role::Prover,
        Command::ProofMatcher(_) => Role::ProofMatcher,
        Command::StepCollector(_) => Role::StepCollector,
        Command::Collector(_) => Role::from_strategy(settings.strategy.as_deref())?,
    };
    run_system(roles::start(role, settings))
}

/// Runs an actix system (on a multi-threaded tokio runtime) that `setup`
/// fills with actors, until a signal, a finished range or a failed setup
/// stops it. Returns the exit code.
fn run_system(setup: impl Future<Output = anyhow::Result<()>> + 'static) -> anyhow::Result<i32> {
    // async-nats and reqwest each bring a rustls crypto provider; pick one.
    let _ = async_nats::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    });
    system.block_on(async {
        stop_on_signal();
        actix::spawn(async {
            if let Err(error) = setup.await {
                eprintln!("error: {error:#}");
                actix::System::current().stop_with_code(2);
            }
        });
    });
    system.run_with_code().context("the actor system failed")
}

fn init_logging(format: LogFormat) {
    let mut directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    // The NATS client's debug logs print its connect options, passwords
    // included: keep it at info unless asked for by name.
    if !directives.contains("async_nats") {
        directives.push_str(",async_nats=info");
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

/// Stops the actor system on Ctrl-C or SIGTERM. Call inside the system.
fn stop_on_signal() {
    actix::spawn(async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        actix::System::current().stop_with_code(0);
        tracing::info!("signal received; stopping");
    });
}

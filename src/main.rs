//! The `orchestrator` binary: parses the command line, loads settings and
//! starts the requested mode.

mod cli;
mod config;
mod report;
mod standalone;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let env: HashMap<String, String> = std::env::vars().collect();
    let result = match &cli.command {
        Command::Run(args) => config::Settings::load(cli.config.as_ref(), &env, args.overrides())
            .and_then(standalone::run),
    };
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

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
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
        tracing::info!("signal received; stopping");
        actix::System::current().stop_with_code(0);
    });
}
